"""The `verify` command (verify.cli.app) and its resource limits (verify.cli.limits).

``entry`` is the installed command (and ``python -m verify``, ``python -m verify.cli``). It imports
the command, and with it torch, only once it is running, so that a Ctrl-C during those seconds of
imports ends the command as one during its work does: one line, exit status 130."""
import os
import signal
import sys


class _PipeSafe:
    """sys.stdout or sys.stderr of the command, for output piped into a reader that stops early
    (`verify layers mine.py | head`): once the reader has gone, what is written goes to /dev/null
    (the recipe of Python's signal module docs, "Note on SIGPIPE"), so that the command finishes its
    work and writes its reports instead of ending with a BrokenPipeError traceback."""

    def __init__(self, stream):
        self._stream = stream

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def entry() -> None:
    """The `verify` command: verify.cli.app.entry, with a Ctrl-C that reaches here (while the
    command is still being imported, or before its own handling starts) ending it with one
    line and exit status 130, and output to a reader that stops early sent to /dev/null."""
    from verify import meta
    meta.COMMAND = True
    sys.stdout, sys.stderr = _PipeSafe(sys.stdout), _PipeSafe(sys.stderr)
    try:
        from verify.cli.app import entry as run
        run()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # a second Ctrl-C: no traceback either
        print("verify: interrupted", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:                            # noqa: BLE001
                pass
        os._exit(130)        # no interpreter shutdown of half-imported modules


def __getattr__(name: str):
    if name in ("build_parser", "main"):
        from verify.cli import app
        return getattr(app, name)
    raise AttributeError(f"module 'verify.cli' has no attribute {name!r}")
