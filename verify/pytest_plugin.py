"""pytest gate: ``--verify-report DIR`` collects every harness check of the session.

With the option, the session's collector observes verify.check
(verify.harness.trace.OBSERVERS): every check is recorded however it was imported or
called, through the ``verify_check`` fixture, inside a sweep, and in a sweep's
worker processes (they forward their results to the parent, verify.sweep.run).
Each check is stamped with the node id of the test that made it
(CaseResult.test). Under pytest-xdist every worker hands its results (pickled)
to the controller through ``workeroutput``, and the controller writes one
merged report.

The report follows the tests: a failing check counts as a failure only if its
test failed; the failing checks of passing tests (tests asserting that a
planted bug is caught) are expected failures, listed apart. Checks are
ordered by (test, implementation, call order within the test) and numbered
after that, so serial and xdist runs write the same CSV files.

A run over a subset of the suite (-k, -m, --deselect, --lf, named files or
node ids, or a run that stopped before its last test: -x, --maxfail, Ctrl-C) writes its report
to ``--verify-subset-report`` (default: DIR with
``-subset`` appended), so that it never overwrites the full suite's report;
give the same DIR to overwrite it anyway.
"""
from __future__ import annotations

import base64
import dataclasses
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from verify.harness import trace
from verify.report.write import write_reports
from verify.sweep.run import SweepResult
from verify.sweep.shrink import distinct_failures, size_key

_KEY = "verify_results"
_DESELECTED = "verify_deselected"


class Collector:
    """The checks of the session, each with its test id and its call number within the test,
    recorded as an observer of verify.check; and the outcome of every test."""

    def __init__(self):
        self.items: list[tuple[str, int, Any]] = []
        self.calls: Counter = Counter()
        self.nodeid = ""
        self.failed_tests: dict[str, bool] = {}
        self.deselected = 0
        self.started = time.perf_counter()

    def record(self, result) -> None:
        k = self.calls[self.nodeid]
        self.calls[self.nodeid] += 1
        self.items.append((self.nodeid, k, dataclasses.replace(result, test=self.nodeid)))

    def pytest_runtest_logreport(self, report) -> None:
        """A test fails when any of its phases fails; under xdist the controller sees every
        worker's reports."""
        self.failed_tests[report.nodeid] = self.failed_tests.get(report.nodeid, False) or report.failed

    def pytest_deselected(self, items) -> None:
        self.deselected += len(items)

    def install(self) -> None:
        _observers().append(self.record)

    def uninstall(self) -> None:
        if self.record in _observers():
            _observers().remove(self.record)

    def ordered(self) -> list[Any]:
        """The results by (test, implementation, call number within the test)."""
        return [r for _, _, r in sorted(self.items, key=lambda t: (t[0], t[2].impl, t[1]))]

    def expected(self, results: list[Any]) -> tuple[bool, ...]:
        """Per result: made by a test that ran and did not fail."""
        return tuple(r.test in self.failed_tests and not self.failed_tests[r.test] for r in results)


def _observers() -> list:
    return trace.OBSERVERS


def pytest_addoption(parser):
    group = parser.getgroup("verify")
    group.addoption("--verify-report", metavar="DIR", default=None,
                    help="write the backprop-verify report of every harness check in this session "
                         "to DIR (a run over part of the suite writes to --verify-subset-report)")
    group.addoption("--verify-strict", action="store_true", default=False,
                    help="judge every harness check of the session by the tight allowance alone "
                         "(verify.check's and assert_matches_torch's strict=None): an imprecise "
                         "textbook formula fails")
    group.addoption("--verify-subset-report", metavar="DIR", default=None,
                    help="where a run over part of the suite (-k, -m, --deselect, --lf, named "
                         "files or node ids) writes its report (default: the --verify-report "
                         "DIR with '-subset' appended; give the same DIR to overwrite the full report)")


def pytest_configure(config):
    if config.getoption("verify_strict", False):
        trace.STRICT_DEFAULT = True
    if config.getoption("verify_report", None):
        collector = Collector()
        collector.install()
        config.pluginmanager.register(collector, "verify-collector")
        config._verify_collector = collector


