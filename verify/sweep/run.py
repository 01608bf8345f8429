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

import concurrent.futures
import contextlib
import dataclasses
import gc
import hashlib
import multiprocessing
import random
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from hypothesis import HealthCheck, Phase, find, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisException, NoSuchExample

from verify.byo import isolation
from verify.byo.call import PROCESS_ENDED
from verify.byo.target import DEFAULT_IMPL
from verify.core.spec import NetSpec
from verify.harness import trace as trace_module
from verify.harness.trace import CaseResult
from verify.sweep.strategies import cases

DEFAULT_EXAMPLES = 300
DEFAULT_OUT = Path("reports") / "latest"
MAX_SHRUNK = 8              # distinct failures shrunk; further ones are listed as found
SHRINK_SECONDS = 10.0       # per distinct failure
BLOCK = 40                  # cases per block, i.e. per hypothesis example (fewer for deep specs)
CHOICES_PER_BLOCK = 1600    # choices one example comfortably holds (hypothesis stops at 8 * 1024,
                            # and caps its early examples lower: 100 cases of depth <= 32 overran)
SHRINK_SEARCH = 60          # examples hypothesis.find may generate before giving up
INTERRUPTED = "interrupted"  # SweepResult.stopped after Ctrl-C
JUDGED_TOGETHER = 200_000   # traced values compared in one call at most (about 10 float64 arrays
                            # of this size live during it; a block of small cases has ~50,000)
NOT_REPRODUCED = "did not reproduce when re-run"   # the note of a counterexample that failed once

Case = tuple[NetSpec, int, int]
CheckFn = Callable[[NetSpec, int, int], CaseResult]
Progress = Callable[[int, int, int], None]     # (cases done, total, failing so far)


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
    """
    results: tuple[CaseResult, ...]
    minimal: tuple[CaseResult, ...] = ()
    settings: dict = field(default_factory=dict)
    partial: bool = False
    wall_time: float = 0.0
    stopped: str = ""
    expected: tuple[bool, ...] = ()
    total_time: float = 0.0

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


# -- 1. draw -----------------------------------------------------------------------------------

def draw_cases(strategy, n: int, seed: int) -> list[Case]:
    """``n`` cases hypothesis draws from ``strategy`` under ``seed``, all in one example.

    One example holding a list of n cases, not n examples of one: the engine's cost per example
    (saving and restoring the global random states, its choice tree) is paid once, and across
    examples its generator leans to the simplest inputs and copies parts of one example into
    the next, while the cases of one list are independent draws from ``strategy``. Hypothesis's
    first example is always its simplest, so the example offers st.just(None) first, which
    takes it, and the second is the list. A list that does
    not fit in one example (hypothesis caps the choices one may make) is drawn in two halves.
    """
    if n == 0:
        return []
    drawn: list[Case] = []

    @hypothesis_seed(seed)
    @hsettings(database=None, max_examples=2, phases=[Phase.generate], deadline=None,
               suppress_health_check=list(HealthCheck), derandomize=False)
    @given(st.one_of(st.just(None), st.lists(strategy, min_size=n, max_size=n)))
    def record(example):
        if example is not None and not drawn:
            drawn.extend(example)

    # No example database, so no key for it: as hypothesis.find does. Otherwise each call
    # derives one from the function's source (inspect.getsource, tokenize).
    record._hypothesis_internal_database_key = None
    record()
    if drawn:
        return drawn
    if n == 1:
        raise RuntimeError(f"hypothesis drew no case from {strategy!r} under seed {seed}")
    return draw_cases(strategy, n // 2, _derived(seed, "a")) + \
        draw_cases(strategy, n - n // 2, _derived(seed, "b"))


def _derived(seed: int, *path: Any) -> int:
    """A 32-bit hypothesis seed derived from ``seed`` and ``path``."""
    text = "/".join(map(str, ("verify-run", seed, *path)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def blocks(strategy_args: dict, n: int, seed: int) -> list[tuple[int, int]]:
    """(hypothesis seed, number of cases) of each block the N cases are drawn in.

    Blocks hold about BLOCK cases (fewer when deep specs make cases long), and their number is
    rounded up to a multiple of 8 where blocks keep 16 cases or more, so that 2, 4 or 8 worker
    processes get equal shares. The split depends only on N, the sweep seed and the strategy's
    max_depth, never on --jobs, so worker processes can each draw whole blocks themselves and the output
    stays that of a single process.
    """
    max_depth = strategy_args.get("max_depth", 5)          # net_specs's default
    size = max(1, min(BLOCK, CHOICES_PER_BLOCK // (2 * max_depth + 14)))
    k = max(1, -(-n // size))
    k8 = -(-k // 8) * 8
    if n // k8 >= 16:
        k = k8
    sizes = [n // k + (b < n % k) for b in range(k)]
    return [(_derived(seed, b), size) for b, size in enumerate(sizes) if size]


def draw_block(strategy, block: tuple[int, int]) -> list[Case]:
    block_seed, size = block
    return draw_cases(strategy, size, block_seed)


def iter_blocks(strategy_args: dict, n: int, seed: int) -> Iterator[list[Case]]:
    """The N cases of a sweep, block after block (what ``sweep`` checks, in case_id order),
    each block drawn when reached."""
    strategy = cases(**strategy_args)
    for block in blocks(strategy_args, n, seed):
        yield draw_block(strategy, block)


def draw_all(strategy_args: dict, n: int, seed: int) -> list[Case]:
    """All N cases of a sweep, drawn up front."""
    return [case for block in iter_blocks(strategy_args, n, seed) for case in block]


# -- 2. check ----------------------------------------------------------------------------------

def default_check() -> CheckFn:
    """verify.harness.trace.check, looked up at call time."""
    return trace_module.check


def run_case(check_fn: CheckFn | None, spec: NetSpec, seed: int, batch: int) -> CaseResult:
    """check_fn(spec, seed, batch); an exception becomes a failing CaseResult carrying its text."""
    try:
        return (check_fn or default_check())(spec, seed, batch)
    except Exception as e:     # a user implementation may raise anything
        return _raised(spec, seed, batch, e, impl_of(check_fn))


def impl_of(check_fn: CheckFn | None) -> str:
    """The TARGET of the implementation ``check_fn`` checks: its ``impl_name`` attribute
    (a functools.partial takes one), else handimpl's."""
    return getattr(check_fn, "impl_name", DEFAULT_IMPL)


