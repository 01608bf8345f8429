"""Bad input is refused before work starts: one line, exit 2."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from verify.api import supported
from verify.byo.call import load_target
from verify.cli import limits
from verify.cli.app import UsageError, main
from verify.core.spec import NetSpec, SpecError
from verify.harness.trace import check

USER = Path(__file__).parent / "fixtures" / "user_impls.py"


def _one_line_exit_2(capsys, argv, words):
    start = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    return time.perf_counter() - start


@pytest.mark.parametrize("argv", [
    ["run", "--examples", "4"],
    ["check", "--impl", "handimpl:backprop", "--examples", "4"],
    ["mutants", "--examples", "1"],
], ids=["run", "check-impl", "mutants"])
@pytest.mark.parametrize("out,words", [
    ("/proc/x", "cannot write a report there"),
    ("/dev/null", "is a device, not a directory"),
    (__file__, "is a file, not a directory"),
], ids=["proc", "dev-null", "file"])
def test_every_command_that_writes_a_report_refuses_an_unusable_out(capsys, argv, out, words):
    _one_line_exit_2(capsys, [*argv, "--out", out], words)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv", [
    ["check", "1000000-1000000-1:sigmoid:quadratic"],
    ["check", "8000-8000-1:sigmoid:quadratic"],
    ["check", "2-2-1:sigmoid:quadratic", "--batch", "1000000000"],
    ["explain", "8000-8000-1:sigmoid:quadratic"],
    ["run", "--max-width", "1024", "--max-depth", "32", "--max-batch", "4096"],
], ids=["1e6-wide", "8000-wide", "huge-batch", "explain", "sweep-bounds"])
def test_a_case_that_cannot_fit_in_memory_is_refused_with_its_estimate_before_it_runs(capsys, argv):
    seconds = _one_line_exit_2(capsys, [*argv, "--max-memory", "8G"], "at its peak (estimated), more than 8.0 GiB")
    assert seconds < 5


def test_max_memory_sets_the_limit_both_ways(capsys):
    _one_line_exit_2(capsys, ["check", "2-2-1:sigmoid:quadratic", "--max-memory", "1K"], "more than 1.0 KiB")
    assert main(["check", "2-2-1:sigmoid:quadratic", "--max-memory", "1M"]) == 0


def test_the_default_memory_limit_is_a_fraction_of_the_memory_available():
    available = limits.available_bytes()
    assert available and limits.default_memory_limit() == int(available * limits.MEMORY_FRACTION)


def test_the_memory_estimate_is_above_the_peak_a_case_really_reaches():
    code = ("import resource; from verify.harness.trace import check\n"
            "check('2-2-1:sigmoid:mse_loss', seed=0, batch=2)\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "check('1000-1000-1:tanh:mse_loss:dtype=float32', seed=0, batch=4)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)")
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout)
    assert peak < limits.case_bytes((1000, 1000, 1), 4)


@pytest.mark.parametrize("argv,words", [
    (["run", "--examples", str(10 ** 26)], "at most 10,000,000 cases"),
    (["run", "--jobs", "1000"], "worker processes (4 per CPU"),
    (["check", "2-2-1:sigmoid:quadratic", "--examples", "5"], "--examples: not used when checking one SPEC"),
    (["check", "2-2-1:sigmoid:quadratic", "--jobs", "2"], "--jobs: not used when checking one SPEC"),
    (["check", "2-2-1:sigmoid:quadratic", "--out", "x"], "--out: not used when checking one SPEC"),
    (["check", "--impl", "handimpl:backprop", "--batch", "3"], "--batch: not used by a sweep"),
    (["check", "２-１:relu:mse_loss"], "digits 0-9"),
])
def test_out_of_range_or_unused_flags_are_refused_in_one_line(capsys, argv, words):
    _one_line_exit_2(capsys, argv, words)


def test_more_jobs_than_blocks_of_cases_run_as_many_processes_as_blocks_and_say_so(tmp_path, capsys):
    assert main(["run", "--examples", "4", "--max-depth", "1", "--jobs", "8", "--out", str(tmp_path / "r")]) == 0
    assert "--jobs 8: the 4 cases are drawn and checked in 1 block, so 2 worker processes" in capsys.readouterr().err


def test_two_jobs_over_a_single_block_still_check_it_in_a_worker_process(tmp_path):
    # in a worker, an implementation that ends its process fails its case instead of the command
    hostile = Path(__file__).parent / "fixtures" / "hostile_impls.py"
    done = subprocess.run([sys.executable, "-m", "verify", "check", "--impl", f"{hostile}:ends_the_process",
                           "--examples", "8", "--max-depth", "2", "--jobs", "2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert (tmp_path / "r" / "cases.csv").exists() and "Traceback" not in done.stderr


@pytest.mark.parametrize("declared,words", [
    ({"activations": "relu"}, "supports['activations'] must be a list of names"),
    ({"activation": ["relu"]}, "unknown key 'activation'"),
    (["relu"], "must be a dict of name lists"),
], ids=["string", "misspelt-key", "list"])
def test_a_malformed_supports_attribute_is_a_usage_error_naming_the_key(declared, words):
    def backprop(spec, params, x, y):
        raise AssertionError("never called")
    backprop.supports = declared
    with pytest.raises(UsageError, match=words.replace("[", r"\[")):
        supported(backprop)


@pytest.mark.parametrize("text", [
    "２-１:relu:mse_loss", "٢-١:relu:mse_loss", "+2-1:relu:mse_loss", "2_0-1:relu:mse_loss",
    "2-1:relu:huber_loss:delta=inf", "2-1:relu:poisson_nll_loss:eps=nan",
    "2-1:relu:huber_loss:delta=1e999", "2-1:relu:huber_loss:delta=１", "2-1:relu:huber_loss:delta=1_0",
    "9" * 5000 + "-1:relu:mse_loss",
])
def test_the_parser_refuses_non_ascii_digits_signs_underscores_and_non_finite_options(text):
    with pytest.raises(SpecError):
        NetSpec.parse(text)


def test_a_non_finite_loss_option_is_refused_from_python_too():
    with pytest.raises(SpecError, match="must be a finite number"):
        NetSpec((2, 1), ("relu",), "huber_loss", (("delta", float("inf")),))


@pytest.mark.parametrize("text", [
    "x" * 10 ** 6, "2-1:" + "x" * 10 ** 6 + ":mse_loss", "2-1:relu:" + "x" * 10 ** 6,
    "2-1:relu:mse_loss:" + "k" * 10 ** 6 + "=1", "1-" * 10 ** 5 + "0:relu:mse_loss",
], ids=["whole", "activation", "loss", "option", "widths"])
def test_a_spec_error_never_repeats_more_than_80_characters_of_a_huge_input(text):
    with pytest.raises(SpecError) as info:
        NetSpec.parse(text)
    message = str(info.value)
    assert "…" in message and max(map(len, message.split(";")[:1])) < 200


def test_an_implementation_that_appends_to_params_and_changes_x_is_reported_for_those_two_only():
    result = check("3-4-2:sigmoid:mse_loss", seed=1, batch=3,
                   impl=load_target(f"{USER}:appends_to_params_and_changes_x"))
    assert [r.name for r in result.records if r.quantity == ""] == ["params", "x"]


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["mutants"], ["explain"]],
                         ids=["verify", "run", "check", "mutants", "explain"])
def test_every_help_page_prints_and_exits_0(capsys, command):
    assert main([*command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out
