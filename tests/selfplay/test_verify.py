"""The verifier labels tasks through the sandbox, rejects bad proposals with a reason, and judges
answers as Python values (any input that works counts for abduction; hidden pairs for induction)."""

import pytest

from bitzero.selfplay import Sandbox
from bitzero.selfplay.tasks import Task
from bitzero.selfplay.verify import CORRECT, FORMAT_ERROR, WRONG, Verifier, numbers_equal


@pytest.fixture(scope="module")
def verifier():
    with Sandbox(timeout_s=1.0) as box:
        yield Verifier(box)


def test_labels_come_from_the_executor_and_bad_tasks_say_why(verifier):
    tasks = [
        Task("deduction", "def f(xs):\n    return sorted(xs)", ("[3, 1, 2]",)),
        Task("math", "", ("(7 + 5) // 4",)),
        Task("deduction", "import os\ndef f(x):\n    return os.getcwd()", ("1",)),
        Task("deduction", "def f(x):\n    return ''.join(set('abcdefghij'))", ("1",)),
        Task("math", "", ("'abc'",)),
        Task("induction", "def f(x):\n    return 1", ("1", "2", "3", "4")),
        Task("deduction", "def f(x):\n    while True:\n        pass", ("1",)),
    ]
    labelled, reasons = verifier.label(tasks)
    assert labelled[0].outputs == ("[1, 2, 3]",) and labelled[1].outputs == ("3",)
    assert reasons[2].startswith("rejected: import of os")
    assert reasons[4] == "math answer is not a finite number"
    assert reasons[5] == "induction outputs are all the same"
    assert reasons[6].startswith("timeout")
    assert labelled[2:] == [None] * 5
    assert verifier.stats.rejections["rejected"] >= 1 and verifier.stats.programs > 0


def test_answers_are_judged_as_values(verifier):
    deduction = Task("deduction", "def f(x):\n    return [x, True]", ("1",), ("[1, True]",))
    abduction = Task("abduction", "def f(x):\n    return x % 3", ("4",), ("1",))
    induction = Task("induction", "def f(x):\n    return x + 1", ("1", "2", "3", "4"), ("2", "3", "4", "5"))
    math_task = Task("math", "", ("8 / 2",), ("4.0",))
    cases = [
        (deduction, "[1, True]", CORRECT), (deduction, "[1, 1]", WRONG), (deduction, "[1,", FORMAT_ERROR),
        (abduction, "7", CORRECT),  # not the generator's input, but f(7) == 1: correct
        (abduction, "5", WRONG), (abduction, "import os", FORMAT_ERROR),
        (induction, "def f(x):\n    return 1 + x", CORRECT),
        (induction, "def f(x):\n    return 2 if x == 1 else 3 if x == 2 else 0", WRONG),  # fits shown pairs only
        (induction, "def f(x):\n    import os\n    return x + 1", WRONG),
        (induction, "return x + 1", FORMAT_ERROR),
        (math_task, "4", CORRECT), (math_task, "4.5", WRONG), (math_task, "four", FORMAT_ERROR),
    ]
    rewards = verifier.score([task for task, _, _ in cases], [answer for _, answer, _ in cases])
    assert rewards == [expected for _, _, expected in cases]


def test_math_numbers_compare_by_value_not_type():
    assert numbers_equal("4", "4.0") and not numbers_equal("True", "1") and not numbers_equal("x", "1")
