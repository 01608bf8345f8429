"""`verify run`: a hypothesis-driven sweep over random cases, every record kept.

Three steps, each deterministic for a given seed:

1. *draw* -- hypothesis draws N cases (spec, data seed, batch) from
   verify.sweep.strategies.cases, the strategy the tests use (no database, generate
   phase only), in blocks: each block is one hypothesis example holding a list
   of cases, drawn under a seed derived from the sweep seed (see draw_cases);
2. *check* -- each case runs through ``check_fn`` (verify.check by default),
   in this process, or spread over ``jobs`` worker processes that each draw
   and check whole blocks; results come back in case order, so the output does
   not depend on ``jobs``;
3. *shrink* -- failing cases are grouped by a failure signature (where the
   bug most likely lives, see ``signature``); for each group hypothesis.find
   searches the neighbourhood of the first failing case (same loss and dtype,
   its activations, no larger) for the same signature and shrinks it to a
   minimal counterexample.
"""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from verify.core.torch_ops import one_thread
from verify.harness.trace import CaseResult
from verify.sweep.execute import INTERRUPTED, CheckFn, OnResult, Progress, impl_of, run_cases
from verify.sweep.shrink import MAX_SHRUNK, SHRINK_SECONDS, distinct_failures, shrink_failures, size_key
from verify.sweep.strategies import cases

# How a SweepResult shows itself in a notebook (SweepResult._repr_html_): installed by
# verify.report.notebook, which the verify package imports; None: the plain repr only.
HTML_SUMMARY: Callable[["SweepResult"], str] | None = None

DEFAULT_EXAMPLES = 300
DEFAULT_OUT = Path("reports") / "latest"


@dataclass(frozen=True)
class SweepResult:
    """Everything one sweep produced.

    results : every checked case, in case_id order.
    minimal : one minimal counterexample per distinct failure, smallest first.
    settings : what the sweep was asked to do (JSON-able).
    partial : True when the sweep ended before its last case (or before shrinking).
    wall_time : seconds, draw to shrink.
    stopped : why it ended early: INTERRUPTED (Ctrl-C), or the case whose implementation
        ran past its time limit (a hanging implementation would hang every case); "" if not.
    expected : per result, whether its failure was expected: the pytest gate marks the checks
        made by tests that passed (a test asserting that a planted bug is caught); a failing
        check counts as a failure only where it is not expected. Empty: none expected.
    total_time : seconds of the whole command, imports and reports included (0: not measured).
    checked : the number of cases checked, where ``results`` holds only the failing ones (a
        streamed sweep, whose passing results went to ``sweep(on_result=...)``); None: every
        result is in ``results``.
    ids : the case id of each result in ``results`` (empty: their positions).
    blocks_retried, blocks_lost : with a Dask scheduler, the blocks rescheduled after a worker
        died, and those lost for good (their cases are failing results saying so).
    """
    results: tuple[CaseResult, ...]
    minimal: tuple[CaseResult, ...] = ()
    settings: dict = field(default_factory=dict)
    partial: bool = False
    wall_time: float = 0.0
    stopped: str = ""
    expected: tuple[bool, ...] = ()
    total_time: float = 0.0
    checked: int | None = None
    ids: tuple[int, ...] = ()
    blocks_retried: tuple[int, ...] = ()
    blocks_lost: tuple[int, ...] = ()

    @property
    def n_cases(self) -> int:
        """How many cases were checked."""
        return len(self.results) if self.checked is None else self.checked

    @property
    def case_ids(self) -> Sequence[int]:
        """The case id of each result in ``results``."""
        return self.ids or range(len(self.results))

    def is_expected(self, i: int) -> bool:
        return i < len(self.expected) and self.expected[i]

    @property
    def failures(self) -> list[CaseResult]:
        """The failing results that count (not expected), in order."""
        return [r for i, r in enumerate(self.results) if not r.passed and not self.is_expected(i)]

    @property
    def expected_failures(self) -> list[CaseResult]:
        """The failing results of passing tests (expected), in order."""
        return [r for i, r in enumerate(self.results) if not r.passed and self.is_expected(i)]

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def passed(self) -> bool:
        return not self.partial and self.n_failed == 0

    def _repr_html_(self) -> str | None:
        """A notebook's view: the verdict, the counts, a card per distinct failure."""
        return None if HTML_SUMMARY is None else HTML_SUMMARY(self)


