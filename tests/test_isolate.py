"""verify check --impl --isolate: each call in a child process, killed at its time limit."""
from __future__ import annotations

import functools
import multiprocessing
import subprocess
from pathlib import Path

import forked_cli
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


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """This file's `verify` commands, each in a process of its own (forked from one that imported
    the command once, tests/forked_cli.py), run together; a hang fails its test."""
    out = tmp_path_factory.mktemp("commands")
    cwd = Path(__file__).parent.parent
    runs = {
        "hangs": ["check", "--impl", f"{HOSTILE}:hangs_ignoring_alarms", "--isolate", "--time-limit", "0.5",
                  "--examples", "40", "--max-depth", "2", "--max-batch", "4"],
        "ends": ["check", "--impl", f"{HOSTILE}:ends_the_process_on_batches_of_three", "--isolate",
                 "--examples", "16", "--max-depth", "2", "--max-batch", "4"],
    }
    done = forked_cli.run_all({name: {"cwd": cwd, "args": [*args, "--out", str(out / name)]}
                               for name, args in runs.items()}, out, timeout=90)
    return {name: (done[name], out / name) for name in runs}


def test_a_call_that_ignores_the_alarm_and_swallows_everything_is_killed_and_stops_the_sweep(commands):
    done, out = commands["hangs"]
    assert done.returncode == 1, done.stderr[-2000:]
    cases = pd.read_csv(out / "cases.csv")
    assert 0 < len(cases) < 40
    assert cases["note"].iloc[-1].startswith("CallTimedOut: did not return within 0.5 s (the time limit) "
                                             "and did not stop when told to: its process was killed")
    assert "PARTIAL" in (out / "report.html").read_text()
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_call_that_ends_its_process_under_isolate_fails_its_case_and_the_sweep_goes_on(commands):
    done, out = commands["ends"]
    assert done.returncode == 1, done.stderr[-2000:]
    cases = pd.read_csv(out / "cases.csv")
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


def _report(out: Path, *flags: str) -> tuple[bytes, bytes]:
    assert main(["check", "--impl", STUDENT, "--examples", "60", "--max-depth", "2", "--seed", "3",
                 "--out", str(out), *flags]) == 0
    return (out / "cases.csv").read_bytes(), (out / "discrepancies.csv").read_bytes()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[bytes, bytes]:
    """The report of the sweep below in one process, no flags: what every other way must give."""
    return _report(tmp_path_factory.mktemp("one") / "report")


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_the_reports_of_jobs_2_are_byte_identical_to_jobs_1_whatever_way_the_workers_start(method, tmp_path,
                                                                                          monkeypatch, capsys,
                                                                                          one_process):
    monkeypatch.setattr(execute, "START_METHODS", (method,))
    assert _report(tmp_path / method, "--jobs", "2") == one_process


def test_the_reports_with_isolate_are_byte_identical_to_those_without(tmp_path, capsys, one_process):
    assert _report(tmp_path / "isolated", "--isolate") == one_process


def test_by_default_the_workers_of_a_sweep_of_a_target_start_from_a_fork_server_where_there_is_one(monkeypatch):
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server here")
    monkeypatch.setattr(meta, "COMMAND", True)         # as in the verify command, whatever runs the tests
    check_fn = functools.partial(check_case, STUDENT)
    assert execute._pool_context(check_fn).get_start_method() == "forkserver"


def test_a_check_function_that_cannot_be_imported_by_name_is_run_by_forked_workers():
    fn = load_target(STUDENT)             # loaded from its file: a worker cannot import it by name
    assert execute._pool_context(functools.partial(check_case, fn)).get_start_method() == "fork"
