"""Render a code task as a prompt, a solution and assert tests, and prove the tests pass."""

from __future__ import annotations

from random import Random

from bitzero.data.seed import code_easy, code_hard
from bitzero.data.seed.verify import SeedError, check_code

BUILDERS = {**code_easy.BY_DIFFICULTY, **code_hard.BY_DIFFICULTY}
PROMPTS = (
    "Write a Python function `{sig}` that {does}.",
    "Implement `{sig}` in Python. It {does}.",
    "Can you write a Python function `{sig}` that {does}?",
    "Please write `{sig}`, a function that {does}.",
)


def code_task(r: Random, difficulty: int) -> tuple[str, str, list[str]]:
    """(prompt, solution code, 2-4 assert tests) for one task at the given difficulty."""
    task = r.choice(BUILDERS[difficulty])(r)
    wanted = r.randint(2, 4)
    calls: dict[str, object] = {}
    for _ in range(50 * wanted):
        if len(calls) == wanted:
            break
        args = task.make_input(r)
        calls.setdefault(f"{task.name}({', '.join(map(repr, args))})", task.reference(*args))
    if len(calls) < 2:
        raise SeedError(f"{task.name}: could not draw two different test inputs")
    tests = [f"assert {call} == {expected!r}" for call, expected in calls.items()]
    code = f"def {task.name}({', '.join(task.params)}):\n{task.body}"
    check_code(code, tests)
    example, expected = next(iter(calls.items()))
    prompt = r.choice(PROMPTS).format(sig=f"{task.name}({', '.join(task.params)})", does=task.does)
    return f"{prompt} For example, `{example}` should return `{expected!r}`.", code, tests
