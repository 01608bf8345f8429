"""User code that misbehaves outside `except Exception`: every such call is a failing row."""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import forked_cli
import pandas as pd
import pytest

from verify.api import sweep_implementation
from verify.byo.call import load_target
from verify.cli.app import main
from verify.core.spec import NetSpec
from verify.harness.trace import check
from verify.sweep.shrink import NOT_REPRODUCED

HOSTILE = Path(__file__).parent / "fixtures" / "hostile_impls.py"
SPEC = "3-4-2:sigmoid:mse_loss"


def hostile(name: str):
    return load_target(f"{HOSTILE}:{name}")


@pytest.mark.parametrize("name, words", [
    ("raises_generator_exit", "GeneratorExit at hostile_impls.py"),
    ("raises_base_exception", "Custom: outside Exception at hostile_impls.py"),
    ("raises_unprintable", "Unprintable: (its str() raised RuntimeError) at hostile_impls.py"),
    ("raises_keyboard_interrupt", "KeyboardInterrupt at hostile_impls.py"),
])
def test_an_exception_outside_exception_or_without_text_is_a_failing_case_naming_it(name, words):
    result = check(SPEC, seed=1, impl=hostile(name))
    assert not result.passed
    assert words in result.error


@pytest.mark.parametrize("name, words", [
    ("mapping_whose_iter_raises", "that raised Custom: no iterating"),
    ("mapping_whose_getitem_raises", "that raised KeyError"),
    ("mapping_whose_contains_raises", "that raised GeneratorExit"),
])
def test_a_returned_mapping_that_raises_when_read_is_a_failing_row(name, words):
    result = check(SPEC, seed=1, impl=hostile(name))
    assert not result.passed and not result.error
    first = result.first_divergence
    assert first.name == "backprop" and words in first.problem and "_Hostile" in first.problem


@pytest.mark.parametrize("name", ["raises_base_exception", "raises_keyboard_interrupt",
                                  "mapping_whose_iter_raises", "raises_unprintable"])
def test_a_sweep_of_such_an_implementation_ends_with_a_report_and_exit_status_1(name, tmp_path, capsys):
    code = main(["check", "--impl", f"{HOSTILE}:{name}", "--examples", "6", "--max-depth", "2",
                 "--out", str(tmp_path)])
    assert code == 1
    assert (tmp_path / "report.html").is_file()
    assert "PARTIAL" not in (tmp_path / "report.html").read_text()


def test_a_real_ctrl_c_that_the_implementation_swallows_still_interrupts_the_sweep(tmp_path):
    code = main(["check", "--impl", f"{HOSTILE}:swallows_a_real_ctrl_c", "--examples", "8",
                 "--max-depth", "2", "--out", str(tmp_path)])
    assert code == 130
    assert "PARTIAL (interrupted)" in (tmp_path / "report.html").read_text()


# -- a failure that does not repeat ------------------------------------------------------------

def _chosen(fails_on: set):
    fn = hostile("fails_on_chosen_calls")
    fn.calls, fn.fails_on = 0, fails_on
    return fn


def test_a_failure_that_does_not_repeat_when_re_run_keeps_its_case_noted_as_such():
    result = sweep_implementation(_chosen({2}), examples=6, max_depth=2)
    (minimal,) = result.minimal
    assert minimal == dataclasses.replace(result.results[1], note=NOT_REPRODUCED)


def test_a_failure_that_hypothesis_finds_flaky_while_shrinking_keeps_its_case_noted_as_such():
    # calls 1-6: the sweep; 7: the failing case run again (fails); 8: shrinking's first (fails);
    # then none fails, which hypothesis reports as a flaky failure
    result = sweep_implementation(_chosen({1, 7, 8}), examples=6, max_depth=2)
    (minimal,) = result.minimal
    assert minimal == dataclasses.replace(result.results[0], note=NOT_REPRODUCED)


def test_with_jobs_2_a_failure_on_the_first_two_calls_is_reported_with_exit_status_1(tmp_path, capsys):
    hostile("raises_on_its_first_two_calls").calls = 0
    code = main(["check", "--impl", f"{HOSTILE}:raises_on_its_first_two_calls", "--jobs", "2",
                 "--examples", "40", "--max-depth", "2", "--out", str(tmp_path)])
    assert code == 1
    out = capsys.readouterr().out
    assert "(did not reproduce when re-run)" in out and "Traceback" not in out
    assert (tmp_path / "report.json").is_file()


# -- worker processes that die or raise --------------------------------------------------------

