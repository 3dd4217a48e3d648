"""The sandbox contains hostile programs, says why, and stays correct for the next program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest

from bitzero.selfplay import (
    ExecResult,
    Failure,
    PolicyViolation,
    Sandbox,
    SandboxUnavailable,
    check_program,
    values_equal,
)
from bitzero.selfplay import _sandbox_worker as worker
from bitzero.selfplay.policy import MODULE_NAMES

BENIGN = ("def f(x):\n    return x * 2\n", "f(21)")
NOBODY = 65534 if os.geteuid() == 0 else None


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout_s=1.0, cpu_s=1, memory_mb=256, max_output_chars=2000) as box:
        yield box


def assert_still_sound(box: Sandbox) -> None:
    result = box.run(*BENIGN)
    assert result.ok and result.value == 42 and type(result.value) is int


HOSTILE = [
    ("import os\ndef f():\n    return os.listdir('/')", "f()", "rejected: import of os"),
    ("import sys", "sys.version", "rejected: import of sys"),
    ("import subprocess", "subprocess.run(['id'])", "rejected: import of subprocess"),
    ("from socket import socket", "socket()", "rejected: import of socket"),
    ("import ctypes", "ctypes.string_at(0)", "rejected: import of ctypes"),
    ("import random", "random.random()", "rejected: import of random"),
    ("from time import time", "time()", "rejected: import of time"),
    ("", "__import__('os').system('id')", "rejected: dunder name __import__"),
    ("", "open('/etc/passwd').read()", "rejected: use of open"),
    ("", "eval('1 + 1')", "rejected: use of eval"),
    ("exec('x = 1')", "x", "rejected: use of exec"),
    ("", "().__class__.__bases__[0].__subclasses__()", "rejected: private attribute __subclasses__"),
    ("", "getattr((), '__cl' + 'ass__')", "rejected: use of getattr"),
    ("from operator import attrgetter", "attrgetter('__cl' + 'ass__')(())", "rejected: import of operator.attrgetter"),
    ("import operator", "operator.attrgetter('x')", "rejected: use of attrgetter"),
    ("import collections", "collections._sys", "rejected: private attribute _sys"),
    ("", "'{0.__class__}'.format(1)", "rejected: run-time format string (format)"),
    ("", "'{0.__class__}' % ()", "rejected: dunder name __class__ in a string"),
    ("def g():\n    yield 1\n", "g().gi_frame.f_back", "rejected: introspection attribute"),
    ("def f(x):\n    raise ValueError(x)", "f(1)", "rejected: raise statement"),
    ("n = 0\ndef f():\n    global n\n    n += 1\n    return n", "f()", "rejected: global statement"),
    ("async def f():\n    return 1", "f()", "rejected: async code"),
    ("from .x import y", "y", "rejected: relative import"),
    ("from math import *", "pi", "rejected: star import from math"),
    ("def f(:", "f()", "rejected: syntax error in program"),
    ("def f():\n    while True:\n        pass", "f()", "timeout"),
    ("", "[0] * 10**10", "memory limit"),
    ("", "'a' * 10**10", "memory limit"),
    ("def f():\n    xs = []\n    while True:\n        xs.append([0] * 100000)", "f()", "memory limit"),
    ("def f():\n    for i in range(10**6):\n        print('spam', i)", "f()", "output too large"),
    ("", "'x' * 5000", "output too large"),
    ("def f(x):\n    return f(x)", "f(1)", "runtime error: RecursionError"),
    ("", "1 / 0", "runtime error: ZeroDivisionError"),
    ("", "id(object())", "blocked: builtins.id"),
    ("def f():\n    return object()", "f()", "non-literal result"),
]


@pytest.mark.parametrize(("program", "call", "reason"), HOSTILE, ids=[h[2] for h in HOSTILE])
def test_hostile_program_is_contained_and_the_next_one_is_unaffected(sandbox, program, call, reason):
    result = sandbox.run(program, call)
    assert not result.ok and result.value is None
    assert result.reason.startswith(reason), result.reason
    assert result.failure == Failure(reason.split(":")[0])  # the kind is typed, the detail is text
    assert_still_sound(sandbox)


def test_cpu_limit_ends_a_busy_program_before_a_long_wall_clock_deadline():
    with Sandbox(timeout_s=10.0, cpu_s=1) as box:
        result = box.run("def f():\n    n = 0\n    while True:\n        n += 1", "f()")
        assert result.reason == "timeout: cpu limit" and result.seconds < 5
        assert_still_sound(box)


@pytest.mark.parametrize(
    "call, expected",
    [
        ("f(21)", 42),
        ("[1, 'a', None]", [1, "a", None]),
        ("{'k': (1, 2.5), 3: [True, False]}", {"k": (1, 2.5), 3: [True, False]}),
        ("'it''s'", "its"),
        ("(1,)", (1,)),
        ("None", None),
        ("True", True),
        ("sorted({3, 1, 2})", [1, 2, 3]),
        ("-3.5e-3", -3.5e-3),
    ],
)
def test_values_round_trip_as_python_values(sandbox, call, expected):
    result = sandbox.run(BENIGN[0], call)
    assert result.ok and result.reason is None
    assert result.value == expected and type(result.value) is type(expected)
    assert values_equal(result.value_repr, repr(expected))


def test_realistic_deduction_program_with_allowed_imports(sandbox):
    program = (
        "from collections import Counter\nfrom typing import List\nimport re, math, itertools\n"
        "class Acc:\n    def __init__(self):\n        self.total = 0\n"
        "def f(text: str, k: int) -> List[str]:\n"
        "    words = re.findall(r'[a-z]+', text.lower())\n"
        "    top = Counter(words).most_common(k)\n"
        "    acc = Acc()\n"
        "    for w, n in top:\n        acc.total += n\n"
        "    pairs = list(itertools.combinations(sorted(w for w, _ in top), 2))\n"
        "    return [w for w, _ in top], acc.total, math.comb(k, 2), pairs\n"
    )
    result = sandbox.run(program, "f('b a b c b a', 2)")
    assert result.ok, result.reason
    assert result.value == (["b", "a"], 5, 1, [("a", "b")])


def test_print_is_allowed_within_the_cap(sandbox):
    assert sandbox.run("def f():\n    print('hello')\n    return 1", "f()").value == 1


def test_check_deterministic_accepts_a_pure_program(sandbox):
    result = sandbox.check_deterministic("def f(xs):\n    return sorted(set(xs))", "f(['b', 'a', 'b'])")
    assert result.ok and result.value == ["a", "b"]


@pytest.mark.parametrize(
    "program, call",
    [
        ("", "hash('bitzero')"),
        ("def f():\n    return list({'w%d' % i for i in range(40)})", "f()"),
    ],
)
def test_check_deterministic_catches_hash_randomisation(sandbox, program, call):
    assert sandbox.run(program, call).ok  # a single run cannot tell
    result = sandbox.check_deterministic(program, call)
    assert not result.ok and result.reason == "non-deterministic"
    assert_still_sound(sandbox)


def test_check_deterministic_keeps_the_first_failure(sandbox):
    assert sandbox.check_deterministic("", "1 / 0").reason == "runtime error: ZeroDivisionError"


def test_run_many_keeps_order_and_isolates_programs():
    batch = [(BENIGN[0], f"f({i})") for i in range(12)]
    batch[3] = ("", "[0] * 10**10")
    batch[7] = ("import os", "1")
    batch[9] = ("def f():\n    while True:\n        pass", "f()")
    with Sandbox(timeout_s=0.5, workers=2) as box:
        results = box.run_many(batch)
        determinism = box.check_deterministic_many(batch[:3])
    assert [r.reason for r in results if not r.ok] == ["memory limit", "rejected: import of os (line 1)", "timeout"]
    assert [r.value for i, r in enumerate(results) if i not in (3, 7, 9)] == [2 * i for i in range(12) if i not in (3, 7, 9)]
    assert [r.value for r in determinism] == [0, 2, 4]


def test_a_dead_worker_is_replaced(sandbox):
    sandbox.run(*BENIGN)
    live = sandbox._pools[0][0]
    os.kill(live.process.pid, signal.SIGKILL)
    live.process.wait()
    assert_still_sound(sandbox)
    assert sandbox._pools[0][0] is not live


def test_working_directories_are_removed(sandbox):
    sandbox.run(*BENIGN)
    root = sandbox._pools[0][0].root
    assert os.listdir(root) == []
    with Sandbox() as box:
        box.run(*BENIGN)
        own_root = box._pools[0][0].root
    assert not os.path.exists(own_root)
    with pytest.raises(SandboxUnavailable, match="closed"):
        box.run(*BENIGN)


# The runtime walls, tested without the AST check in front of them.

@pytest.fixture(scope="module")
def environment():
    return worker.Environment({name: sorted(names) for name, names in MODULE_NAMES.items()})


def run_unchecked(environment, program: str, call: str = "f()") -> dict:
    request = {
        "program": program, "call": call, "timeout_s": 2.0, "cpu_s": 1, "memory_mb": 512,
        "max_output_chars": 2000, "drop_uid": NOBODY,
    }
    with tempfile.TemporaryDirectory() as root:
        return worker.run_one(request, environment, root)


SUBCLASS_WALK = (
    "def find(name):\n"
    "    todo = [().__class__.__bases__[0]]\n"
    "    while todo:\n"
    "        c = todo.pop()\n"
    "        if c.__name__ == name:\n"
    "            return c\n"
    "        try:\n"
    "            todo.extend(c.__subclasses__())\n"
    "        except TypeError:\n"
    "            pass\n"
)


@pytest.mark.parametrize(
    "program, reason",
    [
        (SUBCLASS_WALK + "def f():\n    return find('_wrap_close').__init__.__globals__['system']('id')", "blocked: os.system"),
        (SUBCLASS_WALK + "def f():\n    return find('FileIO')('/etc/passwd').read()", "blocked: open"),
        ("def g():\n    yield 1\ndef f():\n    return g().gi_frame.f_back", "blocked: object.__getattr__"),
        ("def f():\n    try:\n        return open('x', 'w')\n    except BaseException:\n        return 0", "runtime error: NameError"),
        ("import os\ndef f():\n    return os.getcwd()", "runtime error: ImportError"),
        ("def f():\n    return __import__('socket')", "runtime error: ImportError"),
        ("import collections\ndef f():\n    return collections._sys", "runtime error: AttributeError"),
        ("import functools\ndef f():\n    return functools.update_wrapper", "runtime error: AttributeError"),
        ("class M(type):\n    pass\ndef f():\n    return M", "runtime error: TypeError"),
        ("class M(type):\n    pass\nclass C(metaclass=M):\n    pass\ndef f():\n    return C", "runtime error: TypeError"),
        ("import typing\nclass P(typing.Protocol):\n    pass\ndef f():\n    return P", "runtime error: AttributeError"),
        (
            SUBCLASS_WALK + "def f():\n    try:\n        find('_wrap_close').__init__.__globals__['fork']()\n"
            "    except BaseException:\n        return 'swallowed'",
            "blocked: os.fork",
        ),
    ],
)
def test_runtime_walls_hold_when_the_ast_check_is_bypassed(environment, program, reason):
    reply = run_unchecked(environment, program)
    assert f"{reply['failure']}: {reply['detail']}" == reason


_CONFINED = """
import os, sys
from bitzero.selfplay import _sandbox_worker as worker
pid = os.fork()  # the child's CPU time starts at 0, as the worker's child's does
if pid:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
code = 0
os.closerange(3, 1 << 16)  # as the worker's child does: RLIMIT_NOFILE is small
worker.confine(sys.argv[1], 2, 256, None if sys.argv[2] == "-" else int(sys.argv[2]))
try:
    if os.fork() == 0:
        os._exit(0)
    code |= 1
