"""The allow-list that model-generated programs must pass before the sandbox runs them.

Absolute Zero's own executor filtered imports with a deny-list that let `import os` and
`__import__("subprocess")` through (docs/references.md §3.3). Here the rule is the opposite: a program
may import only the pure, deterministic modules below, may not read any attribute that starts with
an underscore (the door to `__class__.__subclasses__()`, `__globals__` and private module handles
such as `collections._sys`) nor any name that starts with two (`__import__`, `__builtins__`);
methods may still be *defined* as `__init__` or `__eq__`. It may not name the builtins that reach
code, files or the interpreter, and may not use the statements Absolute Zero bans for proposals
(`raise`, `global`, `nonlocal`, async). Loops are allowed: the runtime limits catch infinite ones.

Every identifier the syntax can carry is checked, not only names and attributes: the attribute
names of class patterns (`case object(__globals__=g)` reads an attribute), keyword arguments,
bound pattern names, parameters and aliases. Strings become attribute paths at run time through
`str.format` and `format_map` (`'{0._' + '_globals_' + '_}'.format(f)`), so those methods are
banned outright, as is the three-argument `type(name, bases, namespace)`, whose namespace keys
(`__match_args__`, `__instancecheck__`) can be computed. CPython cannot be made airtight from
the inside; the worker's seccomp filter and namespaces are what a complete escape meets.

The same lists travel to the worker (see `_sandbox_worker.py`), which hides the banned names and
private attributes at run time as well: this check is the first wall, not the only one.
"""

from __future__ import annotations

import ast
import re

from bitzero.errors import SelfPlayError

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
        "ForwardRef",
        "format_map",
        "Formatter",
        "get_type_hints",
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
# Methods whose receiver string becomes attribute lookups on their arguments.
_FORMATTING_ATTRIBUTES = frozenset({"format", "format_map"})

MAX_PROGRAM_CHARS = 10_000
MAX_CALL_CHARS = 1_000


class PolicyViolation(SelfPlayError, ValueError):
    """A program breaks the allow-list; `detail` says how ("import of os (line 1)")."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.reason = f"rejected: {detail}"
        super().__init__(self.reason)


def check_program(program: str, call: str = "", max_program_chars: int = MAX_PROGRAM_CHARS) -> None:
    """Raise PolicyViolation unless `program` and the `call` expression pass the allow-list."""
    if len(program) > max_program_chars:
        raise PolicyViolation(f"program longer than {max_program_chars} characters")
    if len(call) > MAX_CALL_CHARS:
        raise PolicyViolation(f"call longer than {MAX_CALL_CHARS} characters")
    trees = [_parse(program, "exec", "program")]
    if call:
        trees.append(_parse(call, "eval", "call"))
    for tree in trees:
        for node in ast.walk(tree):
            reason = _violation(node)
            if reason is not None:
                line = getattr(node, "lineno", None)
                where = f" (line {line})" if line is not None else ""
                raise PolicyViolation(f"{reason}{where}")


def _parse(source: str, mode: str, what: str) -> ast.AST:
    try:
        return ast.parse(source, filename=f"<{what}>", mode=mode)
    except SyntaxError as error:
        raise PolicyViolation(f"syntax error in {what}: {error.msg}") from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise PolicyViolation(f"unparsable {what}: {type(error).__name__}") from None


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
        if node.attr in _FORMATTING_ATTRIBUTES:
            return f"run-time format string ({node.attr})"
        return _attribute_violation(node.attr)
    if isinstance(node, ast.MatchClass):
        return next(filter(None, map(_attribute_violation, node.kwd_attrs)), None)
    if isinstance(node, ast.keyword) and node.arg is not None:
        return _attribute_violation(node.arg)
    if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name is not None:
        return _name_violation(node.name)
    if isinstance(node, ast.MatchMapping) and node.rest is not None:
        return _name_violation(node.rest)
    if isinstance(node, ast.arg):
        return _name_violation(node.arg)
    if isinstance(node, ast.alias) and node.asname is not None:
        return _name_violation(node.asname)
    if isinstance(node, ast.ClassDef):
        return _name_violation(node.name)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type":
        return "type() with more than one argument" if len(node.args) + len(node.keywords) != 1 else None
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


def _attribute_violation(name: str) -> str | None:
    """Why reading attribute `name` is not allowed (by `.name`, a class pattern or a keyword)."""
    if name.startswith("_"):
        return f"private attribute {name}"
    if _INTROSPECTION_ATTRIBUTE.match(name):
        return f"introspection attribute {name}"
    if name in BANNED_NAMES:
        return f"use of {name}"
    return None


def _name_violation(name: str) -> str | None:
    if name.startswith("__"):
        return f"dunder name {name}"
    if name in BANNED_NAMES:
        return f"use of {name}"
    return None
