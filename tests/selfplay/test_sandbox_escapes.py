"""The hostile corpus: escapes from the Python walls, and what an escaped program then tries.

Every program runs twice, once through the full sandbox (the AST check first) and once with the
AST check switched off, so the walls behind it (builtins, audit hook, seccomp, namespaces) are
tested on their own. After each: a sentinel process of the same user is alive, a canary file
is unchanged, no file with the run's marker exists in /tmp, /dev/shm or the scratch root, a
loopback listener saw no connection, and the next program still runs correctly.
"""

from __future__ import annotations

import glob
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitzero.selfplay import ExecResult, Sandbox
from tests.selfplay.test_sandbox import SUBCLASS_WALK

# The second review's two bypasses of the AST check (each leaked host paths; both contained).
METACLASS_PATTERN = (
    "class Meta(type):\n"
    "    def __instancecheck__(cls, obj):\n"
    "        return True\n"
    "    def __getattr__(cls, name):\n"
    "        return ('_' + '_globals_' + '_',)\n"
    "class Get(metaclass=Meta):\n"
    "    pass\n"
    "def f():\n"
    "    match print:\n"
    "        case Get(g):\n"
    "            return g['sys'].argv\n"
)
GLOBALS_BY_WRAPPER = (
    "import collections\nimport functools\n"
    "def g():\n    return 0\n"
    "functools.update_wrapper(g, collections.namedtuple, (), ('_' + '_globals_' + '_',))\n"
    "def f():\n    return [_sys.argv, _sys.executable, _sys.path]\n"
)
OS_BY_WALK = SUBCLASS_WALK + "OS = find('_wrap_close').__init__.__globals__\n"
OS_BY_PATTERN = "match print:\n    case object(__globals__=g):\n        OS = g['os'].__dict__\n"

# What an escaped program tries; {marker}, {canary}, {pid} and {port} are filled in per run.
ACTIONS = {
    "mkfifo in /tmp": "OS['mkfifo']('/tmp/{marker}-fifo')",
    "mknod in /dev/shm": "OS['mknod']('/dev/shm/{marker}-node')",
    "mkfifo in the working directory's parent": "OS['mkfifo']('../{marker}-fifo')",
    "stat a host file": "OS['stat']('/etc/passwd')",
    "lstat the canary": "OS['lstat']('{canary}')",
    "list /": "OS['listdir']('/')",
    "scandir /proc": "list(OS['scandir']('/proc'))",
    "open for writing": "OS['open']('/tmp/{marker}-file', OS['O_CREAT'] | OS['O_WRONLY'])",
    "open the canary": "OS['open']('{canary}', OS['O_RDONLY'])",
    "unlink the canary": "OS['unlink']('{canary}')",
    "chmod the canary": "OS['chmod']('{canary}', 0o777)",
    "truncate the canary": "OS['truncate']('{canary}', 0)",
    "rename the canary": "OS['rename']('{canary}', '/tmp/{marker}-moved')",
    "link the canary": "OS['link']('{canary}', '/tmp/{marker}-link')",
    "symlink in /tmp": "OS['symlink']('/etc/passwd', '/tmp/{marker}-symlink')",
    "mkdir in /dev/shm": "OS['mkdir']('/dev/shm/{marker}-dir')",
    "utime the canary": "OS['utime']('{canary}', (0, 0))",
    "kill the sentinel": "OS['kill']({pid}, 9)",
    "killpg the sentinel": "OS['killpg']({pid}, 9)",
    "pidfd_open the sentinel": "OS['pidfd_open']({pid})",
    "signal every pid": "[OS['kill'](p, 9) for p in range(1, 4096) if p != OS['getpid']()]",
    "raw kill through ctypes": "OS['sys'].modules['ctypes'].CDLL(None).syscall(62, {pid}, 9) and 1 / 0",
    "raw pidfd_send_signal through ctypes": (
        "OS['sys'].modules['ctypes'].CDLL(None).syscall(424, OS['sys'].modules['ctypes'].CDLL(None)"
        ".syscall(434, {pid}, 0), 9, 0, 0) and 1 / 0"
    ),
    "fork": "OS['fork']()",
    "system": "OS['system']('touch /tmp/{marker}-system')",
    "execv a shell": "OS['execv']('/bin/sh', ['sh', '-c', 'touch /tmp/{marker}-exec'])",
    "posix_spawn": "OS['posix_spawn']('/bin/touch', ['touch', '/tmp/{marker}-spawn'], {})",
    "setuid 0": "OS['setuid'](0)",
    "raise a limit": "OS['sys'].modules['resource'].setrlimit(0, (-1, -1))",
    "getcwd": "OS['getcwd']()",
    "read the environment": "OS['environ']['PATH']",
    "connect to the listener": (
        "M = OS['sys'].modules; L = M['ctypes'].CDLL(None); fd = L.socket(2, 1, 0); "
        "a = M['struct'].pack('=H', 2) + M['struct'].pack('>H', {port}) + bytes([127, 0, 0, 1]) + bytes(8); "
        "L.connect(fd, a, 16) == 0 or 1 / 0"
    ),
    "open a socket": "OS['sys'].modules['ctypes'].CDLL(None).socket(2, 1, 0) >= 0 or 1 / 0",
}



