"""verify.sweep.run: drawing, checking, shrinking, the `verify run` command."""
from __future__ import annotations

import concurrent.futures
import functools
import gc
import json
import multiprocessing
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch

import handimpl
from verify.cli.app import main
from verify.harness import trace
from verify.harness.trace import check
from verify.sweep import execute
from verify.sweep.run import sweep
from verify.sweep.shrink import signature

CHECK = trace


def _tanh_off_by_one_percent(spec, params, x, y, backprop=None):
    """handimpl.backprop (or ``backprop``) with δ wrong by 1% in every tanh layer."""
    out = (backprop or handimpl.backprop)(spec, params, x, y)
    for l, name in enumerate(spec.activations, start=1):
        if name == "tanh":
            out[f"delta{l}"] = out[f"delta{l}"] * 1.01
    return out


def buggy_check(spec, seed, batch, *, impl):
    return check(spec, seed, batch, impl=impl)


BUGGY = functools.partial(buggy_check, impl=_tanh_off_by_one_percent)


def _keys(result):
    return [(str(r.spec), r.seed, r.batch) for r in result.results]


def test_the_same_seed_draws_the_same_cases_and_another_seed_does_not():
    a, b, c = (sweep(examples=8, seed=s, max_depth=2, max_width=4, max_batch=4) for s in (3, 3, 4))
    assert _keys(a) == _keys(b) and _keys(a) != _keys(c)


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_two_jobs_give_the_same_results_as_one_whatever_way_the_workers_start(method, monkeypatch):
    monkeypatch.setattr(execute, "START_METHODS", (method,))
    one = sweep(examples=12, seed=1, max_depth=2, max_width=4, max_batch=4)
    two = sweep(examples=12, seed=1, max_depth=2, max_width=4, max_batch=4, jobs=2)
    assert _keys(one) == _keys(two)
    assert all(r.records for r in two.results)
    assert [repr(r.records) for r in one.results] == [repr(r.records) for r in two.results]   # nan != nan


def test_a_failure_is_shrunk_to_a_case_no_larger_that_fails_the_same_way():
    result = sweep(examples=20, seed=0, activations=["tanh", "sigmoid"], losses=["mse_loss"],
                   max_depth=3, max_width=5, max_batch=4, check_fn=BUGGY, shrink_seconds=5)
    assert result.n_failed and result.minimal
    first_failing = next(r for r in result.results if not r.passed)
    smallest = result.minimal[0]
    assert not smallest.passed and signature(smallest) in {signature(r) for r in result.results}
    assert smallest.spec.depth <= first_failing.spec.depth and smallest.batch <= 4
    assert smallest.spec.widths == (1,) * (smallest.spec.depth + 1)


def test_an_implementation_that_raises_is_recorded_as_a_failing_case_with_its_message():
    def boom(spec, seed, batch):
        raise RuntimeError("my backprop <broke>")
    result = sweep(examples=3, seed=0, max_depth=1, max_width=2, max_batch=2, check_fn=boom)
    assert result.n_failed == 3 and "my backprop <broke>" in result.results[0].error


