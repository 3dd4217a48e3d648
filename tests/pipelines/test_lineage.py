"""Which checkpoint becomes which bundle (the export's pick_checkpoints), by the lineage record."""

from pathlib import Path

import pytest

from bitzero.export.lineage import LineageError, predict_served
from bitzero.model import save_checkpoint
from pipelines.export.nodes import pick_checkpoints
from tests.tiny import tiny_model, tiny_tokenizer


def _trained(root: Path, lineage: str) -> str:
    tokenizer = tiny_tokenizer()
    return str(save_checkpoint(tiny_model(tokenizer), root / "personalized_model", tokenizer, {"lineage": lineage}))


@pytest.mark.parametrize(("nlls", "lineage"), [((2.0, 2.0), "student"), ((9.0, 2.5), "teacher")])
def test_the_trained_checkpoint_becomes_the_served_lineages_bundle(tmp_path: Path, nlls: tuple[float, float],
                                                                    lineage: str) -> None:
    trained = _trained(tmp_path, lineage)
    picked = pick_checkpoints(predict_served(*nlls, 1.1), trained, "distilled-student", "imported-teacher")
    assert picked == ((trained, "imported-teacher") if lineage == "student" else ("distilled-student", trained))


def test_a_checkpoint_of_the_other_lineage_is_refused(tmp_path: Path) -> None:
    """A personalized checkpoint left from a run on the other lineage is stale: a clear error."""
    trained = _trained(tmp_path, "student")
    with pytest.raises(LineageError, match="re-run the selfplay stage"):
        pick_checkpoints(predict_served(9.0, 2.5, 1.1), trained, "distilled-student", "imported-teacher")
