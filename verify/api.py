"""Sweeping a user implementation: ``verify check --impl``, check_implementation, assert_matches_torch.

The implementation (a callable, or a TARGET string ``pkg.mod:fn`` / ``path/file.py:fn``)
runs through the same hypothesis sweep as ``verify run``, each case through
verify.check with the implementation called safely (verify.byo.call).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import pickle
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from verify.byo.call import DEFAULT_OUT, load_target, reset_warnings, resolve
from verify.byo.guard import guarded
from verify.byo.target import target_of
from verify.core.spec import shown
from verify.errors import UsageError
from verify.harness.diagnose import explain_failure
from verify.harness.localise import with_location
from verify.harness.referee import referee_case, validate_mode
from verify.harness.trace import CaseResult, Impl, check, strict_or_default
from verify.report.frames import discrepancy_frame
from verify.report.notebook import summary_frame  # importing it installs the results' notebook summaries
from verify.report.write import conclude, recording
from verify.sweep import strategies
from verify.sweep.execute import OnResult
from verify.sweep.progress import progress_reporter
from verify.sweep.run import DEFAULT_EXAMPLES, SweepResult, sweep
from verify.sweep.shrink import failure_groups, signature

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

SUPPORT_KEYS = ("activations", "losses", "dtypes", "layers")
Names = Iterable[str] | None      # activation, loss or dtype names; None: all (or what fn supports)


class SweepOptions(TypedDict, total=False):
    """The options of check_implementation and assert_matches_torch: those of ``verify check --impl``."""
    examples: int | None
    seed: int
    activations: Names
    losses: Names
    dtypes: Names
    layers: Names
    max_depth: int
    max_width: int
    max_batch: int
    jobs: int
    progress: Callable[[int, int, int], None] | None
    time_limit: float | None
    isolate: bool
    strict: bool | None
    referee: str | None


# -- sweeping an implementation ------------------------------------------------------------------

def check_case(impl: Impl | str, spec: Any, seed: int, batch: int, *, time_limit: float | None = None,
               isolate: bool = False, strict: bool = False) -> CaseResult:
    """verify.harness.trace.check for one case with ``impl`` (a callable or a TARGET string).

    Module-level, so ``functools.partial(check_case, target)`` pickles for jobs > 1."""
    return check(spec, seed, batch, impl=resolve(impl), time_limit=time_limit, isolate=isolate, strict=strict)


def supported(fn: Impl, *, activations: Names = None, losses: Names = None,
              dtypes: Names = None, layers: Names = None) -> dict[str, Any]:
    """The sweep's activations/losses/dtypes/layers (the optional layer kinds of a stack): what
    was asked, within ``fn.supports``.

    Raises UsageError when something asked for is outside what ``fn`` declares."""
    declared = getattr(fn, "supports", None) or {}
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not isinstance(declared, Mapping):
        raise UsageError(f"{name}.supports must be a dict of name lists, not a {type(declared).__name__}")
    unknown = [k for k in declared if k not in SUPPORT_KEYS]
    if unknown:
        raise UsageError(f"{name}.supports: unknown key {shown(unknown[0])}; valid: {', '.join(SUPPORT_KEYS)}")
    out: dict[str, Any] = {}
    for kind, asked in zip(SUPPORT_KEYS, (activations, losses, dtypes, layers)):
        allowed = declared.get(kind)
        if allowed is None:
            out[kind] = None if asked is None else list(asked)
            continue
        if isinstance(allowed, (str, bytes)) or not isinstance(allowed, (list, tuple, set, frozenset)) \
                or not all(isinstance(n, str) for n in allowed):
            raise UsageError(f"{name}.supports[{kind!r}] must be a list of names, like ['relu', 'tanh'], "
                         f"not {shown(allowed)}")
        allowed = list(allowed)
        if asked is None:
            out[kind] = allowed
            continue
        if kind == "losses":            # entries may pin options: NAME:KEY=VALUE,... (loss_entry)
            out[kind] = _losses_within(name, allowed, list(asked))
            continue
        outside = [n for n in asked if n not in allowed]
        if outside:
            raise UsageError(f"{getattr(fn, '__name__', fn)} supports {kind} {', '.join(allowed)}; "
                         f"not {', '.join(outside)}")
        out[kind] = list(asked)
    return out


def _losses_within(name: str, allowed: list[str], asked: list[str]) -> list[str]:
    """The losses asked for, by name within those ``supports`` declares; an entry asked without
    pinned options takes the declared entry's pins (a loss declared as
    ``cross_entropy:label_smoothing=0`` is never drawn with label smoothing)."""
    def base(entry: str) -> str:
        return entry.partition(":")[0].strip()
    declared = {base(e): e for e in allowed}
    outside = [n for n in asked if base(n) not in declared]
    if outside:
        raise UsageError(f"{name} supports losses {', '.join(allowed)}; not {', '.join(outside)}")
    return [n if ":" in n else declared[base(n)] for n in asked]


def sweep_implementation(impl: Impl | str, *, examples: int | None = None, seed: int = 0,
                         activations: Names = None, losses: Names = None, dtypes: Names = None,
                         layers: Names = None, max_depth: int = 4, max_width: int = 16, max_batch: int = 16,
                         jobs: int = 1,
                         progress: Callable[[int, int, int], None] | None = None,
                         time_limit: float | None = None, isolate: bool = False,
                         strict: bool | None = None, architectures: Names = None,
                         referee: str | None = None, on_result: OnResult | None = None) -> SweepResult:
    """verify.sweep.run.sweep over ``impl``, restricted to what it supports. Returns the SweepResult.

    Each call of ``impl`` may take ``time_limit`` seconds (default verify.byo.call.TIME_LIMIT);
    the sweep stops at the first case that runs past it, marked partial. ``isolate``: each
    call runs in a child process, killed when it outlives the limit (verify.byo.call.call_and_step).
    ``strict``: judge by the tight allowance alone, so that a documented formula evaluated as
    written (imprecise, passing by default) fails (None: the session's default, False unless
    the pytest gate's --verify-strict is given; docs/verdict.md). ``referee``: 'fd' asks the
    finite-difference referee about each minimal counterexample, 'fd-all' about every case of a
    small sweep (verify.harness.referee; docs/verdict.md). ``on_result``: called with each case's
    id and result as it comes (a report's Recorder); the passing results are then not kept.

    Unknown names or impossible bounds raise UsageError (one line)."""
    fn = resolve(impl)
    n = DEFAULT_EXAMPLES if examples is None else examples
    validate_mode(referee, examples=n, max_width=max_width, max_batch=max_batch)
    names = supported(fn, activations=activations, losses=losses, dtypes=dtypes, layers=layers)
    try:
        strategies.validate(max_depth=max_depth, max_width=max_width,
                            **{k: v for k, v in names.items() if k != "layers"})
        strategies.cases(architectures=None if architectures is None else list(architectures),
                         layers=names["layers"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if jobs > 1 and not isinstance(impl, str):
        _, unpicklable = guarded(lambda: pickle.dumps(fn))   # its __reduce__ may be user code
        if unpicklable is not None:  # a lambda or closure: run in this process
            jobs = 1
    reset_warnings()
    check_fn = functools.partial(check_case, impl, time_limit=time_limit, isolate=isolate,
                                 strict=strict_or_default(strict))
    check_fn.impl_name = target_of(fn)  # type: ignore[attr-defined]  # read by verify.sweep.execute
    judge = None if referee is None else functools.partial(
        referee_case, impl=fn, every=referee == "fd-all", time_limit=time_limit, isolate=isolate,
        strict=strict_or_default(strict))
    result = sweep(examples=examples, seed=seed, max_depth=max_depth, max_width=max_width,
                   max_batch=max_batch, jobs=jobs, check_fn=check_fn, progress=progress,
                   referee=judge, referee_all=referee == "fd-all", on_result=on_result,
                   architectures=None if architectures is None else list(architectures), **names)
    return dataclasses.replace(result, minimal=tuple(with_location(m, fn) for m in result.minimal))


def check_implementation(fn: Impl | str, **options: Unpack[SweepOptions]) -> pd.DataFrame:
    """Sweep ``fn`` against torch; one DataFrame row per compared tensor per case.

    Options are those of ``verify check --impl``: examples, seed, activations,
    losses, dtypes, max_depth, max_width, max_batch, jobs, time_limit, isolate, strict. The frame's
    ``attrs`` hold ``passed``, ``n_failed``, ``minimal`` (the shrunk failing
    CaseResults) and ``message`` (the explanation of the first of them). In a notebook it shows
    the sweep's summary (the verdict, the counts, the cards) above its table.
    """
    result = sweep_implementation(fn, **options)
    frame = discrepancy_frame(result.results)
    frame.attrs.update(passed=bool(result.passed), n_failed=int(result.n_failed),
                       minimal=list(result.minimal), message=_message(result, fn))
    return summary_frame(frame, result)


def assert_matches_torch(fn: Impl | str, **options: Unpack[SweepOptions]) -> None:
    """For a user's own pytest suite: raise AssertionError, written for a student, naming the
    minimal counterexample and the first diverging tensor, unless every case agrees."""
    result = sweep_implementation(fn, **options)
    if not result.passed:
        raise AssertionError(_message(result, fn))


def _message(result: SweepResult, fn: Impl | str) -> str:
    """explain_failure's message, each counterexample with where its failure was seen."""
    groups: Mapping[Any, object] = failure_groups(result.failures)
    return explain_failure(result, fn, seen=[getattr(groups.get(signature(m)), "text", "") for m in result.minimal])


# -- the command ------------------------------------------------------------------------------

def check_impl_command(args: argparse.Namespace) -> int:
    """``verify check --impl TARGET ...`` without a SPEC: sweep, write the reports, exit 0/1/130
    (2 via UsageError). With a SPEC, verify.cli.cmd_check checks that one case."""
    # Where the reports go is fixed before any user code runs, which may change the directory.
    out_dir = (Path(args.out) if args.out else DEFAULT_OUT).absolute()
    load_target(args.impl)             # a bad TARGET is a usage error before anything runs
    referee = getattr(args, "referee", None)
    n = DEFAULT_EXAMPLES if args.examples is None else args.examples
    # The rows stream to disk as the cases come (the referee's: written once it has judged).
    with recording(out_dir, n, getattr(args, "keep", None), stream=referee is None) as recorder:
        progress = progress_reporter()
        try:
            result = sweep_implementation(
                args.impl, examples=args.examples, seed=args.seed, activations=args.activations,
                losses=args.losses, dtypes=args.dtypes, layers=getattr(args, "layers", None),
                max_depth=args.max_depth, max_width=args.max_width, max_batch=args.max_batch, jobs=args.jobs,
                time_limit=getattr(args, "time_limit", None), isolate=getattr(args, "isolate", False),
                strict=getattr(args, "strict", False), architectures=getattr(args, "architectures", None),
                referee=referee, progress=progress, on_result=None if recorder is None else recorder.add)
        finally:
            progress.close()
        return conclude(result, out_dir, title=f"verify check --impl {args.impl}", recorder=recorder)
