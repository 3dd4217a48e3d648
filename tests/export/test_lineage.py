"""The lineage prediction: the promotion gate's NLL rule, applied to the distillation report."""

import pytest

from bitzero.export.lineage import LineageError, check_checkpoint, from_distillation, predict_served, served
from bitzero.export.promotion import decide


@pytest.mark.parametrize(("student", "teacher", "expected"), [
    (2.0, 2.0, "student"),     # even
    (2.2, 2.0, "student"),     # exactly at 1.1x
    (2.21, 2.0, "teacher"),    # just beyond
    (5.9, 2.54, "teacher"),    # the demo's distillation figures today
])
def test_the_served_lineage_follows_the_gates_rule_both_ways(student: float, teacher: float, expected: str) -> None:
    record = predict_served(student, teacher, 1.1)
    assert served(record) == expected == decide(student, teacher, 1.1).champion
    assert f"train the {expected}" in record["reason"]


def test_read_from_the_distillation_report() -> None:
    report = {"held_out_nll": {"teacher_fp32": 2.537, "ptq": 12.3, "student": 5.9}}
    record = from_distillation(report, 1.1)
    assert record["served"] == "teacher" and record["ratio"] == pytest.approx(5.9 / 2.537)
    assert from_distillation(report, 2.5)["served"] == "student"


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(LineageError, match="run the distillation stage first"):
        from_distillation({"held_out_nll": {"student": 3.0}}, 1.1)
    with pytest.raises(ValueError, match="gate_factor"):
        predict_served(2.0, 2.0, 0.9)
    with pytest.raises(LineageError, match="not a lineage record"):
        served({"served": "teacher"})


def test_a_checkpoint_must_belong_to_the_served_lineage() -> None:
    record = predict_served(2.0, 2.0, 1.1)
    assert check_checkpoint(record, {"lineage": "student"}, "x") == "student"
    with pytest.raises(LineageError, match="belongs to the 'teacher' lineage"):
        check_checkpoint(record, {"lineage": "teacher"}, "x")
    with pytest.raises(LineageError, match="belongs to the None lineage"):
        check_checkpoint(record, {}, "a checkpoint from before lineages")