def _raised(spec: NetSpec, seed: int, batch: int, e: BaseException | str, impl: str = DEFAULT_IMPL) -> CaseResult:
    return CaseResult(spec, seed, batch, (), error=e if isinstance(e, str) else isolation.exception_text(e),
                      impl=impl)


def run_block(check_fn: CheckFn | None, block: list[Case]) -> Iterator[CaseResult]:
    """run_case of each case of a block, in order.

    With verify.check itself as the check, the cases are traced one by one (verify.harness.trace.trace)
    and compared in groups of up to JUDGED_TOGETHER traced values (verify.harness.trace.compare_many:
    the same records as checking each case alone, with the comparison's per-call cost shared
    by the group, and its memory bounded). Each result reaches verify.check's observers once,
    just before it is given. A Ctrl-C keeps every case traced before it: they are judged and
    given, then the interrupt goes on. An exception, as in run_case, fails the case it came
    from."""
    checking = trace_module
    if check_fn is not None or default_check() is not checking.check:
        for case in block:
            yield run_case(check_fn, *case)
        return
    group: list = []
    size = 0
    for case in block:
        try:
            run = checking.trace(*case)
        except KeyboardInterrupt:
            yield from _judge_group(checking, group)
            raise
        except Exception as e:          # noqa: BLE001 - as run_case; the cases before it first
            yield from _judge_group(checking, group)
            group, size = [], 0
            yield _raised(*case, e, impl_of(check_fn))
            continue
        group.append(run)
        size += run.size
        if size >= JUDGED_TOGETHER:
            yield from _judge_group(checking, group)
            group, size = [], 0
    yield from _judge_group(checking, group)


def _judge_group(checking, runs: list) -> Iterator[CaseResult]:
    """The CaseResult of each traced run: compared together, or each alone where that raises
    (the run whose comparison raises fails with its text) or is interrupted (the interrupt is
    raised again once every run is given)."""
    interrupted = False
    try:
        compared = checking.compare_many(runs)
    except KeyboardInterrupt:
        compared, interrupted = None, True
    except Exception:                   # noqa: BLE001 - each alone below
        compared = None
    for i, run in enumerate(runs):
        try:
            records = compared[i] if compared is not None else checking.compare_many([run])[0]
            result = checking.result_of(run, records)
        except Exception as e:          # noqa: BLE001 - as run_case
            result = _raised(run.spec, run.seed, run.batch, e, run.impl)
        yield result
    if interrupted:
        raise KeyboardInterrupt