def _attempt(route: str, action: str) -> str:
    """A program that reaches `os` by `route`, then tries `action`: 'DONE' if it worked."""
    return route + f"def f():\n    try:\n        {action}\n        return 'DONE'\n    except Exception:\n        return 'denied'\n"


ACTION_PROGRAMS = [pytest.param(_attempt(OS_BY_WALK, action), id=name) for name, action in ACTIONS.items()] + [
    pytest.param(_attempt(OS_BY_PATTERN, ACTIONS[name]), id=f"class pattern, {name}")
    for name in ("mkfifo in /tmp", "mknod in /dev/shm", "stat a host file", "pidfd_open the sentinel",
                 "raw pidfd_send_signal through ctypes", "connect to the listener")
]

# Escapes from the Python level that the AST check must stop (each also runs without it).
PYTHON_ESCAPES = [
    pytest.param(METACLASS_PATTERN, id="metaclass supplies __match_args__"),
    pytest.param(METACLASS_PATTERN.replace("class Get(metaclass=Meta):\n    pass\n", "Get = Meta('Get', (), {})\n"),
                 id="metaclass called directly"),
    pytest.param(GLOBALS_BY_WRAPPER, id="update_wrapper copies __globals__"),
    pytest.param(OS_BY_PATTERN + "def f():\n    return OS['getcwd']()\n", id="class pattern __globals__"),
    pytest.param("match print:\n    case object(__globals__=g):\n        pass\ndef f():\n    return 'DONE'",
                 id="class pattern binds globals"),
    pytest.param("def f():\n    return ('{0._' + '_globals_' + '_[sys].argv}').format(print)",
                 id="run-time format string"),
    pytest.param("def f():\n    return '{0.x}'.format_map({'0': print})", id="format_map"),
    pytest.param("def f():\n    s = str.format\n    return s('{0._' + '_globals_' + '_[sys].argv}', print)",
                 id="str.format unbound"),
    pytest.param("import string\ndef f():\n    return string.Formatter().format('{0}', 1)", id="string.Formatter"),
    pytest.param(
        "import collections.abc\n"
        "def f():\n"
        "    meta = collections.abc.ABCMeta\n"
        "    k = '_' + '_match_args_' + '_'\n"
        "    C = meta('C', (), {k: ('_' + '_globals_' + '_',)})\n"
        "    return C\n",
        id="metaclass from a proxy",
    ),
    pytest.param(
        "def f():\n"
        "    k = '_' + '_instancecheck_' + '_'\n"
        "    M = type('M', (type,), {k: lambda c, o: True})\n"
        "    return M\n",
        id="three-argument type",
    ),
    pytest.param("import typing\ndef g(x: \"().__class__\"):\n    pass\ndef f():\n    return typing.get_type_hints(g)",
                 id="typing.get_type_hints"),
    pytest.param("import typing\ndef f():\n    return typing.ForwardRef('1')", id="typing.ForwardRef"),
    pytest.param("def g():\n    yield 1\ndef f():\n    return g().gi_frame.f_back.f_globals", id="generator frame"),
    pytest.param("def f():\n    return f.__globals__", id="own globals"),
    pytest.param("def f():\n    return print.__globals__['os'].getcwd()", id="print's globals"),
    pytest.param("def f(__builtins__=1):\n    return 1", id="dunder parameter"),
    pytest.param("def f():\n    return dict(__class__=1)", id="dunder keyword"),
    pytest.param("def f():\n    match 1:\n        case __x:\n            return __x", id="dunder capture"),
    pytest.param("import math as __m\ndef f():\n    return 1", id="dunder alias"),
    pytest.param("class __C:\n    pass\ndef f():\n    return 1", id="dunder class"),
    pytest.param("def f():\n    return [c for c in ().__class__.__base__.__subclasses__()]", id="subclasses"),
    pytest.param("def f():\n    return __builtins__", id="builtins"),
    pytest.param("def f():\n    return (lambda: 0).__code__", id="code object"),
    pytest.param("def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame",
                 id="traceback frame"),
]


