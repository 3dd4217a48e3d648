"""Run untrusted, model-generated Python for self-play verification, safely and fast.

Absolute Zero verifies every proposed program by running it; its executor did so with `exec` in
a process pool behind a leaky import filter (docs/references.md §3.3). Here four walls stand between a
program and the machine:

1. the AST allow-list of `policy.py`, checked in this process before anything runs;
2. a zygote worker: a separate `python -I -S -B` interpreter with an empty environment, started
   in its own session and, where bubblewrap works, as `nobody` in new user, PID, mount, IPC and
   network namespaces that see the system read-only and only their own scratch directory
   writable (else in a fresh network namespace when `unshare` allows it), importing only the
   standard library; each worker has its own namespaces, so programs on two workers cannot see
   or signal each other;
3. per program, a child forked from that worker which is confined before the program starts:
   empty working directory (removed afterwards), rlimits on CPU time, address space, file size,
   open files and process count, root dropped to `nobody`, builtins allow-list, module proxies,
   an audit hook refusing every audited event, and a wall-clock deadline after which the worker
   kills it;
4. last, in that child, a seccomp allow-list of the few system calls pure computation needs:
   a program that escapes the Python walls (CPython cannot make them complete) finds no system
   call that reaches files, processes, signals or the network.

A program can therefore never change another program's result: each runs in its own fork and
nothing flows back but a JSON line. A worker that dies is replaced and the program re-run once
in the new one; a worker that stops answering is killed with its whole process group. Values
cross the process boundary only as `repr` text and come back through `ast.literal_eval`, never
`eval`. Forking costs about a millisecond where a fresh interpreter per program costs tens (see
benchmarks/sandbox_bench.py). Linux only (fork, rlimits, pidfd_open: kernel 5.3 or later).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bitzero.errors import SelfPlayError
from bitzero.selfplay.policy import MAX_PROGRAM_CHARS, MODULE_NAMES, PolicyViolation, check_program

WORKER_SCRIPT = Path(__file__).with_name("_sandbox_worker.py")
NOBODY_UID = 65534
STARTUP_S = 30.0
REPLY_GRACE_S = 2.0  # how long past a program's own deadline the worker may take to answer


class SandboxUnavailable(SelfPlayError, RuntimeError):
    """A sandbox worker could not be started, so nothing can be verified."""


class Failure(StrEnum):
    """Why a program gave no value: counted by kind in the sandbox statistics, and the worker's
    wire format (its JSON reply names one of these, with a free-text detail)."""

    REJECTED = "rejected"  # the policy refused the program before it ran
    BLOCKED = "blocked"  # an audited event (file, process, import...) during the run
    TIMEOUT = "timeout"
    MEMORY = "memory limit"
    OUTPUT = "output too large"
    RUNTIME = "runtime error"  # the program raised
    CRASHED = "crashed"  # the child or the worker died
    SANDBOX = "sandbox error"  # confinement itself failed: the program never ran
    NON_LITERAL = "non-literal result"
    NON_DETERMINISTIC = "non-deterministic"


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program: its value when `ok`, else why not (`failure`, with a `detail`)."""

    ok: bool
    value: Any | None
    value_repr: str
    failure: Failure | None
    seconds: float
    detail: str = ""

    @property
    def reason(self) -> str | None:
        """The failure for people: "runtime error: ZeroDivisionError"."""
        if self.failure is None:
            return None
        return f"{self.failure}: {self.detail}" if self.detail else str(self.failure)


def values_equal(a: Any, b: Any) -> bool:
    """Whether two answers are the same Python value, types included (True is not 1).

    A str argument is read as a Python literal with `ast.literal_eval` (the repr of the value);
    to compare a str value, pass its repr. Unreadable text equals nothing.
    """
    try:
        return _same_value(_as_value(a), _as_value(b))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _as_value(answer: Any) -> Any:
    return ast.literal_eval(answer) if isinstance(answer, str) else answer