def _collector(config) -> Collector | None:
    return getattr(config, "_verify_collector", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    collector = _collector(item.config)
    if collector is not None:
        collector.nodeid = item.nodeid
    try:
        return (yield)
    finally:
        if collector is not None:
            collector.nodeid = ""


@pytest.fixture
def verify_check():
    """verify.harness.trace.check (recorded into the --verify-report report when it is on)."""
    return trace.check


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: take the worker's results."""
    collector = _collector(node.config)
    output = getattr(node, "workeroutput", {})
    if collector is not None and output.get(_KEY):
        collector.items.extend(pickle.loads(base64.b64decode(output[_KEY])))
    if collector is not None:
        collector.deselected = max(collector.deselected, int(output.get(_DESELECTED, 0)))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    collector = _collector(config)
    if collector is None:
        return
    collector.uninstall()
    if hasattr(config, "workerinput"):          # an xdist worker: hand results to the controller
        config.workeroutput[_KEY] = base64.b64encode(pickle.dumps(collector.items)).decode()
        config.workeroutput[_DESELECTED] = collector.deselected
        return
    _write(config, collector, _stopped_early(session, exitstatus, collector))


def _stopped_early(session, exitstatus, collector: Collector) -> str:
    """'stopped after 2 of 4 tests' when the run ended before its last test (-x, --maxfail,
    Ctrl-C), else ''."""
    ran, collected = len(collector.failed_tests), session.testscollected
    if collected and ran < collected:
        return f"stopped after {ran} of {collected} test{'s' if collected != 1 else ''}"
    if exitstatus == pytest.ExitCode.INTERRUPTED and ran < max(collected, 1):
        return "interrupted"
    return ""


def subset_reason(config, deselected: int = 0, stopped: str = "") -> str:
    """Why this run covers only part of the suite ('' for a full run)."""
    opt = config.option
    if stopped:
        return stopped
    if getattr(opt, "keyword", ""):
        return f"-k {opt.keyword}"
    if getattr(opt, "markexpr", ""):
        return f"-m {opt.markexpr}"
    if getattr(opt, "deselect", None):
        return "--deselect"
    if getattr(opt, "lf", False) and config.cache is not None and config.cache.get("cache/lastfailed", {}):
        return "--lf"
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        if any("::" in a for a in config.args):
            return "node ids named"
        full = {Path(config.rootpath, p).resolve() for p in config.getini("testpaths")} or \
            {Path(config.rootpath).resolve()}
        named = {Path(config.invocation_params.dir, a).resolve() for a in config.args}
        if named != full and named != {Path(config.rootpath).resolve()}:
            return "paths named"
    if deselected:
        return f"{deselected} test{'s' if deselected != 1 else ''} deselected"
    return ""


def report_dir(config, deselected: int = 0, stopped: str = "") -> tuple[Path, str]:
    """(where the report goes, why it is a subset or '')."""
    full = Path(config.getoption("verify_report"))
    reason = subset_reason(config, deselected, stopped)
    if not reason:
        return full, ""
    subset = config.getoption("verify_subset_report")
    return (Path(subset) if subset else full.with_name(full.name + "-subset")), reason


def _write(config, collector: Collector, stopped: str = "") -> None:
    results = collector.ordered()
    expected = collector.expected(results)
    out, reason = report_dir(config, collector.deselected, stopped)
    failures = [r for r, e in zip(results, expected) if not r.passed and not e]
    minimal = tuple(sorted(distinct_failures(failures), key=size_key))
    settings = {"source": "pytest", "tests": len({r.test for r in results}),
                "checks": len(results)}
    if reason:
        settings["subset"] = reason
    elapsed = time.perf_counter() - collector.started
    result = SweepResult(tuple(results), minimal, settings, False, elapsed, expected=expected,
                         total_time=elapsed)
    paths = write_reports(result, out, title="pytest verify gate")
    config._verify_report_path = paths["html"]
    config._verify_report_subset = reason


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = getattr(config, "_verify_report_path", None)
    if path is not None:
        reason = getattr(config, "_verify_report_subset", "")
        terminalreporter.write_line(f"verify report: {path}"
                                    + (f" (part of the suite: {reason})" if reason else ""))