@dataclass
class Outside:
    """What a program must not touch: a sentinel process, a canary file, a loopback listener."""

    sentinel: subprocess.Popen
    canary: Path
    listener: socket.socket

    def fill(self, program: str, marker: str) -> str:
        values = {"{marker}": marker, "{canary}": str(self.canary), "{pid}": str(self.sentinel.pid),
                  "{port}": str(self.listener.getsockname()[1])}
        for placeholder, value in values.items():
            program = program.replace(placeholder, value)
        return program

    def assert_untouched(self, marker: str, roots: list[str]) -> None:
        assert self.sentinel.poll() is None, "the sentinel process was killed"
        assert self.canary.read_text() == "canary" and oct(self.canary.stat().st_mode & 0o777) == "0o600"
        leftovers = [p for d in ("/tmp", "/dev/shm", *roots) for p in glob.glob(f"{d}/**/{marker}*", recursive=True)]
        assert leftovers == []
        try:
            connection, _ = self.listener.accept()
        except BlockingIOError:
            return
        connection.close()
        raise AssertionError("a program connected to the loopback listener")


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outside]:
    canary = tmp_path_factory.mktemp("canary") / "canary.txt"
    canary.write_text("canary")
    canary.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    sentinel = subprocess.Popen(["sleep", "600"])
    try:
        yield Outside(sentinel, canary, listener)
    finally:
        sentinel.kill()
        sentinel.wait()
        listener.close()


class Unchecked(Sandbox):
    """The sandbox without its first wall: what the OS-level walls hold on their own."""

    def _reject(self, program: str, call: str) -> None:
        return None


@pytest.fixture(scope="module")
def checked() -> Iterator[Sandbox]:
    with Sandbox(timeout_s=2.0, cpu_s=1, memory_mb=256, max_output_chars=4000) as box:
        yield box


@pytest.fixture(scope="module")
def unchecked() -> Iterator[Sandbox]:
    with Unchecked(timeout_s=2.0, cpu_s=1, memory_mb=256, max_output_chars=4000, workers=2) as box:
        yield box


def _contain(box: Sandbox, outside: Outside, program: str) -> ExecResult:
    """Run, check that nothing outside changed and that the next program is sound; the result."""
    marker = f"bz-escape-{uuid.uuid4().hex[:12]}"
    result = box.run(outside.fill(program, marker), "f()")
    roots = [w.root for pool in box._pools for w in pool if w is not None]
    outside.assert_untouched(marker, roots)
    sound = box.run("def f(x):\n    return sorted(set(x))", "f([3, 1, 3])")
    assert sound.ok and sound.value == [1, 3]
    return result


@pytest.mark.parametrize("program", ACTION_PROGRAMS)
def test_escaped_program_reaches_nothing_outside(unchecked, checked, outside, program):
    assert _contain(unchecked, outside, program).value != "DONE"
    assert _contain(checked, outside, program).reason.startswith("rejected:")


@pytest.mark.parametrize("program", PYTHON_ESCAPES)
def test_python_level_escape_is_rejected_and_contained(unchecked, checked, outside, program):
    result = checked.run(program, "f()")
    assert not result.ok and result.reason.startswith(("rejected:", "runtime error: AttributeError")), result
    _contain(unchecked, outside, program)  # may get somewhere in Python, but reaches nothing outside


def test_two_workers_cannot_signal_each_other(outside):
    """A program busy on one worker survives a program on the other that signals every pid."""
    busy = ("def f():\n    n = 0\n    for i in range(3 * 10**6):\n        n += i\n    return n > 0", "f()")
    killer = (OS_BY_WALK + "def f():\n    for p in range(1, 1 << 15):\n        try:\n            OS['kill'](p, 9)\n"
              "        except Exception:\n            pass\n    return 'tried'", "f()")
    with Unchecked(timeout_s=5.0, cpu_s=3, workers=2) as box:
        results = box.run_many([busy, killer, busy, killer])
    assert [r.value for r in results[::2]] == [True, True], results
    assert outside.sentinel.poll() is None


def test_corpus_size():
    assert len(ACTION_PROGRAMS) + len(PYTHON_ESCAPES) >= 60
