"""The models the service serves: what it needs from one (a Protocol that ``BundleRuntime`` fits),
and the set of them, loaded from the bundles folder, the champion answering when a request names
no model."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bitzero.errors import ServiceError
from bitzero.serving.bundle import MANIFEST, read_manifest
from bitzero.serving.champion import CHAMPION_FILE, champion_bundle
from bitzero.serving.sampling import GREEDY, UNSTEERED, Sampling, Steering
from bitzero.text import Tokenizer

log = logging.getLogger("bitzero.service")


class ChatModel(Protocol):
    model_id: str
    context_length: int
    tokenizer: Tokenizer
    provider: str
    slots: int  # the replies it generates at once (decoded together in one batched step where > 1)

    def stream(
        self, prompt_ids: Sequence[int], *, max_tokens: int, sampling: Sampling = GREEDY,
        steering: Steering = UNSTEERED,
    ) -> Iterator[Any]:
        """Chunks with ``text``, ``token_ids`` and ``finish_reason`` (set on the last one only);
        no ``sampling.repeat_ngram``-gram of ``steering.earlier`` (the assistant's earlier replies)
        or of the reply itself is said again, nor any of its ``barred`` token sequences."""
        ...


class ModelError(ServiceError, ValueError):
    """No bundle where the settings point, or bundles that cannot be served side by side."""


class UnknownModel(ServiceError, LookupError):
    """A request named a model that is not served here."""


@dataclass(frozen=True)
class Served:
    """One model as clients see it. ``id`` is what they pick it by: ``bitzero-<kind>-<variant>``
    for a bundle (stable across retraining); the bundle's content id (``model.model_id``) picks it too."""

    id: str
    model: ChatModel
    champion: bool = False
    kind: str | None = None
    variant: str | None = None
    folder: Path | None = None
    decoding: dict[str, Any] | None = None  # the bundle's own decoding defaults (bitzero.json "decoding")


class ModelSet:
    """Every served model, champion first; exactly one is champion."""

    def __init__(self, served: Sequence[Served]) -> None:
        champions = [s.id for s in served if s.champion]
        if len(champions) != 1:
            raise ModelError(f"exactly one model must be champion, got {champions or 'none'}")
        ids = [s.id for s in served]
        if len(set(ids)) != len(ids):
            raise ModelError(f"two bundles would be served under the same id: {sorted(ids)}")
        self.served = sorted(served, key=lambda s: (not s.champion, s.id))

    @classmethod
    def single(cls, model: ChatModel) -> ModelSet:
        return cls([Served(model.model_id, model, champion=True)])

    @property
    def champion(self) -> Served:
        return self.served[0]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.served]

    def __iter__(self) -> Iterator[Served]:
        return iter(self.served)

    def pick(self, name: str | None) -> Served:
        """The model a request names (by id or bundle content id); the champion when it names none."""
        if not name:
            return self.champion
        for served in self.served:
            if name in (served.id, served.model.model_id):
                return served
        raise UnknownModel(f"model {name!r} is not served here; available: {', '.join(self.ids)} "
                           "(GET /v1/models)")


def bundle_folders(folder: Path) -> tuple[list[Path], Path]:
    """The bundle folders to serve and the champion among them: ``folder`` itself when it is a
    bundle (what the cluster's init container fetches), else every bundle in it, the champion
    named by its champion.json (needed only when there are several)."""
    if (folder / MANIFEST).is_file():
        return [folder], folder
    found = sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()) if folder.is_dir() else []
    if not found:
        raise ModelError(f"no exported bundle at {folder} (run `make run` or `dvc repro` first, "
                         "or set BITZERO_BUNDLES to a bundle or a folder of bundles)")
    if (folder / CHAMPION_FILE).is_file():
        champion = champion_bundle(folder)
        if champion not in found:
            raise ModelError(f"{folder / CHAMPION_FILE} names {champion.name!r}, which is not a bundle here")
        return found, champion
    if len(found) > 1:
        raise ModelError(f"{folder} holds {len(found)} bundles but no {CHAMPION_FILE} saying which one "
                         "answers by default (the export stage writes it)")
    return found, found[0]


def load_models(folder: Path, variant: str | None = None, threads: int | None = None, slots: int = 1) -> ModelSet:
    """Every bundle under ``folder`` through onnxruntime (imported here, so tests run without a
    bundle). ``variant`` is used where a bundle has it, else the bundle's default variant.
    ``threads`` caps each session's pool: onnxruntime's default is every core of the host, not
    the container's CPU limit. ``slots``: the replies each model decodes together."""
    from bitzero.serving.runtime import BundleRuntime

    folders, champion = bundle_folders(folder)
    served = []
    for path in folders:
        manifest = read_manifest(path)
        chosen = variant if variant in manifest["variants"] else manifest.get("default_variant")
        chosen = chosen or next(iter(manifest["variants"]))
        kind = manifest.get("kind") or path.name
        runtime = BundleRuntime.load(path, variant=chosen, threads=threads, slots=slots)
        served.append(Served(f"bitzero-{kind}-{runtime.variant}", runtime, path == champion, kind, runtime.variant, path,
                             manifest.get("decoding")))
        log.info("loaded %s from %s (%s, %s)", served[-1].id, path, runtime.model_id, runtime.provider)
    return ModelSet(served)
