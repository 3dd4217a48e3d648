"""Zygote worker of bitzero.selfplay.sandbox: forks one confined child per program.

Runs as a script in a fresh `python -I -S -B` interpreter and imports only the standard library,
so neither the project nor site-packages is reachable from the programs it runs. The parent
speaks JSON lines over stdin/stdout: one config line, then one request per line, one reply each.

Why a fork per program: forking this small interpreter costs about a millisecond (a fresh
interpreter costs tens), every program starts from the same pristine state and nothing it does
survives it, and the resource limits bind exactly one program. Inside the child, in order:
stdio onto /dev/null, an empty working directory, rlimits (CPU, address space, file size, open
files, no new processes, no core), root dropped to `nobody` (so RLIMIT_NPROC binds), a builtins
allow-list, module proxies without private or module-valued attributes, and an audit hook that
refuses every audited event (open, os.*, subprocess, socket, import, compile, exec, frame
access, ...) except executing the program's own two code objects, and last a seccomp filter.

The seccomp filter is the wall that does not depend on Python: a program that escapes every
Python-level check (CPython cannot hide `__globals__` from code that finds a way to name it)
still reaches only the system calls a pure computation needs (memory, writing its result,
exiting). Every other call (stat, mknod, mkfifo, kill, pidfd_send_signal, socket, fork,
execve, ...) fails with EPERM, whatever the caller's uid or capabilities.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import gc
import importlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import types

SAFE_BUILTINS = ["abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "classmethod", "complex", "dict", "dir", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod", "str", "sum", "super", "tuple", "type", "zip", "Ellipsis", "NotImplemented", "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError", "KeyError", "LookupError", "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError", "__build_class__"]
FILE_SIZE_LIMIT = 1 << 16
OPEN_FILES_LIMIT = 8
RESULT_FD = 3
EXIT_MEMORY = 3  # the child ran out of memory even for reporting it
CPU_SIGNALS = (signal.SIGXCPU,)


# The system calls a confined child may make, by architecture: (audit arch, {name: number}).
# Enough for CPython to compute (allocate, free, handle its own signals) and to report.
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "read": 0, "write": 1, "close": 3, "fstat": 5, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11,
        "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15, "writev": 20, "mremap": 25,
        "madvise": 28, "getpid": 39, "exit": 60, "sigaltstack": 131, "gettid": 186, "futex": 202,
        "clock_gettime": 228, "exit_group": 231, "getrandom": 318,
    }),
    "aarch64": (0xC00000B7, {
        "read": 63, "write": 64, "close": 57, "fstat": 80, "lseek": 62, "mmap": 222, "mprotect": 226,
        "munmap": 215, "brk": 214, "rt_sigaction": 134, "rt_sigprocmask": 135, "rt_sigreturn": 139,
        "writev": 66, "mremap": 216, "madvise": 233, "getpid": 172, "exit": 93, "sigaltstack": 132,
        "gettid": 178, "futex": 98, "clock_gettime": 113, "exit_group": 94, "getrandom": 278,
    }),
}
_X32_BIT = 0x40000000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000


def seccomp_program() -> bytes | None:
    """The classic-BPF allow-list for this machine, packed; None where the architecture is unknown.

    Wrong architecture: kill (a 32-bit syscall table would map numbers differently); x32 numbers:
    EPERM; an allowed number: allow; anything else: EPERM, so an escaped program sees an OSError.
    """
    known = _SYSCALLS.get(platform.machine())
    if known is None:
        return None
    arch, table = known
    allowed = sorted(table.values())
    deny = _RET_ERRNO | errno.EPERM
    code = [(_BPF_LD_W_ABS, 0, 0, 4), (_BPF_JEQ_K, 1, 0, arch), (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
            (_BPF_LD_W_ABS, 0, 0, 0), (_BPF_JGE_K, len(allowed), 0, _X32_BIT)]
    code += [(_BPF_JEQ_K, len(allowed) - i, 0, number) for i, number in enumerate(allowed)]
    code += [(_BPF_RET_K, 0, 0, deny), (_BPF_RET_K, 0, 0, _RET_ALLOW)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in code)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install_seccomp(program: bytes | None, libc: ctypes.CDLL) -> None:
    """Load the filter into the calling process, irreversibly; raises OSError when the kernel refuses."""
    if program is None:
        return
    fprog = _SockFprog(len(program) // 8, program)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


class _Refused(BaseException):
    """An audited event during the program; BaseException so `except Exception` cannot hide it."""


class _OutputLimit(BaseException):
    """The program printed more than allowed."""


class Environment:
    """What every child starts from: safe builtins, proxies of the allowed modules, and the
    seccomp filter with the libc to load it (both prepared here, so the child only installs)."""

    def __init__(self, modules: dict[str, list[str]]) -> None:
        self.seccomp = seccomp_program()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.proxies = {name: _proxy(name, set(names)) for name, names in sorted(modules.items())}
        for name, proxy in self.proxies.items():
            parent, _, child = name.rpartition(".")
            if parent in self.proxies:
                setattr(self.proxies[parent], child, proxy)
        self.builtins = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
        self.builtins["__import__"] = self._import
        self.builtins["__build_class__"] = _build_plain_class

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level or name not in self.proxies:
            raise ImportError(f"import of {name} is not allowed")
        return self.proxies[name] if fromlist else self.proxies[name.partition(".")[0]]


def _proxy(name: str, allowed: set[str]) -> types.ModuleType:
    """A stand-in for a module holding only the allowed names (policy.MODULE_NAMES), and of those
    none that is a module or a metaclass (one such as `collections.abc.ABCMeta` builds classes
    from a dict whose keys, dunders included, can be computed at run time)."""
    module = importlib.import_module(name)
    proxy = types.ModuleType(name)
    for key in sorted(allowed & set(vars(module))):
        value = vars(module)[key]
        if key.startswith("_") or isinstance(value, types.ModuleType) or _is_metaclass(value):
            continue
        setattr(proxy, key, value)
    return proxy


def _is_metaclass(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, type)


def _build_plain_class(body, name, *bases, **keywords):
    """`class` statements of programs: plain classes only. No metaclass by keyword or by base, and
    none inherited (`typing.Protocol`'s has `__instancecheck__`): a metaclass's hooks run on
    lookups the program's syntax does not show."""
    if keywords or any(_is_metaclass(base) for base in bases):
        raise TypeError("classes with a metaclass are not allowed")
    made = builtins.__build_class__(body, name, *bases)
    if type(made) is not type:
        raise TypeError("classes with a metaclass are not allowed")
    return made


def confine(workdir: str, cpu_s: int, memory_mb: int, drop_uid: int | None) -> None:
    """Apply the OS limits to the calling process, irreversibly (the child calls this)."""
    if drop_uid is not None:
        os.chown(workdir, drop_uid, drop_uid)
    os.chdir(workdir)
    memory = memory_mb * 1024 * 1024
    limits = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_CPU: (cpu_s, cpu_s + 1),
        resource.RLIMIT_AS: memory,
        resource.RLIMIT_FSIZE: FILE_SIZE_LIMIT,
        resource.RLIMIT_NOFILE: OPEN_FILES_LIMIT,
        resource.RLIMIT_NPROC: 0,
    }
    for kind, value in limits.items():
        resource.setrlimit(kind, value if isinstance(value, tuple) else (value, value))
    if drop_uid is not None:  # root ignores RLIMIT_NPROC; `nobody` does not
        os.setgroups([])
        os.setgid(drop_uid)
        os.setuid(drop_uid)


