"""The pytest plugin: --verify-report DIR collects every check, also under xdist."""
from __future__ import annotations

import pandas as pd

pytest_plugins = ["pytester"]

TESTS = """
from verify import check

def test_one():
    assert check("2-2-1:sigmoid:quadratic", seed=1, batch=2).passed

def test_two(verify_check):
    assert verify_check("2-3-1:tanh,identity:mse_loss", seed=2, batch=3).passed

def test_three():
    assert check("3-1:relu:l1_loss", seed=3, batch=1).passed
"""


SWEEP_TEST = """
from verify.sweep.run import sweep

def test_a_sweep_in_two_processes():
    assert sweep(examples=40, seed=3, jobs=2, max_shrunk=0).passed
"""


NETS = ["2-2-1:sigmoid:quadratic", "2-3-1:tanh,identity:mse_loss", "3-1:relu:l1_loss"]


def test_the_report_holds_the_checks_made_in_a_sweeps_worker_processes(pytester):
    pytester.makepyfile(test_sweeps=SWEEP_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--verify-report", "rep")
    result.assert_outcomes(passed=1)
    cases = pd.read_csv(pytester.path / "rep" / "cases.csv")
    assert len(cases) == 40
    assert cases["case_id"].tolist() == list(range(40))


def test_under_xdist_the_report_merges_both_workers_checks_and_those_of_a_sweeps_worker_processes(pytester):
    """One xdist run (its start costs more than its tests) over plain checks and a sweep with jobs=2."""
    pytester.makepyfile(test_nets=TESTS, test_sweeps=SWEEP_TEST)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--verify-report", "rep")
    result.assert_outcomes(passed=4)
    cases = pd.read_csv(pytester.path / "rep" / "cases.csv", keep_default_na=False)
    by_file = cases["test"].str.split("::").str[0]
    assert sorted(cases.loc[by_file == "test_nets.py", "spec"]) == sorted(NETS)
    assert (by_file == "test_sweeps.py").sum() == 40
    assert sorted(cases["case_id"]) == list(range(43))
    assert (pytester.path / "rep" / "report.html").exists()
