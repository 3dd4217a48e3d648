"""How tasks are put to the model as chats, and how answers are read back from its replies.

The pretrained teacher (and so the converted student) was tuned on chat-templated turns, so every
prompt is a system turn (the role) and a user turn (the task in plain words), rendered by the
tokenizer's own chat template; the reply is the assistant turn. Supervised targets are bare
answers, but a pretrained model tends to wrap them ("The answer is 7.", a fenced block):
`extract_answer` accepts a small, fixed set of such wrappings, so the teacher's reference figures
measure what it knows rather than whether it guessed the house style.
"""

from __future__ import annotations

import re

from bitzero.selfplay.tasks import FormatError, Task, parse_answer, render_proposal

Chat = list[dict[str, str]]

SOLVER_SYSTEM = "You are a precise Python expert. Reply with the answer only, no explanation."
PROPOSER_SYSTEM = "You write short, deterministic Python puzzles."
QUESTIONS = {
    "deduction": "What does f({input}) return?\n```python\n{program}\n```\nReply with the Python value only.",
    "abduction": "Give an argument x with f(x) == {output}.\n```python\n{program}\n```\nReply with x only.",
    "induction": "Write a Python function f with:\n{pairs}\nReply with the code only.",
    "math": "Compute {input}. Reply with the number only.",
}
PROPOSALS = {
    "deduction": "a function f and an input to run it on",
    "abduction": "a function f and an input to run it on",
    "induction": "a function f and several different inputs",
    "math": "an arithmetic expression on one line",
}
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)(?:```|$)", re.DOTALL)
_CALL = re.compile(r"f\((.*)\)\s*(?:==.*)?")  # "f(4)" / "f(4) == 7": the argument
_TAIL = re.compile(r"(?:=|\bis\b|:)\s*([^=:]+?)[\s.`]*$")  # "... is 7." / "f(4) = 7" / "Answer: 7"


def chat(system: str, user: str) -> Chat:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def solver_prompt(task: Task) -> Chat:
    """The solver's chat: the task in words; nothing that gives the answer away."""
    if task.kind == "induction":
        shown = zip(task.inputs[: task.visible()], task.outputs[: task.visible()], strict=True)
        user = QUESTIONS["induction"].format(pairs="\n".join(f"f({i}) == {o}" for i, o in shown))
    else:
        user = QUESTIONS[task.kind].format(
            program=task.program, input=task.inputs[0], output=task.outputs[0] if task.outputs else "?"
        )
    return chat(SOLVER_SYSTEM, user)


def proposer_prompt(kind: str, references: list[Task]) -> Chat:
    """The proposer's chat: K references of one kind in the proposal format, then the request."""
    shown = "\n\n".join(render_proposal(task) for task in references)
    example = f"Examples:\n\n{shown}\n\n" if shown else ""
    what = PROPOSALS[kind]
    form = "" if kind == "math" else " Write each input as a line `>>> f(...)` after the code."
    return chat(PROPOSER_SYSTEM, f"{example}Write a new puzzle: {what}.{form} Reply with the puzzle only.")


def extract_answer(kind: str, reply: str) -> str:
    """The answer inside an assistant reply: the reply itself, its fenced block, its last line, or
    (for values) what follows the last `=`, `is` or `:` on that line; FormatError if none parses."""
    text = reply.strip()
    fenced = _FENCE.search(text)
    candidates = [text] + ([fenced.group(1).strip()] if fenced else [])
    if kind == "induction":
        candidates += [c[c.find("def f"):] for c in candidates if "def f" in c]
    else:
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        candidates.append(last.rstrip(".").strip("`"))
        if kind == "abduction" and (call := _CALL.fullmatch(last)):
            candidates.insert(0, call.group(1))  # "f(4)" also parses as an argument, f(f(4))
        if tail := _TAIL.search(last):
            candidates.append(tail.group(1).strip("`"))
    for candidate in candidates:
        try:
            return parse_answer(kind, candidate)
        except FormatError:
            continue
    raise FormatError(f"no {kind} answer in the reply {reply[:40]!r}")