def _same_value(x: Any, y: Any) -> bool:
    if type(x) is not type(y):
        return False
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(map(_same_value, x, y))
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same_value(v, y[k]) for k, v in x.items())
    return bool(x == y)


INSIDE_ROOT = "/scratch"  # where a worker in bubblewrap sees its scratch directory
INSIDE_WORKER = "/sandbox/worker.py"


@dataclass(frozen=True)
class Isolation:
    """How workers are walled off from the host: a command prefix and a description.

    `scratch` is where the worker sees its directory (None: the host path); `drops_uid`: the
    prefix already runs the worker as `nobody`, so children need not drop root themselves.
    """

    prefix: tuple[str, ...]
    label: str
    scratch: str | None = None
    drops_uid: bool = False


def _bubblewrap_prefix(bwrap: str, root: str) -> list[str]:
    """bubblewrap: new user (as nobody), PID, mount, IPC, UTS, cgroup and network namespaces; a
    read-only view of the system and the interpreter; the worker's scratch directory the only
    writable place; no environment."""
    binds = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin"):
        if os.path.islink(top):
            binds += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            binds += ["--ro-bind", top, top]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        binds += ["--ro-bind", prefix, prefix]
    return [
        bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY_UID), "--gid", str(NOBODY_UID),
        "--die-with-parent", "--clearenv", *binds, "--ro-bind", str(WORKER_SCRIPT), INSIDE_WORKER,
        "--bind", root, INSIDE_ROOT, "--proc", "/proc", "--dev", "/dev", "--chdir", INSIDE_ROOT,
    ]


@functools.cache
def _isolation() -> Isolation:
    """The strongest wall this host allows: bubblewrap, else `unshare` of the network, else none."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None:
        probe_root = tempfile.mkdtemp(prefix="bitzero-probe-")
        try:
            command = [*_bubblewrap_prefix(bwrap, probe_root), os.path.realpath(sys.executable), "-I", "-S", "-c", "0"]
            if subprocess.run(command, capture_output=True, timeout=20).returncode == 0:
                return Isolation((bwrap,), "bubblewrap: user, pid, mount, ipc and network namespaces",
                                 INSIDE_ROOT, drops_uid=True)
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            shutil.rmtree(probe_root, ignore_errors=True)
    unshare = shutil.which("unshare")
    if unshare is not None:
        for flag, label in (("-n", "network namespace"), ("-rn", "user and network namespace")):
            try:
                probe = subprocess.run([unshare, flag, "true"], capture_output=True, timeout=10)
            except (OSError, subprocess.SubprocessError):
                continue
            if probe.returncode == 0:
                return Isolation((unshare, flag), label, drops_uid=flag == "-rn")
    return Isolation((), "shared (the socket module is unreachable and socket events are refused)")


@functools.cache
def _scratch_dir() -> str | None:
    """Where working directories go: tmpfs when there is one (creating and removing a directory
    per program is several times cheaper there than on an overlay /tmp), else the default."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class _Worker:
    """One zygote worker process and its JSON-lines channel."""

    def __init__(self, isolation: Isolation, config: dict) -> None:
        self.root = tempfile.mkdtemp(prefix="bitzero-sandbox-", dir=_scratch_dir())
        self._buffer = b""
        try:
            self.process = subprocess.Popen(
                _worker_command(isolation, self.root), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={}, cwd=self.root, start_new_session=True, bufsize=0,
            )
        except OSError as error:
            shutil.rmtree(self.root, ignore_errors=True)
            raise SandboxUnavailable(f"cannot start sandbox worker: {error}") from error
        # Also runs when the Sandbox is garbage-collected or the interpreter exits unclosed.
        self._finalizer = weakref.finalize(self, _stop_worker, self.process, self.root)
        reply, failure = self.request({**config, "root": isolation.scratch or self.root}, STARTUP_S)
        if reply is None or not reply.get("ready"):
            self.close()
            raise SandboxUnavailable(f"sandbox worker did not start ({failure or 'bad greeting'})")

    def request(self, message: dict, wait_s: float) -> tuple[dict | None, str | None]:
        """Send one line and read one back: (reply, None), or (None, "died" | "hung")."""
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise SandboxUnavailable("the sandbox worker was started without its stdin/stdout pipes")
        try:
            data = (json.dumps(message) + "\n").encode()
            while data:
                data = data[os.write(stdin.fileno(), data) :]
        except OSError:
            return None, "died"
        deadline = time.monotonic() + wait_s
        fd = stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "hung"
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None, "died"
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError, MemoryError):
            return None, "died"
        return (reply, None) if isinstance(reply, dict) else (None, "died")

    def close(self) -> None:
        """Kill the worker with its process group (any child it forked) and remove its files."""
        self._finalizer()


