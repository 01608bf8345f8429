"""The check: each case through ``check_fn`` (verify.check by default), in this process or in
worker processes that each draw and check whole blocks; results come back in case order."""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator

import torch

from verify import meta
from verify.byo import isolation
from verify.byo.call import PROCESS_ENDED
from verify.byo.guard import guarded
from verify.byo.target import DEFAULT_IMPL, USER_MODULE_PREFIX
from verify.core.spec import NetSpec
from verify.harness import trace as trace_module
from verify.harness.trace import CaseResult
from verify.sweep.draw import Case, blocks, draw_block, iter_blocks
from verify.sweep.strategies import cases

INTERRUPTED = "interrupted"  # SweepResult.stopped after Ctrl-C
JUDGED_TOGETHER = 200_000   # traced values compared in one call at most (about 10 float64 arrays
                            # of this size live during it; a block of small cases has ~50,000)
IN_FLIGHT_PER_JOB = 3      # blocks sent ahead per worker process: the results waiting for this process
                            # to take them stay bounded however many blocks a sweep has
CheckFn = Callable[..., CaseResult]   # (spec, seed, batch) -> result; with optimizers drawn, (..., optimizer)
Progress = Callable[[int, int, int], None]     # (cases done, total, failing so far)


def default_check() -> CheckFn:
    """verify.harness.trace.check, looked up at call time."""
    return trace_module.check


def run_case(check_fn: CheckFn | None, spec: NetSpec, seed: int, batch: int, *optimizer) -> CaseResult:
    """check_fn(spec, seed, batch) (a case drawn with optimizers: check_fn(spec, seed, batch,
    optimizer)); an exception becomes a failing CaseResult carrying its text."""
    try:
        return (check_fn or default_check())(spec, seed, batch, *optimizer)
    except Exception as e:     # a user implementation may raise anything
        return _raised((spec, seed, batch, *optimizer), e, impl_of(check_fn))


def impl_of(check_fn: CheckFn | None) -> str:
    """The TARGET of the implementation ``check_fn`` checks: its ``impl_name`` attribute
    (a functools.partial takes one), else handimpl's."""
    return getattr(check_fn, "impl_name", DEFAULT_IMPL)


def _raised(case: Case, e: BaseException | str, impl: str = DEFAULT_IMPL) -> CaseResult:
    """The failing result of a case whose check raised ``e`` (or ended with the text ``e``)."""
    spec, seed, batch, *optimizer = case
    return CaseResult(spec, seed, batch, (), error=e if isinstance(e, str) else isolation.exception_text(e),
                      impl=impl, optimizer=str(optimizer[0]) if optimizer else "")


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
    options = _check_options(check_fn)
    if options is None or default_check() is not checking.check:
        for case in block:
            yield run_case(check_fn, *case)
        return
    group: list = []
    size = 0
    for case in block:
        try:
            run = checking.trace(*case, **options)
        except KeyboardInterrupt:
            yield from _judge_group(checking, group)
            raise
        except Exception as e:          # noqa: BLE001 - as run_case; the cases before it first
            yield from _judge_group(checking, group)
            group, size = [], 0
            yield _raised(case, e, impl_of(check_fn))
            continue
        group.append(run)
        size += run.size
        if size >= JUDGED_TOGETHER:
            yield from _judge_group(checking, group)
            group, size = [], 0
    yield from _judge_group(checking, group)


def _check_options(check_fn: CheckFn | None) -> dict | None:
    """The keyword options of a check that is verify.check itself (None: with none; a
    functools.partial of it with keywords only, such as strict=True), traced and judged in
    groups by run_block; None for any other check function."""
    if check_fn is None:
        return {}
    if isinstance(check_fn, functools.partial) and check_fn.func is trace_module.check and not check_fn.args \
            and set(check_fn.keywords) <= {"strict"}:
        return dict(check_fn.keywords)
    return None


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
            result = _raised((run.spec, run.seed, run.batch), e, run.impl)
        yield result
    if interrupted:
        raise KeyboardInterrupt


_worker: dict = {}


def _init_worker(check_fn: CheckFn | None, strategy_args: dict, forward: bool, parent: int) -> None:
    """A worker process: one thread, Ctrl-C left to the parent, ended soon after the parent
    process ends (whatever ends it: SIGKILL leaves no chance to stop the pool), and (when the
    parent has observers of verify.check, the pytest plugin say) every check's result kept for
    the parent."""
    isolation.end_with_parent(parent)
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


# How worker processes start: the first of these the platform has that can take the sweep.
# A fork server by default: the workers are forked from a process that has imported verify and
# nothing else (preloaded once, so a worker starts in milliseconds, the server in about as long as
# importing torch), never from this one, which runs threads by then (OpenBLAS's, torch's, a user's):
# fork() of a multi-threaded process can leave the child holding a lock no thread will release,
# and Python 3.12 warns of it (Python 3.14 makes the fork server the default). It and spawn need
# the check function to go to the worker by reference (an importable module and name: _sendable)
# and a main module that a worker may import again; otherwise fork, which copies this process.
# Every method gives the same results, as nothing a worker uses is inherited state: the check
# function and the strategy's arguments are sent to it (_init_worker).
START_METHODS = ("forkserver", "spawn", "fork")
_PRELOAD = ("verify.sweep.execute",)


