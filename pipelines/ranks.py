"""Running the stage under torchrun: every rank computes, rank 0 alone writes and tracks.

Every rank runs the whole Kedro pipeline (each trains on its shard; the ranks meet in DDP's
all-reduce), so every node returns its outputs on every rank. Two things keep the other ranks
from racing rank 0 on the same files and MLflow run:

* ``MainRankDataset`` wraps a catalog entry so that only rank 0 saves it;
* ``OtherRanksTrackingOff`` (a project hook) switches kedro-mlflow off on ranks other than 0, so
  one ``torchrun`` makes one MLflow run.
"""

from __future__ import annotations

import os
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset
from kedro.io.core import parse_dataset_definition


def is_main_rank() -> bool:
    """True outside torchrun and on its rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


class MainRankDataset(AbstractDataset[Any, Any]):
    """Wraps any dataset; ``save`` happens on rank 0 only, ``load`` everywhere."""

    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        dataset_class, dataset_args = parse_dataset_definition(dataset)
        self._dataset = dataset_class(**dataset_args)
        self.metadata = metadata

    def load(self) -> Any:
        return self._dataset.load()

    def save(self, data: Any) -> None:
        if is_main_rank():
            self._dataset.save(data)

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._dataset._describe(), "saves_on": "rank 0"}


class OtherRanksTrackingOff:
    """On ranks other than 0, mark the pipelines being run as untracked in kedro-mlflow's config.

    kedro-mlflow keeps its config on the context (``context.mlflow``) and reads the disabled
    pipelines when the pipeline starts; this hook edits that list just before (tryfirst).
    """

    def __init__(self) -> None:
        self._context: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        config = getattr(self._context, "mlflow", None)
        if is_main_rank() or config is None:
            return
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        disabled = config.tracking.disable_tracking
        disabled.pipelines = [*disabled.pipelines, *names]