def _worker_command(isolation: Isolation, root: str) -> list[str]:
    if isolation.scratch is None:
        return [*isolation.prefix, sys.executable, "-I", "-S", "-B", str(WORKER_SCRIPT)]
    interpreter = os.path.realpath(sys.executable)  # a venv's link may point outside the view
    return [*_bubblewrap_prefix(isolation.prefix[0], root), interpreter, "-I", "-S", "-B", INSIDE_WORKER]


def _stop_worker(process: subprocess.Popen, root: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdin, process.stdout):  # both are pipes (Popen with PIPE)
        if pipe is not None:
            pipe.close()
    shutil.rmtree(root, ignore_errors=True)


class Sandbox:
    """Verifies programs in confined children of persistent zygote workers; use `with`.

    `run_many` spreads a batch over `workers` workers. `check_deterministic*` runs each program
    a second time in a different interpreter (another hash seed and address layout), so that
    set ordering of strings, `hash` and `id` are caught. Not thread-safe: calls are serialised.
    """

    def __init__(
        self,
        timeout_s: float = 1.0,
        cpu_s: int = 1,
        memory_mb: int = 256,
        max_output_chars: int = 10_000,
        workers: int = 1,
        max_program_chars: int = MAX_PROGRAM_CHARS,
    ) -> None:
        if timeout_s <= 0 or cpu_s < 1 or memory_mb < 32 or max_output_chars < 1 or workers < 1:
            raise ValueError("need timeout_s > 0, cpu_s >= 1, memory_mb >= 32, max_output_chars >= 1, workers >= 1")
        self.timeout_s = timeout_s
        self.cpu_s = int(cpu_s)
        self.memory_mb = int(memory_mb)
        self.max_output_chars = max_output_chars
        self.max_program_chars = max_program_chars
        self.isolation = _isolation()
        self.network = self.isolation.label
        self.drop_uid = NOBODY_UID if os.geteuid() == 0 and not self.isolation.drops_uid else None
        self._config = {"modules": {name: sorted(names) for name, names in MODULE_NAMES.items()},
                        "drop_uid": self.drop_uid}
        self._pools: tuple[list[_Worker | None], list[_Worker | None]] = ([None] * workers, [None] * workers)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="sandbox") if workers > 1 else None
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker and remove their directories."""
        with self._lock:
            self._closed = True
            for pool in self._pools:
                for slot, worker in enumerate(pool):
                    if worker is not None:
                        worker.close()
                        pool[slot] = None
            if self._threads is not None:
                self._threads.shutdown()

    def run(self, program: str, call: str) -> ExecResult:
        """Run `program`, then evaluate the expression `call`, e.g. `f(3, [1, 2])`."""
        return self.run_many([(program, call)])[0]

    def run_many(self, items: Iterable[tuple[str, str]]) -> list[ExecResult]:
        """Run a batch of (program, call) pairs, spread over the workers, results in order."""
        return self._run_on(self._pools[0], list(items))

    def check_deterministic(self, program: str, call: str) -> ExecResult:
        """Run twice in different interpreters; reason "non-deterministic" if the values differ."""
        return self.check_deterministic_many([(program, call)])[0]

    def check_deterministic_many(self, items: Iterable[tuple[str, str]]) -> list[ExecResult]:
        """`check_deterministic` for a batch: the second pass runs on a separate set of workers."""
        batch = list(items)
        first = self._run_on(self._pools[0], batch)
        again = [i for i, result in enumerate(first) if result.ok]
        second = dict(zip(again, self._run_on(self._pools[1], [batch[i] for i in again]), strict=True))
        return [_agree(result, second[i]) if i in second else result for i, result in enumerate(first)]

    def _run_on(self, pool: list[_Worker | None], batch: list[tuple[str, str]]) -> list[ExecResult]:
        results: list[ExecResult | None] = [self._reject(program, call) for program, call in batch]
        pending = iter([i for i, result in enumerate(results) if result is None])
        claim = threading.Lock()

        def drain(slot: int) -> None:
            while True:
                with claim:
                    index = next(pending, None)
                if index is None:
                    return
                results[index] = self._execute(pool, slot, *batch[index])

        with self._lock:
            if self._closed:
                raise SandboxUnavailable("the sandbox is closed")
            if self._threads is None:
                drain(0)
            else:
                list(self._threads.map(drain, range(len(pool))))
        return [result for result in results if result is not None]

    def _reject(self, program: str, call: str) -> ExecResult | None:
        if not isinstance(program, str) or not isinstance(call, str):
            raise TypeError("program and call must be str")
        try:
            check_program(program, call, self.max_program_chars)
        except PolicyViolation as violation:
            return ExecResult(False, None, "", Failure.REJECTED, 0.0, violation.detail)
        if not call.strip():
            return ExecResult(False, None, "", Failure.REJECTED, 0.0, "empty call")
        return None

    def _execute(self, pool: list[_Worker | None], slot: int, program: str, call: str) -> ExecResult:
        message = {
            "program": program, "call": call, "timeout_s": self.timeout_s, "cpu_s": self.cpu_s,
            "memory_mb": self.memory_mb, "max_output_chars": self.max_output_chars,
        }
        start = time.perf_counter()
        failure = None
        for _attempt in range(2):  # a worker that died is replaced and the program re-run once
            worker = pool[slot] or _Worker(self.isolation, self._config)
            pool[slot] = worker
            reply, failure = worker.request(message, self.timeout_s + REPLY_GRACE_S)
            if reply is not None:
                return _to_result(reply)
            worker.close()
            pool[slot] = None
            if failure == "hung":
                break
        seconds = time.perf_counter() - start
        if failure == "hung":
            return ExecResult(False, None, "", Failure.TIMEOUT, seconds)
        return ExecResult(False, None, "", Failure.CRASHED, seconds, "worker died")


def _to_result(reply: dict) -> ExecResult:
    seconds = float(reply.get("seconds", 0.0))
    text = str(reply.get("value_repr", ""))
    if reply.get("failure") is not None:
        try:
            return ExecResult(False, None, text, Failure(reply["failure"]), seconds, str(reply.get("detail", "")))
        except ValueError:
            return ExecResult(False, None, text, Failure.CRASHED, seconds, "malformed result")
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ExecResult(False, None, text, Failure.NON_LITERAL, seconds)
    return ExecResult(True, value, text, None, seconds)


def _agree(first: ExecResult, second: ExecResult) -> ExecResult:
    seconds = first.seconds + second.seconds
    if not second.ok:
        return ExecResult(False, None, first.value_repr, Failure.NON_DETERMINISTIC, seconds, second.reason or "")
    if not _same_value(first.value, second.value):
        return ExecResult(False, None, first.value_repr, Failure.NON_DETERMINISTIC, seconds)
    return ExecResult(True, first.value, first.value_repr, None, seconds)