def _execute(request: dict, env: Environment) -> dict:
    """Run program then call in a fresh namespace; the result as a small JSON-able dict."""
    program = compile(request["program"], "<program>", "exec")
    call = compile(request["call"], "<call>", "eval")
    limit = request["max_output_chars"]
    state: dict = {"refused": None, "printed": 0}

    def capped_print(*args, sep=" ", end="\n", **_ignored):
        state["printed"] += len(str(sep).join(map(str, args))) + len(str(end))
        if state["printed"] > limit:
            raise _OutputLimit

    def refuse_events(event: str, args: tuple) -> None:
        if event == "exec" and args and (args[0] is program or args[0] is call):
            return
        state["refused"] = state["refused"] or event
        raise _Refused(event)

    namespace = {"__builtins__": {**env.builtins, "print": capped_print}, "__name__": "__sandbox__"}
    sys.addaudithook(refuse_events)
    try:
        exec(program, namespace)
        text = repr(eval(call, namespace))
    except MemoryError:
        return {"failure": "memory limit"}
    except BaseException as error:  # the program's failure, reported rather than raised
        if state["refused"] or state["printed"] > limit:
            return _limit_failure(state)
        return {"failure": "runtime error", "detail": _error_name(error)}
    if state["refused"] or state["printed"] > limit:  # a refusal the program swallowed
        return _limit_failure(state)
    if len(text) > limit:
        return {"failure": "output too large"}
    return {"value_repr": text}