def sweep(*, examples: int | None = None, seed: int = 0, activations: Sequence[str] | None = None,
          losses: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
          max_depth: int = 4, max_width: int = 16, max_batch: int = 16, jobs: int = 1,
          check_fn: CheckFn | None = None, progress: Progress | None = None,
          max_shrunk: int = MAX_SHRUNK, shrink_seconds: float = SHRINK_SECONDS,
          architectures: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
          layers: Sequence[str] | None = None,
          on_result: OnResult | None = None, scheduler: str | None = None,
          referee: Callable[[CaseResult], CaseResult] | None = None, referee_all: bool = False,
          optimizers: Sequence[str] | None = None) -> SweepResult:
    """Draw ``examples`` cases (DEFAULT_EXAMPLES if None), check each, shrink the failures.

    Raises ValueError (from verify.sweep.strategies) for unknown names or impossible bounds.
    ``check_fn(spec, seed, batch) -> CaseResult`` defaults to verify.harness.trace.check; with
    jobs > 1 it must be picklable. ``progress(done, total, failing)`` is called per case.
    ``on_result(case_id, result)``, if given, takes every result in case order (a report
    written as the sweep goes, verify.report.stream), and the SweepResult keeps only the failing
    ones (SweepResult.checked, .ids). ``scheduler`` ('local:N' or 'tcp://HOST:PORT') sends the
    blocks of cases to a Dask cluster (verify.sweep.distributed; ValueError where dask is not
    installed); the results are those of one process.
    ``referee`` (verify.harness.referee.referee_case for the implementation checked): applied to
    each minimal counterexample and to the sweep's own smallest case of each distinct failure, or,
    with ``referee_all``, to every case (the finite-difference referee, docs/verdict.md).
    ``optimizers`` (names of handimpl.optim.OPTIMIZERS): each case also draws one of them and its
    hyperparameters, and is checked by ``check_fn(spec, seed, batch, optimizer)``, which must then
    be given (verify.train.sweep.check_trained: the case's training against torch.optim).
    """
    n = DEFAULT_EXAMPLES if examples is None else examples
    strategy_args = dict(max_batch=max_batch, max_depth=max_depth, max_width=max_width,
                         activations=activations, losses=losses, dtypes=dtypes)
    if architectures is not None and tuple(architectures) != ("dense",):
        strategy_args["architectures"] = tuple(architectures)     # (dense alone: the draws as ever)
    if kinds:
        strategy_args["kinds"] = tuple(kinds)
    if layers is not None:              # the optional layer kinds a stack may hold
        strategy_args["layers"] = tuple(layers)
    if optimizers is not None:
        if check_fn is None:
            raise ValueError("optimizers need a check_fn(spec, seed, batch, optimizer), e.g. "
                             "verify.train.sweep.check_trained")
        strategy_args["optimizers"] = tuple(optimizers)
    cases(**strategy_args)              # validate the names and bounds before anything runs
    if scheduler:
        from verify.sweep.distributed import check_scheduler
        check_scheduler(scheduler)
    settings = {"examples": n, "seed": seed, "activations": _names(activations),
                "losses": _names(losses), "dtypes": _names(dtypes), "max_depth": max_depth,
                "max_width": max_width, "max_batch": max_batch, "jobs": jobs,
                "check_fn": _describe(check_fn), "impl": impl_of(check_fn),
                "strict": bool(getattr(check_fn, "keywords", {}).get("strict", False))}
    if "layers" in strategy_args:
        settings["layers"] = list(strategy_args["layers"])
    if "architectures" in strategy_args:
        settings["architectures"] = list(strategy_args["architectures"])
    if optimizers is not None:
        settings["optimizers"] = list(optimizers)
    if scheduler:
        settings["scheduler"] = scheduler
    events: dict = {}
    if referee is not None:
        settings["referee"] = "fd-all" if referee_all else "fd"
    start = time.perf_counter()
    with one_thread(), _old_objects_frozen():   # one thread: results stay job-independent
        results, ids, checked, stopped = run_cases(strategy_args, n, seed, check_fn, jobs, progress,
                                                   on_result, scheduler, events)
        minimal: list[CaseResult] = distinct_failures(results)
        if not stopped and max_shrunk:
            minimal, interrupted = shrink_failures(results, check_fn, max_shrunk=max_shrunk,
                                                   seconds=shrink_seconds)
            stopped = INTERRUPTED if interrupted else ""
        if referee is not None and not stopped:
            results, minimal, stopped = _refereed(referee, referee_all, results, minimal)
    streamed = on_result is not None
    return SweepResult(tuple(results), tuple(sorted(minimal, key=size_key)), settings,
                       bool(stopped), time.perf_counter() - start, stopped,
                       checked=checked if streamed else None, ids=tuple(ids) if streamed else (),
                       blocks_retried=tuple(b for b in events.get("retried", ()) if b not in events.get("lost", ())),
                       blocks_lost=tuple(events.get("lost", ())))


def _refereed(referee: Callable[[CaseResult], CaseResult], every: bool, results: list[CaseResult],
              minimal: list[CaseResult]) -> tuple[list[CaseResult], list[CaseResult], str]:
    """The referee's opinion added to the minimal counterexamples and to the sweep's smallest case
    of each distinct failure (``every``: to every case); a Ctrl-C keeps what was judged."""
    originals = {id(r) for r in distinct_failures(results)}
    results, minimal = list(results), list(minimal)
    judged: dict[int, CaseResult] = {}      # a minimal counterexample may be one of the results

    def judge(r: CaseResult) -> CaseResult:
        if id(r) not in judged:
            judged[id(r)] = referee(r)
        return judged[id(r)]
    try:
        for i, r in enumerate(results):
            if every or id(r) in originals:
                results[i] = judge(r)
        for i, m in enumerate(minimal):
            minimal[i] = judge(m)
    except KeyboardInterrupt:
        return results, minimal, INTERRUPTED
    return results, minimal, ""


@contextlib.contextmanager
def _old_objects_frozen():
    """What exists before the sweep (the modules of torch, hypothesis, numpy, pandas) left out
    of garbage collection until it ends, so that the full collections a sweep that allocates
    steadily triggers do not walk them. Nothing is
    frozen, or unfrozen, where the process already froze objects of its own (gc.freeze)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _names(names: Sequence[str] | None) -> list[str] | str:
    return "all" if names is None else list(names)


def _describe(check_fn: Any) -> str:
    if check_fn is None:
        return "verify.harness.trace.check"
    f = getattr(check_fn, "func", check_fn)
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__name__)}"