def test_verify_run_exits_2_naming_the_valid_activations_for_an_unknown_one(tmp_path, capsys):
    code = main(["run", "--examples", "2", "--activations", "sigmoid,nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "tanh" in err and len(err.strip().splitlines()) == 1


def test_verify_run_exits_0_and_writes_the_five_files_when_everything_agrees(tmp_path, capsys):
    code = main(["run", "--examples", "6", "--max-depth", "2", "--max-width", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "all 6 cases agree" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["cases.csv", "discrepancies.csv", "report.html", "report.json", "summary.csv"]


def interrupted_after(n: int):
    """verify.harness.trace.check, with Ctrl-C arriving during call n + 1."""
    calls = []

    def interrupting(spec, seed, batch):
        if len(calls) == n:
            raise KeyboardInterrupt
        calls.append(1)
        return check(spec, seed, batch)
    return interrupting


def test_ctrl_c_during_the_checks_gives_a_partial_result_with_the_cases_done(monkeypatch):
    result = sweep(examples=10, seed=0, max_depth=1, max_width=2, max_batch=2,
                   check_fn=interrupted_after(3))
    assert result.partial and len(result.results) == 3 and not result.passed


def test_ctrl_c_makes_verify_run_write_the_partial_report_and_exit_130(monkeypatch, tmp_path):
    interrupting = interrupted_after(3)
    monkeypatch.setattr("verify.sweep.execute.default_check", lambda: interrupting)
    assert main(["run", "--examples", "10", "--max-depth", "1", "--out", str(tmp_path)]) == 130
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["partial"] and report["stopped"] == "interrupted"
    assert report["counts"]["cases"] == 3


def test_a_sweeps_records_are_those_of_checking_each_case_alone(monkeypatch):
    # the sweep compares a block's cases together (verify.harness.trace.compare_many); nothing may
    # depend on that: not failing tensors, budgets, NaN and inf included
    real_backprop = handimpl.backprop

    def sometimes_wrong(spec, params, x, y):
        out = _tanh_off_by_one_percent(spec, params, x, y, backprop=real_backprop)
        if x.sum() > 0:                                     # about half the cases
            out["a1"] = np.where(out["a1"] > 0.5, np.nan, out["a1"])
            out["dx"] = np.where(out["dx"] > 0, np.inf, out["dx"])
        return out
    monkeypatch.setattr(handimpl, "backprop", sometimes_wrong)
    groups = []
    real = CHECK.compare_many
    monkeypatch.setattr(CHECK, "compare_many", lambda runs: groups.append(len(runs)) or real(runs))
    result = sweep(examples=48, seed=11, max_depth=3, max_width=6, max_batch=5, max_shrunk=0)
    assert sum(groups) == 48 and max(groups) > 1                # compared in groups
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                   # as the sweep checks
    try:
        alone = [check(r.spec, r.seed, r.batch) for r in result.results]
    finally:
        torch.set_num_threads(threads)
    assert {r.spec.dtype for r in result.results} == {"float32", "float64"}
    assert 0 < result.n_failed < 48
    assert [repr(r.records) for r in result.results] == [repr(r.records) for r in alone]


def test_a_sweep_compares_at_most_judged_together_values_at_once(monkeypatch):
    monkeypatch.setattr("verify.sweep.execute.JUDGED_TOGETHER", 300)
    groups = []
    real = CHECK.compare_many
    monkeypatch.setattr(CHECK, "compare_many",
                        lambda runs: groups.append(sum(r.size for r in runs)) or real(runs))
    result = sweep(examples=20, seed=2, max_depth=2, max_width=8, max_batch=8, max_shrunk=0)
    assert len(result.results) == 20 and len(groups) > 1
    assert all(size < 300 + max(r.spec.depth for r in result.results) * 8 * 8 * 8 for size in groups)


def _failing_on_call(n: int, exception: BaseException, real):
    """``real`` (verify.harness.trace.trace or compare_many), raising ``exception`` on call number n + 1."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n + 1:
            raise exception
        return real(*args, **kwargs)
    return wrapped


def test_ctrl_c_inside_a_block_keeps_the_cases_of_that_block_traced_before_it(monkeypatch):
    monkeypatch.setattr(CHECK, "trace", _failing_on_call(5, KeyboardInterrupt(), CHECK.trace))
    result = sweep(examples=10, seed=0, max_depth=1, max_width=2, max_batch=2)
    assert result.stopped == "interrupted" and len(result.results) == 5
    assert all(r.passed and r.records for r in result.results)


def test_ctrl_c_while_a_block_is_compared_keeps_every_case_of_it(monkeypatch):
    monkeypatch.setattr(CHECK, "compare_many", _failing_on_call(0, KeyboardInterrupt(), CHECK.compare_many))
    result = sweep(examples=10, seed=0, max_depth=1, max_width=2, max_batch=2)
    assert result.stopped == "interrupted" and len(result.results) == 10
    assert all(r.passed and r.records for r in result.results)


def test_an_exception_while_tracing_one_case_fails_that_case_alone(monkeypatch):
    monkeypatch.setattr(CHECK, "trace", _failing_on_call(2, RuntimeError("trace broke"), CHECK.trace))
    result = sweep(examples=6, seed=0, max_depth=1, max_width=2, max_batch=2, max_shrunk=0)
    assert [r.passed for r in result.results] == [True, True, False, True, True, True]
    assert result.results[2].error == "RuntimeError: trace broke"


def test_an_exception_while_comparing_a_block_falls_back_to_comparing_each_case_alone(monkeypatch):
    # the whole-block comparison raises, then the one of the second case alone: it fails alone
    monkeypatch.setattr(CHECK, "compare_many", _failing_on_call(0, ValueError("compare broke"),
                        _failing_on_call(1, ValueError("compare broke again"), CHECK.compare_many)))
    result = sweep(examples=6, seed=0, max_depth=1, max_width=2, max_batch=2, max_shrunk=0)
    assert [r.passed for r in result.results] == [True, False, True, True, True, True]
    assert result.results[1].error == "ValueError: compare broke again"


def test_each_case_reaches_the_observers_once_even_when_an_observer_raises(monkeypatch):
    seen = []

    def observer(result):
        seen.append(result.seed)
        if len(seen) == 3:
            raise RuntimeError("observer broke")
    monkeypatch.setattr(CHECK, "OBSERVERS", [observer])
    result = sweep(examples=6, seed=0, max_depth=1, max_width=2, max_batch=2, max_shrunk=0)
    assert seen == [r.seed for r in result.results]             # once each, in order
    assert result.results[2].error == "RuntimeError: observer broke"
    assert [r.passed for r in result.results] == [True, True, False, True, True, True]


def test_a_sweep_freezes_the_objects_older_than_it_while_it_runs_and_unfreezes_them_after():
    was_frozen = gc.get_freeze_count()
    gc.unfreeze()                       # the premise: nothing frozen (a plugin or library may have)
    try:
        seen = []
        sweep(examples=2, seed=0, max_depth=1, max_width=2, max_batch=2, max_shrunk=0,
              check_fn=lambda *case: seen.append(gc.get_freeze_count()) or check(*case))
        assert seen[0] > 0 and gc.get_freeze_count() == 0
    finally:
        if was_frozen:
            gc.freeze()


def test_a_sweep_leaves_objects_the_process_froze_itself_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        sweep(examples=2, seed=0, max_depth=1, max_width=2, max_batch=2, max_shrunk=0)
        assert 0 < gc.get_freeze_count() <= frozen   # its own freeze kept (freed objects leave it)
    finally:
        gc.unfreeze()


class _BreaksWhileSending(concurrent.futures.ProcessPoolExecutor):
    """A pool whose worker dies while the blocks are being sent: its third submit finds it broken,
    as a real pool does when a worker it just started fails to start."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = 0

    def submit(self, *args, **kwargs):
        self.sent += 1
        if self.sent == 3:
            raise BrokenProcessPool("a worker died while blocks were being sent")
        return super().submit(*args, **kwargs)


def test_a_pool_that_breaks_while_its_blocks_are_sent_loses_no_case(monkeypatch):
    monkeypatch.setattr(execute.concurrent.futures, "ProcessPoolExecutor", _BreaksWhileSending)
    one = sweep(examples=200, seed=2, max_depth=2, max_width=4, max_batch=4)
    two = sweep(examples=200, seed=2, max_depth=2, max_width=4, max_batch=4, jobs=2)
    assert [repr(r.records) for r in one.results] == [repr(r.records) for r in two.results]
