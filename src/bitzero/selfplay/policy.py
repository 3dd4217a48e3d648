"""The allow-list that model-generated programs must pass before the sandbox runs them.

Absolute Zero's own executor filtered imports with a deny-list that let `import os` and
`__import__("subprocess")` through (REFERENCES.md §3). Here the rule is the opposite: a program
may import only the pure, deterministic modules below, may not read any attribute that starts with
an underscore (the door to `__class__.__subclasses__()`, `__globals__` and private module handles
such as `collections._sys`) nor any name that starts with two (`__import__`, `__builtins__`);
methods may still be *defined* as `__init__` or `__eq__`. It may not name the builtins that reach
code, files or the interpreter, and may not use the statements Absolute Zero bans for proposals
(`raise`, `global`, `nonlocal`, async). Loops are allowed: the runtime limits catch infinite ones.

The same lists travel to the worker (see `_sandbox_worker.py`), which hides the banned names and
private attributes at run time as well: this check is the first wall, not the only one.
"""

from __future__ import annotations

import ast
import re

# Pure, deterministic, side-effect-free modules (no clock, randomness, files or processes).
# `typing` is here for annotations; its helpers that need frame access fail at run time.
ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "bisect",
        "collections",
        "collections.abc",
        "copy",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "math",
        "operator",
        "re",
        "string",
        "typing",
    }
)

# Builtins that reach code, files, the interpreter or the terminal, plus the few helpers in
# allowed modules that read attributes by a computed string (`attrgetter("__cl" + "ass__")`).
BANNED_NAMES: frozenset[str] = frozenset(
    {
        "attrgetter",
        "breakpoint",
        "compile",
        "delattr",
        "eval",
        "exec",
        "exit",
        "Formatter",
        "getattr",
        "globals",
        "hasattr",
        "help",
        "input",
        "locals",
        "memoryview",
        "methodcaller",
        "open",
        "quit",
        "setattr",
        "vars",
    }
)

# Frame, code, generator and traceback internals: the non-dunder road from a generator to the
# worker's globals (`gen.gi_frame.f_back.f_globals`).
_INTROSPECTION_ATTRIBUTE = re.compile(r"^(f|gi|cr|ag|tb|co)_")
_DUNDER_IN_STRING = re.compile(r"__\w+__")

MAX_PROGRAM_CHARS = 10_000
MAX_CALL_CHARS = 1_000


class PolicyViolation(ValueError):
    """A program breaks the allow-list; `reason` says how, ready for an ExecResult."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_program(program: str, call: str = "", max_program_chars: int = MAX_PROGRAM_CHARS) -> None:
    """Raise PolicyViolation unless `program` and the `call` expression pass the allow-list."""
    if len(program) > max_program_chars:
        raise PolicyViolation(f"rejected: program longer than {max_program_chars} characters")
    if len(call) > MAX_CALL_CHARS:
        raise PolicyViolation(f"rejected: call longer than {MAX_CALL_CHARS} characters")
    trees = [_parse(program, "exec", "program")]
    if call:
        trees.append(_parse(call, "eval", "call"))
    for tree in trees:
        for node in ast.walk(tree):
            reason = _violation(node)
            if reason is not None:
                line = getattr(node, "lineno", None)
                where = f" (line {line})" if line is not None else ""
                raise PolicyViolation(f"rejected: {reason}{where}")


def _parse(source: str, mode: str, what: str) -> ast.AST:
    try:
        return ast.parse(source, filename=f"<{what}>", mode=mode)
    except SyntaxError as error:
        raise PolicyViolation(f"rejected: syntax error in {what}: {error.msg}") from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise PolicyViolation(f"rejected: unparsable {what}: {type(error).__name__}") from None


def _violation(node: ast.AST) -> str | None:
    """The reason `node` is not allowed, or None."""
    if isinstance(node, ast.Import):
        return next((f"import of {a.name}" for a in node.names if a.name not in ALLOWED_MODULES), None)
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "relative import"
        if node.module not in ALLOWED_MODULES:
            return f"import of {node.module}"
        if any(alias.name == "*" for alias in node.names):
            return f"star import from {node.module}"
        private = [a.name for a in node.names if a.name.startswith("_") or a.name in BANNED_NAMES]
        return f"import of {node.module}.{private[0]}" if private else None
    if isinstance(node, ast.Name):
        return _name_violation(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            return f"private attribute {node.attr}"
        if _INTROSPECTION_ATTRIBUTE.match(node.attr):
            return f"introspection attribute {node.attr}"
        if node.attr in BANNED_NAMES:
            return f"use of {node.attr}"
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        found = _DUNDER_IN_STRING.search(node.value)
        return f"dunder name {found.group()} in a string" if found else None
    if isinstance(node, ast.Raise):
        return "raise statement"
    if isinstance(node, ast.Global):
        return "global statement"
    if isinstance(node, ast.Nonlocal):
        return "nonlocal statement"
    if isinstance(node, (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)):
        return "async code"
    return None


def _name_violation(name: str) -> str | None:
    if name.startswith("__"):
        return f"dunder name {name}"
    if name in BANNED_NAMES:
        return f"use of {name}"
    return None
