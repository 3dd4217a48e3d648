"""Every public exception of BitZero derives from BitZeroError and from its package's base, so the
CLI prints any of them cleanly and a caller can catch what one package raises on purpose."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import bitzero
from bitzero.errors import (
    BitZeroError,
    CompanionError,
    DataError,
    ExportPackageError,
    LanguageModelError,
    SelfPlayError,
    ServiceError,
    ServingError,
    TextError,
    TrainingError,
)
from bitzero.service.model import UnknownModel
from bitzero.text import TokenizerError

# The worker runs in a confined interpreter that must not import bitzero; its private
# BaseException classes are control flow inside that interpreter, not errors BitZero raises.
# The sandbox's worker runs as a script; the kernel library is an onnxruntime custom-op library that
# make setup builds beside its sources, not a Python extension.
NOT_IMPORTED = {"bitzero.selfplay._sandbox_worker", "bitzero.kernels.libbitzero_ternary"}

PACKAGE_BASES: dict[str, type[BitZeroError]] = {
    "companion": CompanionError,
    "data": DataError,
    "export": ExportPackageError,
    "kernels": ExportPackageError,
    "model": LanguageModelError,
    "selfplay": SelfPlayError,
    "service": ServiceError,
    "serving": ServingError,
    "text": TextError,
    "train": TrainingError,
}


def _public_exceptions() -> list[type[BaseException]]:
    """The public exception classes defined in any bitzero module (not those it imports)."""
    found = []
    for info in pkgutil.walk_packages(bitzero.__path__, "bitzero."):
        if info.name in NOT_IMPORTED:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name
                    and not name.startswith("_")):
                found.append(obj)
    return found


def test_every_package_has_a_base() -> None:
    packages = {info.name for info in pkgutil.iter_modules(bitzero.__path__) if info.ispkg}
    assert packages == set(PACKAGE_BASES)


def test_every_public_exception_derives_from_its_package_base() -> None:
    exceptions = _public_exceptions()
    assert TokenizerError in exceptions  # the walk does reach the packages' modules
    wrong = []
    for exc in exceptions:
        # top-level modules (bitzero.privacy_purge) need the root base only
        base = PACKAGE_BASES.get(exc.__module__.split(".")[1], BitZeroError)
        if not issubclass(exc, base):
            wrong.append(f"{exc.__module__}.{exc.__qualname__} does not derive from {base.__name__}")
    assert not wrong, "\n".join(wrong)


def test_builtin_bases_are_kept() -> None:
    assert issubclass(TokenizerError, ValueError)
    assert issubclass(UnknownModel, LookupError)
