"""Running a function in a forked child process that may die, hang or leave state behind.

``run_forked(func, args, deadlines)`` forks; the child runs ``func(*args)`` and sends back what
it returned (pickled) or what it raised (as text), then ends with ``os._exit`` (no atexit
handlers, no waiting for threads it started). The parent kills the child when a deadline
passes, and says how a child that sent nothing back ended: its exit status or the signal that
killed it. ``run_forked_each(func, items)`` does the same for a list of items, one child running
them in turn, a fresh one taking over after an item that ended its process.

Used by ``verify check --isolate`` (each call of a user implementation in a child, killed at its
time limit: verify.byo.call.call_and_step) and by a sweep whose worker process died (the cases of the
lost block are run again in a child, to find the one that ended it: verify.sweep.run).

Needs os.fork (Unix). A Ctrl-C while the parent waits kills the child and is raised again. A child
ends soon after its parent does, whatever ended the parent, SIGKILL included (``end_with_parent``,
which the worker processes of a sweep call too).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pickle
import select
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Sequence

AVAILABLE = hasattr(os, "fork")
_CHECKPOINT = b"\x01"
_PAYLOAD = b"\x00"
_pipe: int | None = None           # in a child: the write end of the pipe to the parent


class Outcome(NamedTuple):
    """How a child ended: ``value`` when ``func`` returned; otherwise ``raised`` (what escaped
    ``func``, as text), ``timed_out`` (killed at a deadline) or ``ended`` ("exit status 3",
    "killed by signal SIGSEGV": the child ended without sending anything back)."""
    value: Any = None
    raised: str = ""
    timed_out: bool = False
    ended: str = ""

    @property
    def ok(self) -> bool:
        return not (self.raised or self.timed_out or self.ended)


_PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.2       # seconds between looks at the parent where there is no parent-death signal


def end_with_parent(parent: int) -> None:
    """In a child process just started: end it (SIGKILL) soon after process ``parent`` ends.

    Where ``parent`` forked this process, on Linux, the kernel sends the signal when it ends
    (prctl PR_SET_PDEATHSIG; a parent that ended before the request was made is seen at once).
    Elsewhere, and where a fork server started this process (multiprocessing's outlives its
    parent while any process it started runs, so its death cannot be waited for), a daemon
    thread looks at ``parent`` every WATCH_INTERVAL seconds."""
    if _parent_death_signal() and os.getppid() == parent:
        return
    threading.Thread(target=_watch, args=(parent,), name="verify-parent-watch", daemon=True).start()


def _parent_death_signal() -> bool:
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


@functools.lru_cache(maxsize=None)
def _prctl():
    """The C library's prctl (Linux), looked up once (a forked child finds it already there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _watch(parent: int) -> None:
    while not _gone(parent):
        time.sleep(WATCH_INTERVAL)
    os.kill(os.getpid(), signal.SIGKILL)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie, ended but not yet reaped, included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:              # someone else's process: the pid was reused
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def checkpoint() -> None:
    """In a child of run_forked: one phase is over, so the parent's next deadline starts now.
    Elsewhere, nothing."""
    if _pipe is not None:
        _write_all(_pipe, _CHECKPOINT)


def run_forked(func: Callable[..., Any], args: Sequence = (), deadlines: Sequence[float | None] = ()
               ) -> Outcome:
    """``func(*args)`` in a forked child. ``deadlines``: the seconds the child may take before
    its first ``checkpoint()``, then before each next one (None, or none left: no limit); a child
    that outlives one is killed (SIGKILL)."""
    return next(_run(lambda: (func(*args) for _ in range(1)), 1, list(deadlines)))


def run_forked_each(func: Callable[[Any], Any], items: Sequence) -> Iterator[Outcome]:
    """``func(item)`` for each item in order, in forked children: one child runs the items one
    after the other and sends back each result as it comes; when a child ends before its last
    item, that item's Outcome says how, and a fresh child takes the items after it."""
    items = list(items)
    done = 0
    while done < len(items):
        rest = items[done:]
        for outcome in _run(lambda: map(func, rest), len(rest), []):
            done += 1
            yield outcome


