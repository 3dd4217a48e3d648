"""Task text forms round-trip, malformed text is a FormatError, the generator and curriculum behave."""

from random import Random

import pytest

from bitzero.selfplay.generator import DifficultyController, curriculum_weights, generate_task, generate_tasks
from bitzero.selfplay.tasks import (
    FormatError,
    Task,
    parse_answer,
    parse_proposal,
    render_proposal,
    solver_target,
)

ADD = Task("deduction", "def f(x):\n    return x + 3", ("4",), ("7",))


def test_proposal_round_trips_for_every_kind():
    for task in (ADD, Task("induction", "def f(x):\n    return x * 2", ("1", "2", "3", "4")), Task("math", "", ("3 + 4",))):
        parsed = parse_proposal(task.kind, render_proposal(task))
        assert (parsed.program, parsed.inputs, parsed.origin) == (task.program, task.inputs, "proposer")


@pytest.mark.parametrize(("kind", "text"), [
    ("deduction", ""), ("deduction", "def g(x):\n    return x\n>>> f(1)"), ("deduction", "def f(x):\n    return x"),
    ("deduction", "def f(x:\n>>> f(1)"), ("deduction", "def f(x):\n    return x\n>>> f(1)\n>>> f(1)"),
    ("math", "1 +"), ("math", "1\n2"),
])
def test_malformed_proposals_are_format_errors(kind, text):
    with pytest.raises(FormatError):
        parse_proposal(kind, text)


def test_answers_are_checked_for_shape_only():
    abduction = Task("abduction", ADD.program, ("4",), ("7",))
    assert solver_target(ADD) == "7" and solver_target(abduction) == "4"
    assert parse_answer("deduction", " [1, 2] ") == "[1, 2]"
    assert parse_answer("abduction", "3, 'a'") == "3, 'a'"
    for kind, text in (("deduction", "x + 1"), ("math", ""), ("abduction", "3)"), ("induction", "return 1")):
        with pytest.raises(FormatError):
            parse_answer(kind, text)


def test_generator_is_seeded_distinct_and_excludes_reserved_keys():
    first, again = generate_tasks(5, seed=1), generate_tasks(5, seed=1)
    assert [t.key for t in first] == [t.key for t in again]
    assert len({t.key for t in first}) == len(first) == 5 * 4 * 3
    other = generate_tasks(5, seed=2, exclude={t.key for t in first})
    assert not {t.key for t in other} & {t.key for t in first}
    induction = generate_task("induction", 1, Random(0), induction_pairs=4)
    assert len(set(induction.inputs)) == 4


def test_curriculum_is_math_heavy_early_and_code_heavy_late():
    early, late = curriculum_weights(0.1), curriculum_weights(0.9)
    assert early["math"] == pytest.approx(2 / 3) and late["math"] == pytest.approx(1 / 3)
    assert sum(early.values()) == pytest.approx(1) and sum(late.values()) == pytest.approx(1)
    levels = DifficultyController(["math", "deduction"])
    levels.update({"math": 0.9, "deduction": 0.1})
    assert levels.levels == {"math": 2, "deduction": 1}