STREAMS = {"closes_stdout": "out", "closes_stdout_buffer": "out", "rewraps_stdout": "out",
           "closes_file_descriptor_1": "out", "closes_stderr": "err", "closes_the_original_streams": "err",
           "redirects_file_descriptor_2": "err"}


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The `verify` commands of this file, each in a process of its own (forked from one that
    imported the command once, tests/forked_cli.py), run together; a hang fails its test."""
    out = tmp_path_factory.mktemp("commands")
    cwd = Path(__file__).parent.parent
    runs = {"ends_the_process": {"cwd": cwd, "args": [
        "check", "--impl", f"{HOSTILE}:ends_the_process_on_batches_of_three", "--jobs", "2", "--examples", "96",
        "--max-depth", "2", "--max-batch", "4", "--out", str(out / "ends_the_process")]}}
    for name in STREAMS:
        runs[name] = {"cwd": cwd, "args": ["check", "--impl", f"{HOSTILE}:{name}", "--examples", "6",
                                           "--max-depth", "2", "--out", str(out / name)]}
    done = forked_cli.run_all(runs, out)
    return {name: (done[name], out / name) for name in runs}


def test_with_jobs_2_an_implementation_that_ends_its_process_fails_rows_and_the_command_exits_1(commands):
    done, out = commands["ends_the_process"]
    assert done.returncode == 1, done.stderr[-2000:]
    cases = pd.read_csv(out / "cases.csv")
    assert len(cases) == 96
    assert cases["note"].fillna("").str.contains(
        "ProcessEnded: the implementation ended the process (exit status 3)", regex=False).any()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, words", [
    ("raises_keyboard_interrupt", "KeyboardInterrupt at hostile_impls.py"),
    ("raises_base_exception", "Custom: outside Exception at hostile_impls.py"),
])
def test_with_jobs_2_an_exception_outside_exception_fails_every_case_it_is_raised_in(name, words):
    result = sweep_implementation(hostile(name), examples=24, max_depth=2, jobs=2)
    assert len(result.results) == 24
    assert all(words in r.error for r in result.results)


def test_a_dead_worker_loses_no_other_case_of_its_block():
    fn = hostile("ends_the_process_on_batches_of_three")
    result = sweep_implementation(fn, examples=24, max_depth=2, max_batch=4, jobs=2)
    dead = [r for r in result.results if r.error.startswith("ProcessEnded")]
    assert dead and all(r.batch == 3 for r in dead)
    assert all(r.passed for r in result.results if r.batch != 3)


# -- writing into the spec -------------------------------------------------------------------

def test_an_implementation_that_writes_into_its_spec_fails_with_a_row_naming_the_spec():
    result = check(SPEC, seed=1, impl=hostile("writes_into_its_spec"))
    assert [(r.name, r.problem.split(" (")[0]) for r in result.records if not r.passed] == \
        [("spec", "writes_into_its_spec modified its spec argument")]


def test_what_an_implementation_writes_into_its_spec_does_not_reach_the_harness_s_spec():
    spec = NetSpec.parse(SPEC)
    check(spec, seed=1, impl=hostile("writes_into_its_spec"))
    assert spec == NetSpec.parse(SPEC) and spec.dtype == "float64"


def test_a_sweep_of_an_implementation_that_writes_into_its_spec_is_shrunk_and_reported(tmp_path, capsys):
    code = main(["check", "--impl", f"{HOSTILE}:writes_into_its_spec", "--examples", "6", "--max-depth", "2",
                 "--out", str(tmp_path)])
    assert code == 1
    assert "modified its spec argument" in capsys.readouterr().out
    assert "PARTIAL" not in (tmp_path / "report.html").read_text()


# -- arrays that are not plain ndarrays --------------------------------------------------------

@pytest.mark.parametrize("name, kind", [("fully_masked", "MaskedArray"), ("masked_nothing", "MaskedArray"),
                                        ("as_matrix", "matrix"), ("tagged", "Tagged")])
def test_an_ndarray_subclass_in_place_of_an_array_is_a_failing_row_naming_its_type(name, kind):
    result = check(SPEC, seed=1, impl=hostile(name))
    (bad,) = [r for r in result.records if not r.passed]
    assert bad.name == "dW1"
    assert bad.problem.startswith(f"{kind} where torch has a plain float64 array of shape (4, 3)")


def test_a_memmap_in_place_of_an_array_is_read_as_the_plain_array_it_is():
    assert check(SPEC, seed=1, impl=hostile("as_memmap_like")).passed


# -- the harness's own output ------------------------------------------------------------------

@pytest.mark.parametrize("name, stream", STREAMS.items())
def test_code_that_closes_or_redirects_a_standard_stream_leaves_the_harness_s_output_intact(name, stream, commands):
    done, _ = commands[name]
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    expected = "verify: all 6 cases agree" if stream == "out" else "checked 6/6 cases, 0 failing"
    assert expected in (done.stdout if stream == "out" else done.stderr)