_worker: dict = {}


def _init_worker(check_fn: CheckFn | None, strategy_args: dict, forward: bool) -> None:
    """A worker process: one thread, Ctrl-C left to the parent, and (when the parent has
    observers of verify.check, the pytest plugin say) every check's result kept for the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C
    torch.set_num_threads(1)
    forwarded: list[CaseResult] = []
    trace_module.OBSERVERS[:] = [forwarded.append] if forward else []
    _worker.update(check=check_fn, strategy=cases(**strategy_args), forwarded=forwarded)


def _run_block(block: tuple[int, int]) -> tuple[list[CaseResult], list[CaseResult]]:
    """Draw one block in this worker process and check its cases. Returns (results, the
    results its checks passed to verify.check's observers, for the parent's observers).
    Anything that escapes (a BaseException) is raised as _BlockLost, which the parent answers
    as it does a dead worker: it never mistakes a KeyboardInterrupt from here for its own."""
    try:
        results = list(run_block(_worker["check"], draw_block(_worker["strategy"], block)))
    except BaseException as e:          # noqa: BLE001
        raise _BlockLost(isolation.exception_text(e)) from None
    forwarded = list(_worker["forwarded"])
    _worker["forwarded"].clear()
    return results, forwarded


class _BlockLost(Exception):
    """A block's check ended with an exception that escaped every case (its text)."""


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _iter_results(strategy_args: dict, n: int, seed: int, check_fn: CheckFn | None, jobs: int):
    """Every case's result, in case_id order. With jobs > 1 each worker process draws and
    checks whole blocks, so drawing is spread over the processes too; what its checks passed
    to verify.check's observers is passed to this process's observers, block by block.

    A worker that dies (user code that calls os._exit, or is killed) breaks the pool: the
    block it was checking is checked again case by case in a child process, a fresh child
    taking over after a case that ends one (verify.byo.isolation.run_forked_each), so that the case
    that ended its process fails with how it ended and the others keep their results; a fresh
    pool then takes the blocks after it. A block whose worker raised past every case is
    treated the same way."""
    if jobs <= 1:
        for block in iter_blocks(strategy_args, n, seed):
            yield from run_block(check_fn, block)
        return
    observed = trace_module
    todo = blocks(strategy_args, n, seed)
    done = 0
    while done < len(todo):
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=_pool_context(), initializer=_init_worker,
            initargs=(check_fn, strategy_args, bool(observed.OBSERVERS)))
        try:
            futures = [pool.submit(_run_block, block) for block in todo[done:]]
            for future in futures:
                try:
                    results, forwarded = future.result()
                except (BrokenProcessPool, _BlockLost):
                    break
                for result in forwarded:
                    observed.notify(result)
                yield from results
                done += 1
        finally:
            _stop(pool)
        if done < len(todo):
            yield from _run_block_forked(check_fn, draw_block(cases(**strategy_args), todo[done]),
                                         observed)
            done += 1


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting for work in progress: its workers are killed."""
    processes = list((getattr(pool, "_processes", None) or {}).values())   # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)


def _case_in_child(check_fn: CheckFn | None, case: Case, forward: bool):
    forwarded: list[CaseResult] = []
    trace_module.OBSERVERS[:] = [forwarded.append] if forward else []
    return run_case(check_fn, *case), forwarded


def _run_block_forked(check_fn: CheckFn | None, block: list[Case], observed) -> Iterator[CaseResult]:
    """run_case of each case of a block, in child processes (verify.byo.isolation.run_forked_each);
    a case whose process ended without a result fails with how it ended (PROCESS_ENDED)."""
    forward = bool(observed.OBSERVERS)
    outcomes = isolation.run_forked_each(lambda case: _case_in_child(check_fn, case, forward), block)
    for case, outcome in zip(block, outcomes):
        if outcome.ok:
            result, forwarded = outcome.value
            for r in forwarded:
                observed.notify(r)
            yield result
        elif outcome.ended:
            yield _raised(*case, f"{PROCESS_ENDED}: the implementation ended the process ({outcome.ended})",
                          impl_of(check_fn))
        else:
            yield _raised(*case, outcome.raised, impl_of(check_fn))


def run_cases(strategy_args: dict, n: int, seed: int, check_fn: CheckFn | None = None, jobs: int = 1,
              progress: Progress | None = None) -> tuple[list[CaseResult], str]:
    """Draw and check the sweep's cases in order. Returns (results, stopped): Ctrl-C, or a
    case whose implementation ran past its time limit, stops early (``stopped`` says which),
    keeping the results so far."""
    results: list[CaseResult] = []
    failed = 0
    try:
        for result in _iter_results(strategy_args, n, seed, check_fn, jobs):
            results.append(result)
            failed += not result.passed
            if progress:
                progress(len(results), n, failed)
            if result.timed_out:
                return results, f"case {len(results) - 1} ran past the time limit"
    except KeyboardInterrupt:
        return results, INTERRUPTED
    return results, ""


# -- 3. shrink ---------------------------------------------------------------------------------

def signature(result: CaseResult) -> tuple | None:
    """What makes two failures the same root cause; None for a passing case.

    The root cause's quantity, its layer's role (output or hidden), that layer's activation,
    the loss, the dtype, and whether it sits on a kink; an exception: its type; a problem with
    the call: the key and the problem's kind. Failures that differ in any of these are
    distinct, even when one formula looks shared (f′ of two activations is two places to look).
    """
    if result.passed:
        return None
    if result.error:
        return ("error", result.error.split(":", 1)[0])
    r = result.first_divergence or next(r for r in result.records if not r.passed)
    spec = result.spec
    if r.quantity == "":                 # a record about the call itself (verify.byo.call)
        return ("call", r.name, r.problem.split(":", 1)[0])
    layer = spec.depth if r.quantity == "loss" else r.layer
    role = None if layer is None else ("output" if layer == spec.depth else "hidden")
    activation = None if layer is None else spec.activations[layer - 1]
    return (r.quantity, role, activation, spec.loss, spec.dtype, r.at_kink)


def size_key(result: CaseResult) -> tuple:
    """Smaller is simpler: depth, total width, batch, then the spec text and seed."""
    s = result.spec
    return (s.depth, sum(s.widths), result.batch, len(str(s)), str(s), result.seed)


def _neighbourhood(spec: NetSpec, batch: int):
    """Cases no larger than (spec, batch), with its loss, dtype and activations."""
    acts = list(dict.fromkeys(spec.activations))
    return cases(max_batch=batch, max_depth=spec.depth, max_width=max(spec.widths),
                 activations=acts, losses=[spec.loss], dtypes=[spec.dtype])


class _OutOfTime(Exception):
    pass


@contextlib.contextmanager
def _unobserved():
    """verify.harness.trace's observers left out while shrinking: the cases a time-limited search
    happens to try are not checks the caller asked for (the pytest gate would record a
    different number of them on every run)."""
    observers = trace_module.OBSERVERS
    saved = observers[:]
    observers.clear()
    try:
        yield
    finally:
        observers[:] = saved


def shrink(found: CaseResult, check_fn: CheckFn | None = None, *,
           seconds: float = SHRINK_SECONDS, search: int = SHRINK_SEARCH) -> CaseResult:
    """A minimal case failing with ``found``'s signature, by hypothesis.find (seeded, no
    database); ``found`` itself when nothing smaller turns up in time. A failure that does not
    repeat (``found`` run again fails otherwise, or hypothesis finds its failure flaky) keeps
    ``found``, noted NOT_REPRODUCED."""
    target = signature(found)
    deadline = time.monotonic() + seconds
    with _unobserved():
        again = run_case(check_fn, found.spec, found.seed, found.batch)
    if signature(again) != target:
        return dataclasses.replace(found, note=NOT_REPRODUCED)
    best = [found]

    def same_failure(case: Case) -> bool:
        if time.monotonic() > deadline:
            raise _OutOfTime
        result = run_case(check_fn, *case)
        if signature(result) != target:
            return False
        if size_key(result) < size_key(best[0]):
            best[0] = result
        return True

    opts = hsettings(database=None, max_examples=search, deadline=None,
                     phases=[Phase.generate, Phase.shrink])
    with _unobserved():
        try:
            find(_neighbourhood(found.spec, found.batch), same_failure, settings=opts,
                 random=random.Random(0))
        except Flaky:
            return dataclasses.replace(found, note=NOT_REPRODUCED)
        except (NoSuchExample, _OutOfTime, HypothesisException):
            pass
    return best[0]


def _shrink_forked(found: CaseResult, check_fn: CheckFn | None, seconds: float) -> CaseResult:
    """shrink in a child process (for an implementation that has ended processes); ``found``
    itself if the child ends without a result."""
    outcome = isolation.run_forked(shrink, (found, check_fn), deadlines=(2 * seconds + 10,)) \
        if isolation.AVAILABLE else isolation.Outcome(ended="no fork")
    return outcome.value if outcome.ok else found


def distinct_failures(results: Iterable[CaseResult]) -> list[CaseResult]:
    """The smallest failing case of each signature, in order of first appearance."""
    groups: dict[tuple, CaseResult] = {}
    for r in results:
        sig = signature(r)
        if sig is not None and (sig not in groups or size_key(r) < size_key(groups[sig])):
            groups[sig] = r
    return list(groups.values())


def shrink_failures(results: Sequence[CaseResult], check_fn: CheckFn | None = None, *,
                    max_shrunk: int = MAX_SHRUNK, seconds: float = SHRINK_SECONDS
                    ) -> tuple[list[CaseResult], bool]:
    """One minimal counterexample per distinct failure (the first ``max_shrunk`` shrunk),
    smallest first. Returns (minimal, interrupted)."""
    minimal: list[CaseResult] = []
    failures = distinct_failures(results)
    ended = any(r.error.startswith(PROCESS_ENDED) for r in results)
    try:
        for i, found in enumerate(failures):
            if i >= max_shrunk or found.error.startswith(PROCESS_ENDED):
                minimal.append(found)
            elif ended:               # its calls could end this process too: shrink in a child
                minimal.append(_shrink_forked(found, check_fn, seconds))
            else:
                minimal.append(shrink(found, check_fn, seconds=seconds))
    except KeyboardInterrupt:
        minimal += failures[len(minimal):]
        return sorted(minimal, key=size_key), True
    return sorted(minimal, key=size_key), False


# -- the whole sweep ---------------------------------------------------------------------------

def sweep(*, examples: int | None = None, seed: int = 0, activations: Sequence[str] | None = None,
          losses: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
          max_depth: int = 4, max_width: int = 16, max_batch: int = 16, jobs: int = 1,
          check_fn: CheckFn | None = None, progress: Progress | None = None,
          max_shrunk: int = MAX_SHRUNK, shrink_seconds: float = SHRINK_SECONDS) -> SweepResult:
    """Draw ``examples`` cases (DEFAULT_EXAMPLES if None), check each, shrink the failures.

    Raises ValueError (from verify.sweep.strategies) for unknown names or impossible bounds.
    ``check_fn(spec, seed, batch) -> CaseResult`` defaults to verify.harness.trace.check; with
    jobs > 1 it must be picklable. ``progress(done, total, failing)`` is called per case.
    """
    n = DEFAULT_EXAMPLES if examples is None else examples
    strategy_args = dict(max_batch=max_batch, max_depth=max_depth, max_width=max_width,
                         activations=activations, losses=losses, dtypes=dtypes)
    cases(**strategy_args)              # validate the names and bounds before anything runs
    settings = {"examples": n, "seed": seed, "activations": _names(activations),
                "losses": _names(losses), "dtypes": _names(dtypes), "max_depth": max_depth,
                "max_width": max_width, "max_batch": max_batch, "jobs": jobs,
                "check_fn": _describe(check_fn), "impl": impl_of(check_fn)}
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # small nets: threads only cost, and results stay job-independent
    try:
        with _old_objects_frozen():
            results, stopped = run_cases(strategy_args, n, seed, check_fn, jobs, progress)
            minimal: list[CaseResult] = distinct_failures(results)
            if not stopped and max_shrunk:
                minimal, interrupted = shrink_failures(results, check_fn, max_shrunk=max_shrunk,
                                                       seconds=shrink_seconds)
                stopped = INTERRUPTED if interrupted else ""
    finally:
        torch.set_num_threads(threads)
    return SweepResult(tuple(results), tuple(sorted(minimal, key=size_key)), settings,
                       bool(stopped), time.perf_counter() - start, stopped)


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
