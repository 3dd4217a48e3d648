"""Self-play tasks: the Absolute Zero triplet types on code, plus math, and how each is shown.

A task is a program `f` with inputs and the outputs the executor computed for them (docs/references.md
§3.1): deduction shows (program, input) and asks for the output; abduction shows (program, output)
and asks for an input; induction shows some input/output pairs and asks for a program that also
passes the hidden ones; math shows an arithmetic expression and asks for its value. The same
text forms serve the solver's answer and the proposer's references and proposals, so supervised
targets, sampled answers and proposals are all checked by one parser; `prompts` puts them in chats.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from bitzero.errors import SelfPlayError

KINDS: tuple[str, ...] = ("deduction", "abduction", "induction", "math")
CODE_KINDS: tuple[str, ...] = ("deduction", "abduction", "induction")
CALL_PREFIX = ">>> f("


class FormatError(SelfPlayError, ValueError):
    """Text that does not have the shape of an answer or proposal of its kind."""


@dataclass(frozen=True)
class Task:
    """One verified task. `inputs` are argument texts (math: one expression); `outputs` are the
    executor's `repr` of each call's value, in the same order."""

    kind: str
    program: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    difficulty: int = 1
    origin: str = "generator"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; expected one of {KINDS}")
        if not self.inputs:
            raise ValueError("a task needs at least one input")

    @property
    def key(self) -> str:
        """Identity for de-duplication (held-out tasks are never trained on)."""
        return f"{self.kind}\x00{self.program.strip()}\x00" + "\x00".join(i.strip() for i in self.inputs)

    def calls(self) -> list[str]:
        """The expressions the executor evaluates to label this task."""
        if self.kind == "math":
            return [self.inputs[0]]
        return [f"f({argument})" for argument in self.inputs]

    def visible(self) -> int:
        """How many input/output pairs an induction prompt shows (the rest are hidden)."""
        return (len(self.inputs) + 1) // 2

    def labelled(self, outputs: list[str]) -> Task:
        return Task(self.kind, self.program, self.inputs, tuple(outputs), self.difficulty, self.origin, dict(self.extra))

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["inputs"], record["outputs"] = list(self.inputs), list(self.outputs)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Task:
        return cls(
            record["kind"], record["program"], tuple(record["inputs"]), tuple(record.get("outputs", ())),
            int(record.get("difficulty", 1)), record.get("origin", "generator"), dict(record.get("extra", {})),
        )


def solver_target(task: Task) -> str:
    """The executor-verified answer the solver is taught (any correct answer is rewarded)."""
    if task.kind in ("deduction", "math"):
        return task.outputs[0]
    if task.kind == "abduction":
        return task.inputs[0]
    return task.program


def render_proposal(task: Task) -> str:
    """A task as a proposal: the program and one `>>> f(...)` line per input; math: the expression."""
    if task.kind == "math":
        return task.inputs[0]
    return task.program + "".join(f"\n{CALL_PREFIX}{argument})" for argument in task.inputs)


def parse_proposal(kind: str, text: str) -> Task:
    """Read a proposal back into an unlabelled task, or raise FormatError."""
    text = text.strip()
    if not text:
        raise FormatError("empty proposal")
    if kind == "math":
        if "\n" in text:
            raise FormatError("a math proposal is one expression on one line")
        _parse(text, "eval")
        return Task(kind, "", (text,), origin="proposer")
    lines = [line for line in text.split("\n") if not line.lstrip().startswith("```")]  # a fenced reply
    calls = [line for line in lines if line.startswith(CALL_PREFIX)]
    program = "\n".join(line for line in lines if not line.startswith(CALL_PREFIX)).strip("\n")
    if not calls or not program:
        raise FormatError("a code proposal is a program followed by `>>> f(...)` lines")
    if any(not line.endswith(")") for line in calls):
        raise FormatError("a `>>> f(` line must end with `)`")
    inputs = tuple(line[len(CALL_PREFIX) : -1].strip() for line in calls)
    tree = cast(ast.Module, _parse(program, "exec"))  # "exec" parses to a Module
    if not any(isinstance(node, ast.FunctionDef) and node.name == "f" for node in tree.body):
        raise FormatError("the program does not define f")
    for argument in inputs:
        _parse(f"f({argument})", "eval")
    if len(set(inputs)) != len(inputs):
        raise FormatError("repeated inputs")
    return Task(kind, program, inputs, origin="proposer")


def parse_answer(kind: str, text: str) -> str:
    """The solver's answer text, checked for shape: a literal, call arguments, or a program."""
    answer = text.strip()
    if not answer:
        raise FormatError("empty answer")
    if kind in ("deduction", "math"):
        try:
            ast.literal_eval(answer)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise FormatError("the answer is not a Python literal") from None
    elif kind == "abduction":
        _parse(f"f({answer})", "eval")
    else:
        tree = cast(ast.Module, _parse(answer, "exec"))  # "exec" parses to a Module
        if not any(isinstance(node, ast.FunctionDef) and node.name == "f" for node in tree.body):
            raise FormatError("the answer does not define f")
    return answer


def _parse(source: str, mode: str) -> ast.AST:
    try:
        return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise FormatError(f"does not parse: {source[:40]!r}") from None
