"""Running a piece of user code so that nothing it does reaches the harness.

``guarded(thunk, limit)`` runs ``thunk()`` and returns ``(value, None)`` or ``(None, what it
raised)``, whatever it raised (a BaseException included). Around it:

- the process state the harness depends on is saved and put back (``saved_state`` lists it):
  torch's grad mode, thread count, default dtype and device and float32 matmul precision;
  NumPy's print options and floating-point error handling; the working directory and umask;
  the warning filters; the handlers of SIGALRM, SIGINT and SIGTERM, the signal mask and a
  leftover interval timer; sys.stdout, sys.stderr and sys.stdin (and sys.__stdout__ ...): a stream
  the code replaced is put back, one it closed is opened again on its file descriptor, and file
  descriptors 0, 1 and 2, if the code closed or redirected them, are put back as they were, so
  that the harness's own output (its summary, progress and error lines) still reaches the
  terminal; the recursion limit; a trace
  or profile function; the garbage collector's switch, thresholds and callbacks;
- its time limit (``TimeLimit``) is applied with SIGALRM, whose handler is installed afresh
  before each call, so user code that ignored SIGALRM earlier cannot defeat it;
- a real Ctrl-C is told apart from a KeyboardInterrupt the code raises itself: while the code
  runs, SIGINT goes to a handler that notes it came and then interrupts as Python's own does.
  A KeyboardInterrupt with no SIGINT behind it is what the code raised (a failing row); after a
  real one, ``guarded`` raises KeyboardInterrupt itself, even if the code swallowed it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import signal
import sys
import threading
import warnings
from typing import Any, Callable

import numpy as np
import torch

TIME_LIMIT = 10.0        # seconds one call of a user implementation may take (verify check --time-limit)


class CallTimedOut(BaseException):
    """Raised inside a user implementation that ran past its time limit. A BaseException, so
    that the implementation's own ``except Exception`` cannot swallow it."""


@dataclasses.dataclass
class TimeLimit:
    """Seconds one call of user code may take (None or 0: no limit). ``applied()`` guards a
    call; ``expired`` records that it stopped one, with CallTimedOut. ``isolate``: each call
    runs in a child process, killed when it outlives its limit (verify.byo.isolation).

    It uses SIGALRM, so it works in the main thread on Unix only (a sweep's worker processes
    included); elsewhere, or while another ITIMER_REAL timer is running, there is no limit."""
    seconds: float | None = None
    expired: bool = False
    isolate: bool = False

    @contextlib.contextmanager
    def applied(self):
        """Raise CallTimedOut in the body after ``seconds``."""
        seconds = self.seconds
        usable = seconds and hasattr(signal, "setitimer") and \
            threading.current_thread() is threading.main_thread()
        if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            yield
            return

        def expire(signum, frame):
            self.expired = True
            raise CallTimedOut(f"did not return within {seconds:g} s (the time limit)")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


# -- the state ---------------------------------------------------------------------------------

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGALRM", "SIGINT", "SIGTERM") if hasattr(signal, name))
_HAS_DEVICE = hasattr(torch, "get_default_device")


