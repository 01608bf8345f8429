"""Python 3.12 and later warn at each fork() of a process running threads. --isolate forks each call
deliberately (verify.byo.isolation says why) and says so once, in its docs, not once per call.

Needs no torch: .ci/run runs it on Python 3.12 and 3.13 too."""
from __future__ import annotations

import os
import sys
import threading
import warnings

import pytest

from verify.byo import isolation


@pytest.mark.skipif(sys.version_info < (3, 12) or not hasattr(os, "fork"), reason="Python 3.12 and later warn")
def test_a_forked_call_from_a_process_running_threads_gives_no_fork_warning():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert isolation.run_forked(int, ("42",)).value == 42
    finally:
        stop.set()
    assert [str(w.message) for w in caught if "fork" in str(w.message)] == []
