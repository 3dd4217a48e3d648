"""The allow-list that model-generated programs must pass before the sandbox runs them.

Absolute Zero's own executor filtered imports with a deny-list that let `import os` and
`__import__("subprocess")` through (docs/references.md §3.3). Here the rule is the opposite: a program
may import only the pure, deterministic modules below, may not read any attribute that starts with
an underscore (the door to `__class__.__subclasses__()`, `__globals__` and private module handles
such as `collections._sys`) nor any name that starts with two (`__import__`, `__builtins__`);
methods may still be *defined* as `__init__` or `__eq__`. It may not name the builtins that reach
code, files or the interpreter, and may not use the statements Absolute Zero bans for proposals
(`raise`, `global`, `nonlocal`, async). Loops are allowed: the runtime limits catch infinite ones.

Modules and the dunder methods a class may define are allow-lists too (`MODULE_NAMES`,
`DUNDER_METHODS`); a class may not name a metaclass, and a private name the program reads must
be one it defines. Every identifier the syntax can carry is checked, not only names and attributes: the attribute
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

# Pure, deterministic, side-effect-free modules (no clock, randomness, files or processes), each
# with the only names a program may use from it: an allow-list, so a helper that reads or copies
# attributes by a computed name (`functools.update_wrapper` copies `__globals__` when told to,
# `operator.attrgetter`) or builds classes from a computed namespace is simply not there. The
# worker's module proxies hold exactly these names. `typing` is here for annotations.
MODULE_NAMES: dict[str, frozenset[str]] = {
    "bisect": frozenset({"bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"}),
    "collections": frozenset({"ChainMap", "Counter", "OrderedDict", "defaultdict", "deque", "namedtuple"}),
    "collections.abc": frozenset({"Callable", "Collection", "Container", "Hashable", "ItemsView", "Iterable",
                                  "Iterator", "KeysView", "Mapping", "MutableMapping", "MutableSequence",
                                  "MutableSet", "Reversible", "Sequence", "Set", "Sized", "ValuesView"}),
    "copy": frozenset({"copy", "deepcopy"}),
    "fractions": frozenset({"Fraction"}),
    "functools": frozenset({"cache", "cmp_to_key", "lru_cache", "partial", "reduce", "total_ordering"}),
    "heapq": frozenset({"heapify", "heappop", "heappush", "heappushpop", "heapreplace", "merge", "nlargest",
                        "nsmallest"}),
    "itertools": frozenset({"accumulate", "batched", "chain", "combinations", "combinations_with_replacement",
                            "compress", "count", "cycle", "dropwhile", "filterfalse", "groupby", "islice",
                            "pairwise", "permutations", "product", "repeat", "starmap", "takewhile", "tee",
                            "zip_longest"}),
    "math": frozenset({"acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb",
                       "copysign", "cos", "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1",
                       "fabs", "factorial", "floor", "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf",
                       "isclose", "isfinite", "isinf", "isnan", "isqrt", "lcm", "ldexp", "lgamma", "log", "log10",
                       "log1p", "log2", "modf", "nan", "nextafter", "perm", "pi", "pow", "prod", "radians",
                       "remainder", "sin", "sinh", "sqrt", "tan", "tanh", "tau", "trunc", "ulp"}),
    "operator": frozenset({"abs", "add", "and_", "concat", "contains", "countOf", "eq", "floordiv", "ge",
                           "getitem", "gt", "index", "indexOf", "inv", "invert", "is_", "is_not", "itemgetter",
                           "le", "lshift", "lt", "mod", "mul", "ne", "neg", "not_", "or_", "pos", "pow", "rshift",
                           "sub", "truediv", "truth", "xor"}),
    "re": frozenset({"A", "ASCII", "DOTALL", "I", "IGNORECASE", "M", "MULTILINE", "S", "VERBOSE", "X", "escape",
                     "findall", "finditer", "fullmatch", "match", "search", "split", "sub", "subn"}),
    "string": frozenset({"ascii_letters", "ascii_lowercase", "ascii_uppercase", "capwords", "digits", "hexdigits",
                         "octdigits", "printable", "punctuation", "whitespace"}),
    "typing": frozenset({"Any", "Callable", "Dict", "FrozenSet", "Iterable", "Iterator", "List", "Literal",
                         "Mapping", "Optional", "Sequence", "Set", "Tuple", "Union"}),
}
ALLOWED_MODULES: frozenset[str] = frozenset(MODULE_NAMES)

# The dunder methods a class may define: construction, comparison, arithmetic, containers. Not
# the hooks that run on lookups or class machinery (`__getattr__`, `__instancecheck__`,
# `__init_subclass__`, `__set_name__`, `__new__`...): on a metaclass, `__getattr__` can supply a
# computed `__match_args__`, turning `case C(x):` into a read of any attribute.
DUNDER_METHODS: frozenset[str] = frozenset({
    "__init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
    "__bool__", "__len__", "__iter__", "__next__", "__reversed__", "__contains__", "__getitem__", "__setitem__",
    "__delitem__", "__call__", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__",
    "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
    "__rmod__", "__pow__", "__rpow__", "__divmod__", "__neg__", "__pos__", "__abs__", "__invert__", "__and__",
    "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lshift__", "__rshift__", "__int__", "__float__",
    "__index__", "__round__", "__missing__",
})

# Builtins that reach code, files, the interpreter or the terminal (the worker offers none of
# them: its builtins are an allow-list), and names of module helpers that read attributes by a
# computed string (`attrgetter("__cl" + "ass__")`), refused here as attributes of anything.
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
    bound = {name for tree in trees for node in ast.walk(tree) for name in _binds(node)}
    for tree in trees:
        for node in ast.walk(tree):
            reason = _violation(node) or _unbound_private(node, bound)
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
        outside = [a.name for a in node.names if a.name not in MODULE_NAMES[node.module]]
        return f"import of {node.module}.{outside[0]}" if outside else None
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
        if node.keywords:
            return f"class keyword {node.keywords[0].arg} (no metaclasses)"
        return _name_violation(node.name)
    if isinstance(node, ast.FunctionDef) and node.name.startswith("__") and node.name not in DUNDER_METHODS:
        return f"method {node.name} (not among the dunder methods a class may define)"
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


def _binds(node: ast.AST) -> list[str]:
    """The names ``node`` binds in the program's own namespaces."""
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        return [node.id]
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.asname or node.name.partition(".")[0]]
    if isinstance(node, (ast.MatchAs, ast.MatchStar, ast.ExceptHandler)) and node.name is not None:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest is not None:
        return [node.rest]
    return []


def _unbound_private(node: ast.AST, bound: set[str]) -> str | None:
    """A private name the program reads but never binds can only come from elsewhere (a module's
    globals copied into the program's, such as `_sys`): refused, whatever put it there."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id.startswith("_") \
            and node.id not in bound:
        return f"private name {node.id} that the program never defines"
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
