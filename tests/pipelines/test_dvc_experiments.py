"""DVC experiments as a user runs them on the micro profile: `dvc exp run -S` varies one parameter,
and `dvc exp show` reads every stage's metrics of both experiments back from their commits."""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.pipelines.conftest import dvc

pytestmark = pytest.mark.timeout(600)
CHANGED = "conf/test/parameters_augmentation.yml:augmentation.validation_fraction"


def _experiments(shown: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`dvc exp show --json`: each named experiment's metrics and params, by file."""
    (baseline,) = [entry for entry in shown if entry["rev"] != "workspace"]
    revs = [rev for experiment in baseline["experiments"] or [] for rev in experiment["revs"]]
    return {rev["name"]: rev["data"] for rev in revs}


def test_two_experiments_carry_their_metrics(dvc_project: Path) -> None:
    dvc(dvc_project, "exp", "run", "augmentation", "--name", "base")
    dvc(dvc_project, "exp", "run", "augmentation", "--name", "wider-validation", "--set-param", f"{CHANGED}=0.3")

    experiments = _experiments(json.loads(dvc(dvc_project, "exp", "show", "--json")))
    assert set(experiments) == {"base", "wider-validation"}
    metrics = {name: {file.split("/")[-1]: m["data"] for file, m in data["metrics"].items() if "data" in m}
               for name, data in experiments.items()}  # the stages after augmentation did not run
    for name in experiments:
        assert {"teacher.json", "vocabulary.json", "augmentation.json"} <= set(metrics[name]), metrics[name]
    fractions = {name: data["params"]["conf/test/parameters_augmentation.yml"]["data"]["augmentation"]
                 ["validation_fraction"] for name, data in experiments.items()}
    assert fractions == {"base": 0.1, "wider-validation": 0.3}
    base, wider = (metrics[name]["augmentation.json"] for name in ("base", "wider-validation"))
    assert wider["validation_records"] > base["validation_records"]
    assert metrics["base"]["vocabulary.json"] == metrics["wider-validation"]["vocabulary.json"]
