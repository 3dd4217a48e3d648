"""dvc.yaml's code dependencies cannot drift: every project module a stage imports (transitively,
from its pipeline package and its catalog datasets' classes) is listed in that stage's `deps`,
as a file or under a listed folder, so a change there re-runs the stage.

Kedro's own project files (settings, hooks, the pipeline registry, the tracking adapters) decide
how a run is configured and tracked, not what it computes, and are not required."""

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"bitzero": ROOT / "src" / "bitzero", "pipelines": ROOT / "pipelines"}
FRAMEWORK = {ROOT / "pipelines" / name for name in ("__init__.py", "settings.py", "hooks.py", "pipeline_registry.py")}


def module_file(name: str) -> Path | None:
    """The file of a project module (``bitzero.x.y`` or ``pipelines.x``), None for anything else."""
    head, *rest = name.split(".")
    if head not in PACKAGES:
        return None
    base = PACKAGES[head].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> Iterable[str]:
    """Every module an import statement of ``path`` names (``from a import b``: a, and a.b where b
    is a submodule), the parent packages included (importing a.b runs a/__init__.py)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: a relative import (the project imports absolutely)"
            names = [str(node.module), *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))


def closure(roots: Iterable[Path]) -> set[Path]:
    """The project files that importing ``roots`` runs."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [f for f in map(module_file, _imported(path)) if f is not None and f not in seen]
    return seen


def _types(entry: object) -> Iterable[str]:
    if isinstance(entry, dict):
        for key, value in entry.items():
            if key == "type" and isinstance(value, str):
                yield value
            else:
                yield from _types(value)


def catalog_classes(datasets: set[str]) -> set[Path]:
    """The files of the project dataset classes that the catalog gives the stage's datasets."""
    entries: dict[str, object] = {}
    for path in sorted((ROOT / "conf" / "base").glob("catalog*.yml")):
        entries.update(yaml.safe_load(path.read_text()) or {})
    files = set()
    for name in datasets & set(entries):
        for dataset_type in _types(entries[name]):
            found = module_file(dataset_type.rsplit(".", 1)[0])
            if found is not None:
                files.add(found)
    return files


def stage_code(stage: str) -> set[Path]:
    """Every project file the stage's `kedro run --pipelines STAGE` imports to compute its outputs."""
    from importlib import import_module

    folder = ROOT / "pipelines" / stage
    pipeline = import_module(f"pipelines.{stage}.pipeline").create_pipeline()
    roots = set(folder.glob("*.py")) | catalog_classes(set(pipeline.datasets()))
    return closure(roots) - FRAMEWORK


def missing_deps(stage: str, deps: list[str]) -> list[str]:
    listed = [ROOT / d for d in deps]
    return sorted(str(f.relative_to(ROOT)) for f in stage_code(stage)
                  if not any(f == d or d in f.parents for d in listed))


def kedro_stages() -> dict[str, list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
            for name, stage in stages.items() if stage["cmd"].startswith("kedro run --pipelines")}


CODE = ("src/", "pipelines/")


@pytest.mark.parametrize("stage", sorted(kedro_stages()))
def test_every_module_a_stage_imports_is_a_dvc_dependency(stage: str) -> None:
    missing = missing_deps(stage, kedro_stages()[stage])
    assert not missing, f"dvc.yaml: stage {stage!r} imports these but does not list them in its deps: {missing}"


@pytest.mark.parametrize("stage", sorted(kedro_stages()))
def test_each_listed_code_dependency_is_needed_and_its_removal_caught(stage: str) -> None:
    """Taking any one code dependency out of the stage's list makes the check above fail: the list
    is exactly what the stage runs, and the check can see a missing entry."""
    deps = kedro_stages()[stage]
    for dep in [d for d in deps if d.startswith(CODE)]:
        assert missing_deps(stage, [d for d in deps if d != dep]), f"{stage}: {dep} is listed but not imported"
