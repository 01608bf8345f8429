"""State a user's code can change is put back around each call: later cases give the numbers of
a clean run, and the harness's own output does not move."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from verify.api import sweep_implementation
from verify.byo.call import ImplementationWarning, load_target
from verify.cli.app import main
from verify.harness.trace import check
from verify.report.frames import discrepancy_frame
from verify.report.write import to_csv_text

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile_impls.py"
SWEEP = dict(examples=40, seed=3, max_depth=3, max_width=32, max_batch=32, dtypes=["float32"])


def table(impl) -> str:
    """The sweep's discrepancies.csv without the column naming the implementation."""
    result = sweep_implementation(impl, **SWEEP)
    return to_csv_text(discrepancy_frame(result.results).drop(columns=["impl"]))


@pytest.fixture(scope="module")
def clean() -> str:
    return table(load_target(f"{FIXTURES / 'user_impls.py'}:correct"))


def process_state() -> tuple:
    return (torch.is_grad_enabled(), torch.get_num_threads(), torch.get_default_dtype(),
            repr(np.get_printoptions()), np.geterr(), os.getcwd(), list(warnings.filters),
            signal.getsignal(signal.SIGALRM), signal.getsignal(signal.SIGINT),
            signal.pthread_sigmask(signal.SIG_BLOCK, []), torch.get_float32_matmul_precision(), umask(),
            gc.isenabled(), gc.get_threshold(), list(gc.callbacks))


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", ["grad_off", "print_options", "two_threads", "default_dtype",
                                  "changes_directory", "ignores_alarms", "floating_point_errors_raise",
                                  "matmul_precision", "closed_umask", "collector_off"])
def test_what_an_implementation_changes_in_the_process_is_put_back_so_later_cases_match_a_clean_run(
        name, clean):
    before = process_state()
    assert table(load_target(f"{HOSTILE}:{name}")) == clean
    assert process_state() == before


def test_warnings_made_errors_by_an_implementation_leave_the_harness_warning_a_warning(clean):
    with pytest.warns(ImplementationWarning, match="my_extra"):
        assert table(load_target(f"{HOSTILE}:warnings_are_errors")) == clean


def test_numpy_print_options_do_not_cut_the_values_in_the_csv_files(clean):
    with np.printoptions(legacy="1.13", precision=3):
        assert table(load_target(f"{FIXTURES / 'user_impls.py'}:correct")) == clean


def test_the_torch_twin_builds_its_graph_with_grad_mode_off():
    with torch.no_grad():
        assert check("3-4-2:tanh,identity:cross_entropy", seed=2).passed


def test_state_an_implementation_sets_when_imported_is_put_back_after_the_import():
    before = process_state()
    load_target(f"{FIXTURES / 'sets_state_at_import.py'}:backprop")
    assert process_state() == before


def test_a_relative_out_is_the_directory_the_command_started_in_whatever_the_implementation_does(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--impl", f"{HOSTILE}:changes_directory", "--examples", "4", "--max-depth", "2",
                 "--out", "mine"])
    assert code == 0
    assert (tmp_path / "mine" / "report.html").is_file()


def test_a_time_limit_holds_after_an_implementation_ignored_and_blocked_sigalrm_in_an_earlier_call(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "verify.cli", "check", "--impl", f"{HOSTILE}:ignores_alarms_then_hangs",
         "--examples", "40", "--max-depth", "2", "--time-limit", "0.5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "CallTimedOut: did not return within 0.5 s" in (tmp_path / "cases.csv").read_text()
