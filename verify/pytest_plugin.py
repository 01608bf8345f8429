"""pytest gate: ``--verify-report DIR`` collects every harness check of the session.

With the option, the session's collector observes verify.check.check
(verify.check.OBSERVERS): every check is recorded however it was imported or
called, through the ``verify_check`` fixture, inside a sweep, and in a sweep's
worker processes (they forward their results to the parent, verify.sweep). At
session end the collected CaseResults, ordered by test id and call order, go
through verify.report.write_reports. Under pytest-xdist every worker hands its
results (pickled) to the controller through ``workeroutput``, and the
controller writes one merged report.
"""
from __future__ import annotations

import base64
import importlib
import pickle
import time
from typing import Any

import pytest

_KEY = "verify_results"


class Collector:
    """Results in (test id, call number) order, recorded as an observer of verify.check."""

    def __init__(self):
        self.items: list[tuple[str, int, Any]] = []
        self.nodeid = ""
        self.started = time.perf_counter()

    def record(self, result) -> None:
        self.items.append((self.nodeid, len(self.items), result))

    def install(self) -> None:
        _observers().append(self.record)

    def uninstall(self) -> None:
        if self.record in _observers():
            _observers().remove(self.record)

    def results(self) -> list:
        return [r for _, _, r in sorted(self.items, key=lambda t: (t[0], t[1]))]


def _observers() -> list:
    return importlib.import_module("verify.check").OBSERVERS    # the module (verify.check is also the function)


def pytest_addoption(parser):
    group = parser.getgroup("verify")
    group.addoption("--verify-report", metavar="DIR", default=None,
                    help="write the backprop-verify report of every harness check in this session to DIR")


def pytest_configure(config):
    if config.getoption("verify_report", None):
        collector = Collector()
        collector.install()
        config._verify_collector = collector


def _collector(config) -> Collector | None:
    return getattr(config, "_verify_collector", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    collector = _collector(item.config)
    if collector is not None:
        collector.nodeid = item.nodeid
    return (yield)


@pytest.fixture
def verify_check():
    """verify.check.check (recorded into the --verify-report report when it is on)."""
    from verify.check import check
    return check


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: take the worker's results."""
    collector = _collector(node.config)
    payload = getattr(node, "workeroutput", {}).get(_KEY)
    if collector is not None and payload:
        collector.items.extend(pickle.loads(base64.b64decode(payload)))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    collector = _collector(config)
    if collector is None:
        return
    collector.uninstall()
    if hasattr(config, "workerinput"):          # an xdist worker: hand results to the controller
        config.workeroutput[_KEY] = base64.b64encode(pickle.dumps(collector.items)).decode()
        return
    _write(config, collector)


def _write(config, collector: Collector) -> None:
    from verify.report import write_reports
    from verify.sweep import SweepResult, distinct_failures, size_key
    results = collector.results()
    minimal = tuple(sorted(distinct_failures(results), key=size_key))
    settings = {"source": "pytest", "tests": len({n for n, _, _ in collector.items}),
                "checks": len(results)}
    result = SweepResult(tuple(results), minimal, settings, False,
                         time.perf_counter() - collector.started)
    paths = write_reports(result, config.getoption("verify_report"), title="pytest verify gate")
    config._verify_report_path = paths["html"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = getattr(config, "_verify_report_path", None)
    if path is not None:
        terminalreporter.write_line(f"verify report: {path}")
