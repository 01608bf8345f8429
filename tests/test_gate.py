"""The pytest gate follows the tests: who made each check, what a failing check means for the
verdict, serial and xdist alike, and a subset run kept apart from the full suite's report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest_plugins = ["pytester"]


USER_TESTS = '''
import handimpl
from verify import check_implementation
from verify import check


def doubled_dW1(spec, params, x, y):
    out = handimpl.backprop(spec, params, x, y)
    out["dW1"] = out["dW1"] * 2
    return out


def test_the_good_implementation_agrees():
    assert check("2-2-1:sigmoid:quadratic", seed=1, batch=2).passed
    assert check("2-3-1:tanh,identity:mse_loss", seed=2, batch=3).passed


def test_the_planted_bug_is_caught():
    frame = check_implementation(doubled_dW1, examples=24, seed=5)
    assert not frame.attrs["passed"]


def test_a_bug_that_fails_its_test():
    assert check("3-2:relu:l1_loss", seed=3, batch=2, impl=doubled_dW1).passed
'''

SCRIPT_DIR = Path(sys.executable).parent


def _pytest(where: Path, *args: str) -> subprocess.Popen:
    """pytest over ``where`` in a child Python, started (``.communicate()`` waits for it)."""
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args],
                            cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _done(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The user's test file run serially, under xdist, and over a subset (-k), each with
    --verify-report. The xdist run goes on beside the other two (each writes its own directory)."""
    where = tmp_path_factory.mktemp("gate")
    (where / "test_user.py").write_text(USER_TESTS)
    out = {"where": where}
    xdist = _pytest(where, "-n", "2", "--verify-report", "xdist")
    out["serial"] = _done(_pytest(where, "--verify-report", "serial"))
    (where / "serial" / "cases.csv").rename(where / "serial-cases.csv")   # the full report, kept
    out["full_before"] = {p.name: p.read_bytes() for p in (where / "serial").iterdir()}
    out["subset"] = _done(_pytest(where, "-k", "not fails_its_test", "--verify-report", "serial"))
    (where / "serial-cases.csv").rename(where / "serial" / "cases.csv")
    out["xdist"] = _done(xdist)
    return out


def _csv(runs, name: str, which: str = "serial") -> pd.DataFrame:
    return pd.read_csv(runs["where"] / which / name, keep_default_na=False)


def test_the_user_file_runs_with_one_failing_test(runs):
    assert "1 failed, 2 passed" in runs["serial"].stdout, runs["serial"].stdout[-2000:]


@pytest.mark.parametrize("name", ["cases.csv", "discrepancies.csv"])
def test_every_row_names_the_implementation_and_the_test(runs, name):
    df = _csv(runs, name)
    test_ids = {"test_user.py::" + t for t in ("test_the_good_implementation_agrees",
                                                "test_the_planted_bug_is_caught",
                                                "test_a_bug_that_fails_its_test")}
    assert set(df["test"]) == test_ids
    good = df[df["test"].str.endswith("good_implementation_agrees")]
    bad = df[~df["test"].str.endswith("good_implementation_agrees")]
    assert set(good["impl"]) == {"handimpl.backprop"}
    assert set(bad["impl"]) == {"test_user:doubled_dW1"}


@pytest.mark.parametrize("name", ["cases.csv", "discrepancies.csv"])
def test_serial_and_xdist_runs_write_identical_csv_files(runs, name):
    assert "1 failed, 2 passed" in runs["xdist"].stdout, runs["xdist"].stdout[-2000:]
    assert (runs["where"] / "serial" / name).read_bytes() == (runs["where"] / "xdist" / name).read_bytes()


def test_the_checks_are_ordered_by_test_and_numbered_after_that(runs):
    cases = _csv(runs, "cases.csv")
    assert cases["case_id"].tolist() == list(range(len(cases)))
    assert cases["test"].tolist() == sorted(cases["test"])


def test_a_failing_check_counts_only_when_its_test_failed(runs):
    report = json.loads((runs["where"] / "serial" / "report.json").read_text())
    cases = _csv(runs, "cases.csv")
    failing = cases[~cases["passed"]]
    in_failed_test = failing[failing["test"].str.endswith("fails_its_test")]
    assert report["counts"]["failed_cases"] == len(in_failed_test) == 1
    assert report["counts"]["expected_failures"] == len(failing) - 1 > 0


def test_a_failing_check_of_a_passing_test_is_listed_as_an_expected_failure(runs):
    page = (runs["where"] / "serial" / "report.html").read_text()
    assert "Expected failures (the test passed)" in page
    report = json.loads((runs["where"] / "serial" / "report.json").read_text())
    [group] = report["expected_failures"]
    assert group["test"] == "test_user.py::test_the_planted_bug_is_caught"
    assert group["example"]["repro"].startswith("verify check '")


