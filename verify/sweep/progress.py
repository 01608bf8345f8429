"""Progress of a sweep: a tqdm bar with rate and ETA on a terminal, a plain line per tenth
otherwise (a log or a pipe)."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


class _Stderr:
    """Whatever sys.stderr is when written to: the guard (verify.byo.guard) gives the process a
    working one again after user code closed or replaced it, and the progress lines follow it."""

    def __getattr__(self, name):
        return getattr(sys.stderr, name)


class Progress:
    """A sweep's ``progress(done, total, failing)`` callback, written to ``stream`` (default:
    sys.stderr as it is at each line)."""

    def __init__(self, stream=None, *, tty: bool | None = None):
        self.stream = stream or _Stderr()
        self.tty = (hasattr(self.stream, "isatty") and self.stream.isatty()) if tty is None else tty
        self.bar: tqdm | None = None
        self._last_tenth = -1

    def __call__(self, done: int, total: int, failed: int) -> None:
        if self.tty:
            if self.bar is None:
                sized = _columns(self.stream) > 0      # a terminal that reports no size gets 80
                self.bar = tqdm(total=total, unit="case", file=self.stream, dynamic_ncols=sized,
                                ncols=None if sized else 80, nrows=None if sized else 24, leave=True)
            self.bar.set_postfix_str(f"{failed} failing", refresh=False)
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.close()
            return
        tenth = 10 * done // max(total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(f"checked {done}/{total} cases, {failed} failing", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def progress_reporter(stream=None) -> Progress:
    return Progress(stream)