@dataclasses.dataclass(frozen=True)
class State:
    """What the harness needs as it left it; ``None`` where it could not be read."""
    grad: bool
    threads: int
    dtype: Any
    device: Any
    matmul: str
    printoptions: dict
    errstate: dict
    cwd: str | None
    umask: int
    handlers: tuple
    sigmask: Any
    timer: tuple | None
    streams: "_Streams"
    recursion: int
    tracing: tuple
    collector: tuple


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def saved_state() -> State:
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    main = _main_thread()
    return State(
        grad=torch.is_grad_enabled(), threads=torch.get_num_threads(),
        dtype=torch.get_default_dtype(), device=torch.get_default_device() if _HAS_DEVICE else None,
        matmul=torch.get_float32_matmul_precision(),
        printoptions=np.get_printoptions(), errstate=np.geterr(), cwd=cwd, umask=_umask(),
        handlers=tuple((s, signal.getsignal(s)) for s in _SIGNALS) if main else (),
        sigmask=signal.pthread_sigmask(signal.SIG_BLOCK, []) if hasattr(signal, "pthread_sigmask") else None,
        timer=signal.getitimer(signal.ITIMER_REAL) if hasattr(signal, "getitimer") else None,
        streams=_Streams.saved(), recursion=sys.getrecursionlimit(),
        tracing=(sys.gettrace(), sys.getprofile()),
        collector=(gc.isenabled(), gc.get_threshold(), tuple(gc.callbacks)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def restore_state(saved: State) -> None:
    """Put back each part of ``saved`` that differs now (each part alone: one that cannot be
    put back, a deleted working directory say, leaves the others restored)."""
    if torch.is_grad_enabled() != saved.grad:
        torch.set_grad_enabled(saved.grad)
    if torch.get_num_threads() != saved.threads:
        torch.set_num_threads(saved.threads)
    if torch.get_default_dtype() != saved.dtype:
        torch.set_default_dtype(saved.dtype)
    if _HAS_DEVICE and torch.get_default_device() != saved.device:
        torch.set_default_device(saved.device)
    if torch.get_float32_matmul_precision() != saved.matmul:
        torch.set_float32_matmul_precision(saved.matmul)
    if np.get_printoptions() != saved.printoptions:
        np.set_printoptions(**saved.printoptions)
    if np.geterr() != saved.errstate:
        np.seterr(**saved.errstate)
    if saved.cwd is not None:
        with contextlib.suppress(OSError):
            if os.getcwd() != saved.cwd:
                os.chdir(saved.cwd)
    os.umask(saved.umask)                             # reading it means setting it: set it back
    if saved.timer is not None and saved.timer[0] == 0 and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        signal.setitimer(signal.ITIMER_REAL, 0)       # a timer the code left would fire later
    for signum, handler in saved.handlers:
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
    if saved.sigmask is not None and signal.pthread_sigmask(signal.SIG_BLOCK, []) != saved.sigmask:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved.sigmask)
    saved.streams.restore()
    if sys.getrecursionlimit() != saved.recursion:
        sys.setrecursionlimit(saved.recursion)
    if (sys.gettrace(), sys.getprofile()) != saved.tracing:
        sys.settrace(saved.tracing[0])
        sys.setprofile(saved.tracing[1])
    _restore_collector(*saved.collector)


_STD = ("stdin", "stdout", "stderr")


@dataclasses.dataclass(frozen=True)
class _Streams:
    """sys.stdin/stdout/stderr and sys.__stdin__/__stdout__/__stderr__, the file descriptor each
    writes to, and a duplicate of file descriptors 0, 1 and 2 with what each was open on: what
    the harness's own output (the summary, progress, error lines) goes through."""
    objects: tuple
    originals: tuple
    fds: tuple
    dups: tuple

    @classmethod
    def saved(cls) -> "_Streams":
        objects = tuple(getattr(sys, n) for n in _STD)
        return cls(objects, tuple(getattr(sys, f"__{n}__") for n in _STD), tuple(map(_fileno, objects)),
                   tuple(_duplicate(fd) for fd in range(3)))

    def restore(self) -> None:
        """Each stream as it was: file descriptors 0-2 put back where the code closed or
        redirected them, the objects put back where it replaced them, and a stream it closed
        (or whose buffer it closed) opened afresh on its file descriptor, with its encoding."""
        for fd, (dup, identity) in enumerate(self.dups):
            if dup is not None:
                if _identity(fd) != identity:
                    with contextlib.suppress(OSError):
                        os.dup2(dup, fd)
                os.close(dup)
        for name, stream, original in zip(_STD, self.objects, self.originals):
            setattr(sys, name, stream)            # first: a wrapper of the code's own dropped here
            setattr(sys, f"__{name}__", original)  # may close the buffer it shared with stream
        for name, stream, original, fd in zip(_STD, self.objects, self.originals, self.fds):
            working = _reopened(stream, fd, "r" if name == "stdin" else "w")
            if working is not stream:
                setattr(sys, name, working)
                if original is stream:
                    setattr(sys, f"__{name}__", working)


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except Exception:                     # noqa: BLE001 - a StringIO, pytest's capture, None
        return None


def _identity(fd: int) -> tuple | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _duplicate(fd: int) -> tuple[int | None, tuple | None]:
    identity = _identity(fd)
    if identity is None:
        return None, None
    try:
        return os.dup(fd), identity
    except OSError:
        return None, None


def _reopened(stream: Any, fd: int | None, mode: str) -> Any:
    """``stream``, or where it was closed, a new text stream on ``fd`` like it."""
    try:
        if fd is None or not stream.closed:
            return stream
        fresh = open(fd, mode, closefd=False, encoding=stream.encoding, errors=stream.errors)  # noqa: SIM115
        if mode == "w":
            fresh.reconfigure(line_buffering=stream.line_buffering,
                              write_through=getattr(stream, "write_through", False))
        return fresh
    except Exception:                     # noqa: BLE001 - left as it is
        return stream


def _restore_collector(enabled: bool, threshold: tuple, callbacks: tuple) -> None:
    """The garbage collector as it was: a sweep that allocates steadily needs it on, at its
    thresholds, and a callback the code left behind would run at every later collection."""
    if gc.isenabled() != enabled:
        (gc.enable if enabled else gc.disable)()
    if gc.get_threshold() != threshold:
        gc.set_threshold(*threshold)
    if tuple(gc.callbacks) != callbacks:
        gc.callbacks[:] = callbacks


class _Sigint:
    """Whether a real SIGINT came while user code ran."""

    def __init__(self) -> None:
        self.seen = False

    @contextlib.contextmanager
    def watched(self):
        """SIGINT notes that it came, then interrupts as Python's default handler does; only where
        that default is installed (not in worker processes, which ignore SIGINT, nor under
        someone else's handler, which is left to do its own work)."""
        if not _main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return

        def on_sigint(signum, frame):
            self.seen = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def guarded(thunk: Callable[[], Any], limit: TimeLimit | None = None) -> tuple[Any, BaseException | None]:
    """``(thunk(), None)``, or ``(None, e)`` for whatever ``thunk`` raised, with the harness's
    state put back afterwards and ``limit`` applied. A real Ctrl-C meanwhile raises
    KeyboardInterrupt here."""
    sigint = _Sigint()
    state = saved_state()
    try:
        try:
            with warnings.catch_warnings(), sigint.watched(), (limit or TimeLimit()).applied():
                value = thunk()
        finally:
            restore_state(state)
    except BaseException as e:            # noqa: BLE001 - user code may raise anything
        if sigint.seen:
            raise KeyboardInterrupt from None
        return None, e
    if sigint.seen:
        raise KeyboardInterrupt
    return value, None
