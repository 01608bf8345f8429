"""Running a function in a forked child process that may die, hang or leave state behind.

``run_forked(func, args, deadlines)`` forks; the child runs ``func(*args)`` and sends back what
it returned (pickled) or what it raised (as text), then ends with ``os._exit`` (no atexit
handlers, no waiting for threads it started). The parent kills the child when a deadline
passes, and says how a child that sent nothing back ended: its exit status or the signal that
killed it. Used by ``verify check --isolate`` (each call of a user implementation in a child,
killed at its time limit: verify.impl.call_and_step) and by a sweep whose worker process died
(the cases of the lost block are run again each in a child, to find the one that ended it:
verify.sweep).

Needs os.fork (Unix). A Ctrl-C while the parent waits kills the child and is raised again.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

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
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(r, w, func, args)          # never returns
    os.close(w)
    try:
        data, timed_out = _collect(pid, r, list(deadlines))
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(r)
    status = _reap(pid)
    if timed_out:
        return Outcome(timed_out=True)
    if data is not None:
        try:
            kind, value = pickle.loads(data)
        except Exception:                 # noqa: BLE001 - cut short: the child died writing it
            kind, value = None, None
        if kind == "value":
            return Outcome(value=value)
        if kind == "raised":
            return Outcome(raised=value)
    return Outcome(ended=_ending(status))


def _child(r: int, w: int, func: Callable[..., Any], args: Sequence) -> None:
    global _pipe
    code = 0
    try:
        os.close(r)
        _pipe = w
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
        try:
            payload = ("value", func(*args))
        except BaseException as e:        # noqa: BLE001 - anything, sent back as text
            payload = ("raised", _text(e))
        try:
            data = pickle.dumps(payload)
        except BaseException as e:        # noqa: BLE001
            data = pickle.dumps(("raised", f"what it returned could not be sent back: {_text(e)}"))
        _write_all(w, _PAYLOAD + data)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
    except BaseException:                 # noqa: BLE001 - the parent reports the exit status
        code = 70
    finally:
        os._exit(code)


def _text(e: BaseException) -> str:
    try:
        return f"{type(e).__name__}: {e}"
    except BaseException:                 # noqa: BLE001 - a __str__ that raises
        return type(e).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(pid: int, r: int, deadlines: list) -> tuple[bytes | None, bool]:
    """(the payload, or None if the child sent none; whether it was killed at a deadline)."""
    limit = deadlines.pop(0) if deadlines else None
    start = time.monotonic()
    payload: bytearray | None = None
    while True:
        wait = None if limit is None or payload is not None else max(0.0, start + limit - time.monotonic())
        ready, _, _ = select.select([r], [], [], wait)
        if not ready:
            _kill(pid)
            return None, True
        chunk = os.read(r, 1 << 20)
        if not chunk:
            return (None if payload is None else bytes(payload)), False
        if payload is not None:
            payload += chunk
            continue
        for i in range(len(chunk)):
            if chunk[i:i + 1] == _CHECKPOINT:
                limit = deadlines.pop(0) if deadlines else None
                start = time.monotonic()
            else:
                payload = bytearray(chunk[i + 1:])
                break


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> int:
    """The child's wait status; a child still running once its pipe closed is killed first."""
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    _kill(pid)
    return os.waitpid(pid, 0)[1]


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exit status {os.WEXITSTATUS(status)}"
