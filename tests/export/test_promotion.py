"""The promotion gate and champion.json, which the service reads without MLflow."""

import json
from pathlib import Path

import pytest

from bitzero.export.promotion import decide, write_champion
from bitzero.serving.champion import CHAMPION_FILE, ChampionError, champion_bundle


@pytest.mark.parametrize(("student", "teacher", "factor", "champion"), [
    (2.0, 1.9, 1.10, "student"),   # within 10 %
    (2.09, 1.9, 1.10, "student"),  # exactly at the bound
    (2.2, 1.9, 1.10, "teacher"),   # 15.8 % worse
    (1.5, 1.9, 1.0, "student"),    # better than the teacher
    (12.1, 1.62, 1.10, "teacher"),  # an untrained ternary student
])
def test_student_is_champion_only_within_the_factor(student: float, teacher: float, factor: float, champion: str) -> None:
    decision = decide(student, teacher, factor)
    assert decision.champion == champion
    assert f"the {champion} is champion" in decision.reason and f"{teacher:.4f}" in decision.reason


def test_a_student_that_fails_its_conversation_eval_is_never_champion_whatever_its_nll() -> None:
    looping = (False, "loop_rate 0.43 > 0.05")
    decision = decide(1.5, 1.9, 1.1, {"student": looping, "teacher": (True, "")})
    assert decision.champion == "teacher" and "conversation eval failed (loop_rate 0.43 > 0.05)" in decision.reason
    assert decide(1.5, 1.9, 1.1, {"student": (True, ""), "teacher": (True, "")}).champion == "student"
    fallback = decide(3.0, 1.9, 1.1, {"student": (True, ""), "teacher": (False, "garbage_rate 0.1 > 0")})
    assert fallback.champion == "teacher" and "as the fallback, although its own conversation eval failed" in fallback.reason


@pytest.mark.parametrize(("student", "teacher", "factor"), [(1.0, 1.0, 0.9), (float("nan"), 1.0, 1.1), (1.0, -1.0, 1.1)])
def test_nonsense_inputs_are_refused(student: float, teacher: float, factor: float) -> None:
    with pytest.raises(ValueError, match="gate_factor|NLLs"):
        decide(student, teacher, factor)


def test_champion_file_names_the_winning_bundle(tmp_path: Path) -> None:
    decision = decide(3.0, 2.0, 1.1)
    path = write_champion(tmp_path, decision, {"student": "bitzero-s", "teacher": "bitzero-t"},
                          {"registered_model": "bitzero", "version": 4})
    content = json.loads(path.read_text())
    assert path.name == CHAMPION_FILE
    assert content["champion"] == "teacher" and content["model_id"] == "bitzero-t"
    assert content["held_out_nll"] == {"student": 3.0, "teacher": 2.0}
    assert content["registered_version"] == 4 and content["reason"] == decision.reason
    assert champion_bundle(tmp_path) == tmp_path / "teacher"


def test_missing_or_foreign_champion_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ChampionError, match="missing: run the export stage"):
        champion_bundle(tmp_path)
    (tmp_path / CHAMPION_FILE).write_text('{"format": "other"}')
    with pytest.raises(ChampionError, match="not a bitzero-champion file"):
        champion_bundle(tmp_path)