except OSError:
    pass
try:
    bytearray(512 * 1024 * 1024)
    code |= 2
except MemoryError:
    pass
if os.listdir(".") != []:
    code |= 4
os._exit(code)
"""


def test_confined_child_cannot_fork_or_exceed_memory():
    # A fresh interpreter, as the worker's child is small: a child forked from pytest itself could
    # take the 512 MB from the free heap the earlier tests left, with no new address space at all.
    with tempfile.TemporaryDirectory() as workdir:
        done = subprocess.run([sys.executable, "-c", _CONFINED, workdir, "-" if NOBODY is None else str(NOBODY)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"exit {done.returncode} (1: forked, 2: 512 MB allocated, 4: saw files)\n{done.stderr}"


def test_policy_accepts_ordinary_code_and_explains_rejections():
    check_program("import math\nfrom collections import deque\nclass A:\n    def __eq__(self, o):\n        return True", "A() == 1")
    with pytest.raises(PolicyViolation) as caught:
        check_program("x = 1", "x.__class__")
    assert caught.value.reason == "rejected: private attribute __class__ (line 1)"
    with pytest.raises(PolicyViolation, match="longer than"):
        check_program("x = 1\n" * 5000)


def test_values_equal_compares_values_never_evaluates():
    assert values_equal("42", 42) and values_equal("[1, (2, 'a')]", [1, (2, "a")])
    assert values_equal("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}")
    assert not values_equal("True", 1) and not values_equal("1.0", 1)
    assert not values_equal("hello", "'hello'")  # unquoted text is not a literal
    assert not values_equal("__import__('os').getcwd()", 0)


def test_result_of_a_rejected_program_is_immediate(sandbox):
    result = sandbox.run("import os", "1")
    assert result == ExecResult(False, None, "", Failure.REJECTED, 0.0, "import of os (line 1)")
    assert result.reason == "rejected: import of os (line 1)"


@pytest.mark.parametrize("data", [b"[" * 1400, b"{" * 100_000, b"\xff\xfe garbage", b"", b'{"failure": 3}',
                                  b'{"value_repr": 5}', b"[" * 1400 + b'{"value_repr": "1"}'])
def test_any_bytes_on_the_result_pipe_are_a_crash_not_a_dead_worker(data):
    assert worker._parse_result(data)["failure"] == "crashed"


def test_policy_allows_private_names_the_program_defines_and_plain_classes():
    check_program("import functools\nfrom collections import Counter\ndef _count(v):\n    return Counter(v)\n"
                  "class A:\n    def __init__(self, x):\n        self.x = x\n    def __lt__(self, o):\n"
                  "        return self.x < o.x\ndef f(v):\n    return [_count(v) for _ in range(2)], "
                  "functools.reduce(max, v), sorted([A(2), A(1)])[0].x", "f([1, 2])")
    for program, detail in [("from functools import update_wrapper", "import of functools.update_wrapper"),
                            ("class C:\n    def __getattr__(self, n):\n        return n", "method __getattr__"),
                            ("class C(metaclass=type):\n    pass", "class keyword metaclass"),
                            ("def f():\n    return _sys", "private name _sys")]:
        with pytest.raises(PolicyViolation, match=detail):
            check_program(program)