def _run(results: Callable[[], Any], n: int, deadlines: list) -> Iterator[Outcome]:
    """Fork a child that sends back each value the iterator ``results()`` yields (or what it
    raised getting one), up to ``n`` of them; yield an Outcome per value, then, if the child
    ended before ``n``, one Outcome saying how."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe()
    parent = os.getpid()
    _prctl()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _FORK_WITH_THREADS, DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        _child(r, w, results, parent)     # never returns
    os.close(w)
    sent = 0
    try:
        try:
            for data in _messages(pid, r, deadlines):
                try:
                    kind, value = pickle.loads(data)
                except Exception as e:    # noqa: BLE001 - a value that does not unpickle here
                    kind, value = "raised", f"what it returned could not be read back: {exception_text(e)}"
                sent += 1
                yield Outcome(value=value) if kind == "value" else Outcome(raised=value)
                if sent == n:
                    break
        except _Killed:
            _reap(pid)
            yield Outcome(timed_out=True)
            return
    except BaseException:                 # a Ctrl-C here, or the caller stopped early
        _kill(pid)
        _reap(pid)
        raise
    finally:
        os.close(r)
    status = _reap(pid)
    if sent < n:
        yield Outcome(ended=_ending(status))


# Python 3.12 warns at each fork() of a process running threads. Each call here forks such a
# process, deliberately: whatever has imported NumPy runs OpenBLAS's worker threads (idle between
# calls; OpenBLAS stops and restarts them around fork() with pthread_atfork), so a process to run a
# call that starts with NumPy in it is forked from a multi-threaded one whichever way it is made, a
# fork server's child included; and forking the caller is what gives the call the process exactly
# as the harness has it, for about 10 ms (docs/speed.md). A sweep runs torch on one thread, so torch
# has no pool of its own at the fork; an embedding program that ran torch on several leaves its
# OpenMP threads idle, and the child, which runs the user's NumPy code, does not enter them.
_FORK_WITH_THREADS = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"


def _child(r: int, w: int, results: Callable[[], Any], parent: int) -> None:
    global _pipe
    code = 0
    try:
        end_with_parent(parent)
        os.close(r)
        _pipe = w
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
        values = iter(results())
        while True:
            try:
                payload = ("value", next(values))
            except StopIteration:
                break
            except BaseException as e:    # noqa: BLE001 - anything, sent back as text
                payload = ("raised", exception_text(e))
            try:
                data = pickle.dumps(payload)
            except BaseException as e:    # noqa: BLE001
                data = pickle.dumps(("raised", f"what it returned could not be sent back: {exception_text(e)}"))
            _write_all(w, _PAYLOAD + len(data).to_bytes(8, "big") + data)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
    except BaseException:                 # noqa: BLE001 - the parent reports the exit status
        code = 70
    finally:
        os._exit(code)


def exception_text(e: BaseException) -> str:
    """``Type: message`` of an exception, never raising (its ``__str__`` may)."""
    try:
        return f"{type(e).__name__}: {e}"
    except BaseException:                 # noqa: BLE001 - a __str__ that raises
        return type(e).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Killed(Exception):
    """The child outlived a deadline and was killed."""


def _messages(pid: int, r: int, deadlines: list) -> Iterator[bytes]:
    """Each payload the child sends, until it closes the pipe. A deadline runs while no message
    is half received; when one passes, the child is killed and _Killed raised."""
    limit = deadlines.pop(0) if deadlines else None
    start = time.monotonic()
    buffer = bytearray()
    while True:
        while buffer:
            if buffer[:1] == _CHECKPOINT:
                del buffer[:1]
                limit = deadlines.pop(0) if deadlines else None
                start = time.monotonic()
                continue
            if len(buffer) < 9:
                break
            size = int.from_bytes(buffer[1:9], "big")
            if len(buffer) < 9 + size:
                break
            yield bytes(buffer[9:9 + size])
            del buffer[:9 + size]
            start = time.monotonic()
        wait = None if limit is None or buffer else max(0.0, start + limit - time.monotonic())
        ready, _, _ = select.select([r], [], [], wait)
        if not ready:
            _kill(pid)
            raise _Killed
        chunk = os.read(r, 1 << 20)
        if not chunk:
            return
        buffer += chunk


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> int:
    """The child's wait status; a child still running once its pipe closed is killed first. A
    child already reaped (killed at its deadline, then cleaned up again) reads as killed."""
    try:
        for _ in range(2000):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.001)
        _kill(pid)
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return signal.SIGKILL            # the wait status of a process ended by SIGKILL


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exit status {os.WEXITSTATUS(status)}"
