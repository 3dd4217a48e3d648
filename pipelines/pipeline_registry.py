"""The registry finds every stage folder under the top-level ``pipelines/`` package."""

import importlib
import pkgutil
from pathlib import Path

from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Each sub-package with ``pipeline.create_pipeline`` is a stage named after its folder."""
    found: dict[str, Pipeline] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"pipelines.{info.name}.pipeline")
        found[info.name] = module.create_pipeline()
    found["__default__"] = sum(found.values(), Pipeline([]))
    return found