def test_a_green_suite_gives_a_green_report_despite_expected_failures(runs):
    assert "2 passed, 1 deselected" in runs["subset"].stdout, runs["subset"].stdout[-2000:]
    report = json.loads((runs["where"] / "serial-subset" / "report.json").read_text())
    assert report["counts"]["failed_cases"] == 0 and report["counts"]["expected_failures"] > 0
    assert 'class="banner pass"' in (runs["where"] / "serial-subset" / "report.html").read_text()


def test_a_subset_run_leaves_the_full_suites_report_alone(runs):
    after = {p.name: p.read_bytes() for p in (runs["where"] / "serial").iterdir() if p.name != "cases.csv"}
    assert after == runs["full_before"]
    assert "part of the suite: -k not fails_its_test" in runs["subset"].stdout


def test_the_repro_line_of_a_failing_check_reruns_it_with_its_implementation(runs):
    report = json.loads((runs["where"] / "serial" / "report.json").read_text())
    [minimal] = report["minimal"]
    assert "--impl 'test_user:doubled_dW1'" in minimal["repro"]
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    rerun = subprocess.run(["bash", "-c", minimal["repro"]], cwd=runs["where"], capture_output=True,
                           text=True, env=env)
    assert rerun.returncode == 1 and "first to diverge: dW1" in rerun.stdout, rerun.stdout + rerun.stderr


def test_a_counterexample_card_holds_the_hint_the_formula_the_worst_element_and_the_command(runs):
    report = json.loads((runs["where"] / "serial" / "report.json").read_text())
    [cx] = report["minimal"]
    assert cx["look_at"] == "the weight gradient of layer 1"
    assert cx["formula"].startswith("∂J/∂W¹ = δ¹ᵀx")
    assert cx["worst"]["tensor"] == "dW1" and cx["worst"]["hand"] == 2 * cx["worst"]["torch"]
    page = (runs["where"] / "serial" / "report.html").read_text()
    for text in ("Look at the weight gradient of layer 1", "worst element dW1",
                 "--impl &#39;test_user:doubled_dW1&#39;"):
        assert text in page


def test_the_xdist_report_gives_the_serial_verdict_and_counts(runs):
    serial, xdist = (json.loads((runs["where"] / d / "report.json").read_text()) for d in ("serial", "xdist"))
    assert xdist["verdict"] == serial["verdict"] and xdist["counts"] == serial["counts"]
    assert xdist["minimal"] == serial["minimal"]


def test_the_cases_tried_while_shrinking_are_not_recorded_as_checks(monkeypatch):
    import handimpl
    from verify.api import sweep_implementation
    from verify.harness import trace

    def doubled_dW1(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out["dW1"] = out["dW1"] * 2
        return out

    seen = []
    monkeypatch.setattr(trace, "OBSERVERS", [seen.append])
    result = sweep_implementation(doubled_dW1, examples=8, seed=1)
    assert result.minimal and len(seen) == len(result.results) == 8


@pytest.mark.parametrize("args,reason", [
    ((), ""),
    ((".",), ""),
    (("test_x.py",), "paths named"),
    (("test_x.py::test_a",), "node ids named"),
    (("-k", "test_a"), "-k test_a"),
    (("--deselect", "test_x.py::test_a"), "--deselect"),
])
def test_a_run_over_part_of_the_suite_is_told_from_a_full_run(pytester, args, reason):
    from verify.pytest_plugin import subset_reason
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    config = pytester.parseconfigure(*args)
    assert subset_reason(config) == reason


def test_last_failed_is_a_subset_only_when_failures_are_recorded(pytester):
    from verify.pytest_plugin import subset_reason
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    config = pytester.parseconfigure("--lf")
    assert subset_reason(config) == ""
    config.cache.set("cache/lastfailed", {"test_x.py::test_a": True})
    assert subset_reason(config) == "--lf"


def test_a_run_that_stops_before_its_last_test_writes_to_the_subset_report(pytester):
    pytester.makepyfile(test_x="def test_a():\n    pass\n\n\ndef test_b():\n    assert 0\n\n\n"
                               "def test_c():\n    pass\n")
    result = pytester.runpytest_inprocess("-x", "-p", "no:cacheprovider", "--verify-report", "rep")
    result.stdout.fnmatch_lines(["*verify report: *rep-subset*stopped after 2 of 3 tests*"])
    assert (pytester.path / "rep-subset" / "report.json").exists() and not (pytester.path / "rep").exists()