def _limit_failure(state: dict) -> dict:
    if state["refused"]:
        return {"failure": "blocked", "detail": state["refused"]}
    return {"failure": "output too large"}


def _error_name(error: BaseException) -> str:
    name = type(error).__name__
    return "".join(c for c in name if c.isalnum() or c == "_")[:80] or "error"


def _child(request: dict, env: Environment, workdir: str, result_fd: int) -> None:
    """Body of the forked child: confine, run, report, exit. Never returns."""
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.dup2(result_fd, RESULT_FD)
        os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        confine(workdir, request["cpu_s"], request["memory_mb"], request["drop_uid"])
        install_seccomp(env.seccomp, env.libc)
        result = _execute(request, env)
    except MemoryError:
        result = {"failure": "memory limit"}
    except BaseException as error:  # a failure of confinement itself: never run unconfined
        result = {"failure": "sandbox error", "detail": _error_name(error)}
    try:
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(RESULT_FD, data) :]
    except MemoryError:
        os._exit(EXIT_MEMORY)
    os._exit(0)


def run_one(request: dict, env: Environment, root: str) -> dict:
    """Fork a confined child for one program; wait for it under the wall-clock limit."""
    workdir = tempfile.mkdtemp(dir=root)
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(request, env, workdir, write_fd)
    os.close(write_fd)
    try:
        data, verdict = _collect(read_fd, pid, start + request["timeout_s"], request["max_output_chars"])
        if verdict:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_fd)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    outcome = {"failure": verdict} if verdict else _status_failure(status) or _parse_result(data)
    return {**outcome, "seconds": seconds}


def _collect(read_fd: int, pid: int, deadline: float, max_chars: int) -> tuple[bytes, str | None]:
    """Read the child's report until it has exited; a verdict if it must be killed instead."""
    process_fd = os.pidfd_open(pid)
    chunks: list[bytes] = []
    size, open_fds = 0, {read_fd, process_fd}
    try:
        while process_fd in open_fds:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return b"", "timeout"
            ready, _, _ = select.select(list(open_fds), [], [], remaining)
            if read_fd in ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    open_fds.discard(read_fd)
                chunks.append(chunk)
                size += len(chunk)
                if size > 12 * max_chars + 1024:  # JSON escapes a character into <= 12 bytes
                    return b"", "output too large"
            if process_fd in ready:
                open_fds.discard(process_fd)
        while read_fd in open_fds and (chunk := os.read(read_fd, 1 << 16)):
            chunks.append(chunk)
        return b"".join(chunks), None
    finally:
        os.close(process_fd)


def _status_failure(status: int) -> dict | None:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number in CPU_SIGNALS:
            return {"failure": "timeout", "detail": "cpu limit"}
        return {"failure": "crashed", "detail": signal.Signals(number).name}
    code = os.waitstatus_to_exitcode(status)
    if code == EXIT_MEMORY:
        return {"failure": "memory limit"}
    return None if code == 0 else {"failure": "crashed", "detail": f"exit code {code}"}


def _parse_result(data: bytes) -> dict:
    """The child's report: {"value_repr"} or {"failure", "detail"}, or a crash when it is neither."""
    try:
        result = json.loads(data)
    except (ValueError, RecursionError, MemoryError):  # any bytes: 1,400 "[" recurse too deep
        return {"failure": "crashed", "detail": "no result"}
    if isinstance(result, dict) and isinstance(result.get("failure"), str):
        return {"failure": result["failure"], "detail": str(result.get("detail", ""))}
    if isinstance(result, dict) and isinstance(result.get("value_repr"), str):
        return {"value_repr": result["value_repr"]}
    return {"failure": "crashed", "detail": "malformed result"}


def _warm_up(env: Environment) -> None:
    """Pay one-off costs once in the zygote, not in every child.

    The first `compile` of an interpreter's life costs milliseconds, and objects the collector
    walks in a child are copied page by page; `gc.freeze` moves everything alive now out of its
    reach. Together they cut the time per program roughly threefold.
    """
    namespace = {"__builtins__": env.builtins}
    exec(compile("def f(xs):\n    return sorted(set(xs))[:2]", "<warm-up>", "exec"), namespace)
    json.dumps({"value_repr": repr(eval(compile("f([3, 1, 2])", "<warm-up>", "eval"), namespace))})
    gc.collect()
    gc.freeze()


def main() -> None:
    config = json.loads(sys.stdin.readline())
    env = Environment(config["modules"])
    _warm_up(env)
    defaults = {"drop_uid": config["drop_uid"]}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        reply = run_one({**defaults, **json.loads(line)}, env, config["root"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
