"""The pytest plugin: --verify-report DIR collects every check, also under xdist."""
from __future__ import annotations

import pandas as pd
import pytest

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


def test_the_report_merges_the_checks_of_two_xdist_workers(pytester):
    pytester.makepyfile(test_nets=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                           "--verify-report", "rep")
    result.assert_outcomes(passed=3)
    cases = pd.read_csv(pytester.path / "rep" / "cases.csv")
    assert sorted(cases["spec"]) == sorted(["2-2-1:sigmoid:quadratic", "2-3-1:tanh,identity:mse_loss",
                                            "3-1:relu:l1_loss"])
    assert (pytester.path / "rep" / "report.html").exists()


SWEEP_TEST = """
from verify.sweep.run import sweep

def test_a_sweep_in_two_processes():
    assert sweep(examples=40, seed=3, jobs=2, max_shrunk=0).passed
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "under-xdist"])
def test_the_report_holds_the_checks_made_in_a_sweeps_worker_processes(pytester, xdist):
    pytester.makepyfile(test_sweeps=SWEEP_TEST)
    result = pytester.runpytest_subprocess(*xdist, "-p", "no:cacheprovider", "--verify-report", "rep")
    result.assert_outcomes(passed=1)
    cases = pd.read_csv(pytester.path / "rep" / "cases.csv")
    assert len(cases) == 40
    assert cases["case_id"].tolist() == list(range(40))
