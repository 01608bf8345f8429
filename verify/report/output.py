"""Where reports go: ``--out`` checked before any work starts, reports written whole or not at all.

A report directory is written into a fresh staging directory beside it
(``.NAME.PID.XXXX.tmp``) and then swapped into place: with one
``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it, else
by renaming the old directory away, the new one into place and removing the
old. The visible directory is therefore always one whole report, the new one or
the previous one. SIGINT and SIGTERM are held while the report is written and
swapped, and delivered once it is in place (KeyboardInterrupt, or Terminated).
A process killed outright (SIGKILL) leaves its staging directory beside
``--out``, never inside it; the next write removes staging directories whose
process no longer exists.

A single file (``verify explain --out FILE``) is written to a temporary file
beside it and renamed over it.

VERIFY_WRITE_DELAY_S (seconds, tests only): a pause after each file written
into a staging directory, so that a test can send a signal while a report is
being written.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from verify.errors import OutError

DELAY_ENV = "VERIFY_WRITE_DELAY_S"
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")
_LEFTOVER = re.compile(r"^\..+\.tmp$")    # a temporary file a killed writer left in a report


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the signal came (see terminate_as_interrupt) or once a report being
    written when it came is in place: a KeyboardInterrupt, so that a sweep stops on it as on
    Ctrl-C and writes its partial report; the command then exits 143."""


# -- checking --------------------------------------------------------------------------------

def _contains_cwd(path: Path) -> bool:
    cwd = Path.cwd().resolve()
    return path == cwd or path in cwd.parents


def _resolved(out: str | os.PathLike) -> tuple[Path, str]:
    """(the absolute path ``out`` names, ``out`` as messages show it); OutError for no path at all."""
    text = os.fspath(out)
    if not text or "\0" in text:
        raise OutError(f"--out {text!r}: not a usable path")
    return Path(text).expanduser().resolve(), short(text)


def check_out_dir(out: str | os.PathLike, names: Iterable[str]) -> Path:
    """The absolute report directory ``out``, if a report made of ``names`` can be put there.

    Refused (OutError): a path that exists and is not a directory (a file, /dev/null), a
    directory holding anything but a previous report's ``names`` (and hidden ``.*.tmp`` files a
    killed writer left, which the swap removes with it), the current directory or one
    above it (the swap replaces the whole directory), and a place where no directory can be
    created (/proc/x, a read-only file system, a directory without write permission): the
    check creates and removes a staging directory beside ``out``."""
    path, shown = _resolved(out)
    if path.exists() and not path.is_dir():
        raise OutError(f"--out {shown}: is a {_kind(path)}, not a directory; give a directory for the report")
    if _contains_cwd(path):
        raise OutError(f"--out {shown}: is the current directory or one above it; "
                       f"give a directory of its own for the report")
    if path.is_dir():
        allowed = set(names)
        try:
            foreign = sorted(p.name for p in path.iterdir()
                             if p.name not in allowed and not _LEFTOVER.match(p.name))
        except OSError as e:
            raise OutError(f"--out {shown}: cannot be read ({e.strerror})") from None
        if foreign:
            listed = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise OutError(f"--out {shown}: holds files that are not part of a report ({listed}); "
                           f"give a new or empty directory, or a previous report's")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.rmdir(probe)
    except OSError as e:
        raise OutError(f"--out {shown}: cannot write a report there ({e.strerror or e})") from None
    return path


def check_out_file(out: str | os.PathLike) -> Path:
    """The absolute path of a file to be written (``verify explain --out FILE``), if one can be
    renamed into place there: not a directory, nor a device (/dev/null) or other special file."""
    path, shown = _resolved(out)
    if path.exists() and not path.is_file():
        raise OutError(f"--out {shown}: is a {_kind(path)}, not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutError(f"--out {shown}: cannot write there ({e.strerror or e})") from None
    return path


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- signals ---------------------------------------------------------------------------------

@contextlib.contextmanager
def terminate_as_interrupt(received: Callable[[int], object] = lambda signum: None) -> Iterator[None]:
    """SIGTERM raises Terminated in this process inside the block (in the main thread), after
    ``received(signum)``; a process forked meanwhile (a worker) that gets SIGTERM ends as by
    default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        received(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """SIGINT and SIGTERM recorded instead of acted on inside the block; on leaving it, the first
    one recorded goes to the handler that was in place before (the default SIGINT handler raises
    KeyboardInterrupt; for SIGTERM's default, Terminated is raised; an ignored signal stays
    ignored). Outside the main thread signals cannot be handled, and nothing is held."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in held}
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        for s in held:
            signal.signal(s, previous[s])
    if caught:
        _deliver(caught[0], previous[caught[0]])


def _deliver(signum: int, handler) -> None:
    if handler == signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        raise Terminated


# -- writing ---------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` (inside a staging directory); see VERIFY_WRITE_DELAY_S."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    Path(path).write_bytes(raw)
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))
    return Path(path)


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_dir(out: str | os.PathLike, names: Iterable[str], write: Callable[[Path], object]) -> Path:
    """``write(staging)`` fills a fresh staging directory beside ``out`` with files named in
    ``names``; the staging directory then replaces ``out`` whole. Signals are held meanwhile
    (signals_held). Returns the absolute path of ``out``; raises OutError where ``out`` cannot
    take a report (check_out_dir)."""
    names = list(names)
    path = check_out_dir(out, names)
    with signals_held():
        _remove_stale(path)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                        dir=path.parent))
        try:
            os.chmod(staging, 0o777 & ~_umask())
            write(staging)
            _swap(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)   # the previous report, after a swap
    return path


def spool_dir(out: str | os.PathLike, names: Iterable[str]) -> Path:
    """A fresh directory beside ``out`` (named as a staging directory, so that one a killed
    process left is removed by the next write) for the files a streamed sweep writes as it goes
    (verify.report.stream); write_dir moves them into its report. The caller removes it.
    Raises OutError where ``out`` cannot take a report (check_out_dir)."""
    path = check_out_dir(out, names)
    _remove_stale(path)
    spool = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    os.chmod(spool, 0o777 & ~_umask())
    return spool


def _swap(staging: Path, path: Path) -> None:
    """Put ``staging`` at ``path``; whatever was at ``path`` ends at ``staging``."""
    try:
        os.rename(staging, path)        # no report there yet (or an empty directory)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _exchange(staging, path):
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    os.rename(path, old / "old")
    os.rename(staging, path)
    os.rename(old, staging)             # removed by the caller with the previous report in it


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2); False where that is not offered."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove_stale(path: Path) -> None:
    """Staging directories beside ``path`` left by processes that no longer exist (SIGKILL)."""
    for entry in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        m = _STAGING.match(entry.name)
        if m is None or m["name"] != path.name or not entry.is_dir():
            continue
        if not _alive(int(m["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