def _pool_context(check_fn: CheckFn | None):
    available = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]
    sendable = _sendable(check_fn)
    method = next((m for m in available if m == "fork" or sendable), available[0])
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        module = getattr(getattr(check_fn, "func", None), "__module__", None)
        own = [module] if isinstance(module, str) and module.startswith("verify.") else []
        context.set_forkserver_preload([*_PRELOAD, *own])       # once the server runs, ignored
    return context


def _sendable(check_fn: CheckFn | None) -> bool:
    """Whether a worker that did not fork from this process can run ``check_fn``: it is made of
    plain values and of functions it can import by name, and importing this process's main
    module again there (multiprocessing does, for anything defined in it) runs nothing."""
    if not _main_module_importable():
        return False
    _, e = guarded(lambda: _by_reference(check_fn) or _not_by_reference())
    return e is None


class _NotByReference(Exception):
    pass


def _not_by_reference():
    raise _NotByReference


def _by_reference(value) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return True
    if isinstance(value, functools.partial):
        return all(map(_by_reference, (value.func, *value.args, *value.keywords.values())))
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if type(module) is not str or type(qualname) is not str or module == "__main__" \
            or module.startswith(USER_MODULE_PREFIX):
        return False
    found = sys.modules.get(module)
    if found is None or getattr(found, "__spec__", None) is None:
        return False
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is value


def _main_module_importable() -> bool:
    """Whether multiprocessing can import this process's main module in a worker without running
    anything: none (python -c, an interpreter), a package's __main__ (python -m pkg: skipped), or
    the verify command's launcher (verify.meta.COMMAND)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name:
        return name == "__main__" or name.endswith(".__main__")
    return getattr(main, "__file__", None) is None or meta.COMMAND


def _iter_results(strategy_args: dict, n: int, seed: int, check_fn: CheckFn | None, jobs: int,
                  scheduler: str | None = None, events: dict | None = None):
    """Every case's result, in case_id order. With jobs > 1 each worker process draws and
    checks whole blocks (a few ahead, IN_FLIGHT_PER_JOB each), so drawing is spread over the
    processes too; what its checks passed
    to verify.check's observers is passed to this process's observers, block by block.

    A worker that dies (user code that calls os._exit, or is killed) breaks the pool: the
    block it was checking is checked again case by case in a child process, a fresh child
    taking over after a case that ends one (verify.byo.isolation.run_forked_each), so that the case
    that ended its process fails with how it ended and the others keep their results; a fresh
    pool then takes the blocks after it. A block whose worker raised past every case is
    treated the same way."""
    if scheduler:                       # a Dask cluster (verify.sweep.distributed), imported when asked for
        from verify.sweep import distributed
        yield from distributed.iter_results(strategy_args, blocks(strategy_args, n, seed), check_fn, scheduler,
                                            {} if events is None else events,
                                            lambda case, text: _raised(case, text, impl_of(check_fn)))
        return
    if jobs <= 1:
        for block in iter_blocks(strategy_args, n, seed):
            yield from run_block(check_fn, block)
        return
    observed = trace_module
    todo = blocks(strategy_args, n, seed)
    done = 0
    while done < len(todo):
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=_pool_context(check_fn), initializer=_init_worker,
            initargs=(check_fn, strategy_args, bool(observed.OBSERVERS), os.getpid()))
        try:
            pending: collections.deque = collections.deque()
            sent = done
            while True:
                with contextlib.suppress(BrokenProcessPool):  # a worker died while blocks were sent:
                    while sent < len(todo) and len(pending) < IN_FLIGHT_PER_JOB * jobs:
                        pending.append(pool.submit(_run_block, todo[sent]))   # the futures sent
                        sent += 1                             # before it say which
                if not pending:
                    break
                try:
                    results, forwarded = pending.popleft().result()
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
            yield _raised(case, f"{PROCESS_ENDED}: the implementation ended the process ({outcome.ended})",
                          impl_of(check_fn))
        else:
            yield _raised(case, outcome.raised, impl_of(check_fn))


OnResult = Callable[[int, CaseResult], None]     # (case_id, its result), in case order


def run_cases(strategy_args: dict, n: int, seed: int, check_fn: CheckFn | None = None, jobs: int = 1,
              progress: Progress | None = None, on_result: OnResult | None = None,
              scheduler: str | None = None, events: dict | None = None
              ) -> tuple[list[CaseResult], list[int], int, str]:
    """Draw and check the sweep's cases in order. Returns (results, their case ids, the number
    of cases checked, stopped): Ctrl-C, or a case whose implementation ran past its time limit,
    stops early (``stopped`` says which), keeping the results so far. With ``on_result``, each
    result goes to it as it comes and only the failing ones are kept (a streamed sweep: its
    memory does not grow with the passing cases). With ``scheduler`` the blocks go to a Dask
    cluster (verify.sweep.distributed), which notes the blocks retried and lost in ``events``."""
    results: list[CaseResult] = []
    ids: list[int] = []
    done = failed = 0
    try:
        for result in _iter_results(strategy_args, n, seed, check_fn, jobs, scheduler, events):
            if on_result is not None:
                on_result(done, result)
            if on_result is None or not result.passed:
                results.append(result)
                ids.append(done)
            done += 1
            failed += not result.passed
            if progress:
                progress(done, n, failed)
            if result.timed_out:
                return results, ids, done, f"case {done - 1} ran past the time limit"
    except KeyboardInterrupt:
        return results, ids, done, INTERRUPTED
    return results, ids, done, ""
