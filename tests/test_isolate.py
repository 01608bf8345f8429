"""verify check --impl --isolate: each call in a child process, killed at its time limit."""
from __future__ import annotations

import functools
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from verify import meta
from verify.api import check_case, sweep_implementation
from verify.byo.call import load_target
from verify.cli.app import main
from verify.report.frames import discrepancy_frame
from verify.report.write import to_csv_text
from verify.sweep import execute

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile_impls.py"


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``verify ARGS`` in a child Python, killed after ``timeout`` seconds (a hang fails the test)."""
    return subprocess.run([sys.executable, "-m", "verify.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parent.parent)


def test_a_call_that_ignores_the_alarm_and_swallows_everything_is_killed_and_stops_the_sweep(tmp_path):
    done = run_cli("check", "--impl", f"{HOSTILE}:hangs_ignoring_alarms", "--isolate", "--time-limit", "0.5",
                   "--examples", "40", "--max-depth", "2", "--max-batch", "4", "--out", str(tmp_path))
    assert done.returncode == 1, done.stderr[-2000:]
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert 0 < len(cases) < 40
    assert cases["note"].iloc[-1].startswith("CallTimedOut: did not return within 0.5 s (the time limit) "
                                             "and did not stop when told to: its process was killed")
    assert "PARTIAL" in (tmp_path / "report.html").read_text()
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_call_that_ends_its_process_under_isolate_fails_its_case_and_the_sweep_goes_on(tmp_path):
    done = run_cli("check", "--impl", f"{HOSTILE}:ends_the_process_on_batches_of_three", "--isolate",
                   "--examples", "16", "--max-depth", "2", "--max-batch", "4", "--out", str(tmp_path))
    assert done.returncode == 1, done.stderr[-2000:]
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert len(cases) == 16
    ended = cases["note"].fillna("").str.contains("the implementation ended the process (exit status 3)",
                                                  regex=False)
    assert ended.any() and (ended == (cases["batch"] == 3)).all()
    assert cases.loc[~ended, "passed"].all()


def test_what_an_isolated_call_changes_in_its_process_leaves_the_harness_untouched():
    sigmoid = torch.sigmoid
    options = dict(examples=24, seed=5, max_depth=2, activations=["sigmoid"])
    try:
        isolated = sweep_implementation(load_target(f"{HOSTILE}:patches_torch"), isolate=True, **options)
    finally:
        torch.sigmoid = sigmoid
    clean = sweep_implementation(load_target(f"{FIXTURES / 'user_impls.py'}:correct"), **options)
    assert isolated.passed
    rows = [to_csv_text(discrepancy_frame(r.results).drop(columns=["impl"])) for r in (isolated, clean)]
    assert rows[0] == rows[1]                     # every number the same; only the name differs


def test_isolate_without_impl_is_bad_input():
    assert main(["check", "2-2-1:sigmoid:quadratic", "--isolate"]) == 2


STUDENT = f"{FIXTURES / 'student_mlp.py'}:backprop"


def _report(tmp_path, name: str, *flags: str) -> tuple[bytes, bytes]:
    out = tmp_path / name
    assert main(["check", "--impl", STUDENT, "--examples", "60", "--max-depth", "2", "--seed", "3",
                 "--out", str(out), *flags]) == 0
    return (out / "cases.csv").read_bytes(), (out / "discrepancies.csv").read_bytes()


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_the_reports_of_jobs_2_are_byte_identical_to_jobs_1_whatever_way_the_workers_start(method, tmp_path,
                                                                                          monkeypatch, capsys):
    monkeypatch.setattr(execute, "START_METHODS", (method,))
    assert _report(tmp_path, method, "--jobs", "2") == _report(tmp_path, "one")


def test_the_reports_with_isolate_are_byte_identical_to_those_without(tmp_path, capsys):
    assert _report(tmp_path, "isolated", "--isolate") == _report(tmp_path, "plain")


def test_by_default_the_workers_of_a_sweep_of_a_target_start_from_a_fork_server_where_there_is_one(monkeypatch):
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server here")
    monkeypatch.setattr(meta, "COMMAND", True)         # as in the verify command, whatever runs the tests
    check_fn = functools.partial(check_case, STUDENT)
    assert execute._pool_context(check_fn).get_start_method() == "forkserver"


def test_a_check_function_that_cannot_be_imported_by_name_is_run_by_forked_workers():
    fn = load_target(STUDENT)             # loaded from its file: a worker cannot import it by name
    assert execute._pool_context(functools.partial(check_case, fn)).get_start_method() == "fork"
