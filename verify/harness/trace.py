"""verify.check: one case, both sides, every tensor compared."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import handimpl
from handimpl.stack import param_key, stack_backprop
from verify.byo.call import CALL, call_and_step
from verify.byo.guard import TIME_LIMIT, TimeLimit
from verify.byo.target import DEFAULT_IMPL, repro_command, target_of
from verify.core.bounds import a_priori, has_textbook
from verify.core.compare import UNIT_ROUNDOFF, Comparison, Pair, compare_all, tolerances
from verify.core.data import Case, draw_case, draw_stack_case
from verify.core.spec import NetSpec
from verify.core.stack import StackSpec, parse_any
from verify.core.stack_bounds import has_textbook as stack_has_textbook
from verify.core.stack_bounds import stack_a_priori
from verify.core.stack_twin import stack_trace
from verify.core.twin import Params, build_twin, reload_twin, torch_trace
from verify.core.verdict import refine, root_cause

# An implementation of handimpl.backprop's contract: fn(spec, params, x, y) -> {name: array or float}.
Impl = Callable[[NetSpec, Params, np.ndarray[Any, Any], np.ndarray[Any, Any]], Mapping[str, Any]]
Trace = dict[str, Any]     # a traced tensor (or the loss, a float) by name: 'z1', 'delta2', 'loss'

# Whether check judges by the tight allowance alone when not told (strict=None): the pytest
# gate's --verify-strict sets it for the session (verify.pytest_plugin).
STRICT_DEFAULT = False

# The quantity of a record judged by a case's training (verify run --optimizers): 'optimizer:param',
# 'optimizer:state', 'optimizer:loss', 'optimizer:buffer' (verify.train.sweep); and how the error of
# a case whose training could not be run begins.
OPTIMIZER = "optimizer:"
TRAINING_FAILED = "training:"

# Called with every CaseResult that check returns (the pytest plugin records through one).
# A sweep's worker processes forward theirs to the parent, which calls these (verify.sweep.run).
OBSERVERS: list[Callable[["CaseResult"], None]] = []


# How a CaseResult shows itself in a notebook (CaseResult._repr_html_): installed by
# verify.report.notebook, which the verify package imports; None: the plain repr only.
HTML_SUMMARY: Callable[["CaseResult"], str] | None = None


def notify(result: "CaseResult") -> None:
    for observe in OBSERVERS:
        observe(result)


def trace_order(spec: NetSpec | StackSpec) -> tuple[str, ...]:
    """Every traced tensor in forward-then-backward order (then the step)."""
    if isinstance(spec, StackSpec):
        return _stack_order(spec)
    return _trace_order(spec.depth, spec.bias)


@functools.lru_cache(maxsize=1024)
def _stack_order(spec: StackSpec) -> tuple[str, ...]:
    """out1…outn, the buffers after each layer's forward, the loss, then from the last layer back:
    ∂J/∂out⁽ⁱ⁾ and layer i's parameter gradients; ∂J/∂x; the parameters after the step."""
    n = spec.depth
    params = [[param_key("", name, i) for name in layer.param_names] for i, layer in enumerate(spec.layers, 1)]
    names = []
    for i, layer in enumerate(spec.layers, start=1):
        names += [f"out{i}"] + [param_key("", name, i) for name in getattr(layer, "buffer_names", layer.buffers)]
    names.append("loss")
    for i in range(n, 0, -1):
        names += [f"grad{i}"] + ["d" + key for key in params[i - 1]]
    if not spec.tokens:
        names.append("dx")
    return tuple(names + [f"{key}_after" for keys in params for key in keys])


@functools.lru_cache(maxsize=None)
def _trace_order(L: int, bias: bool) -> tuple[str, ...]:
    names = [n for l in range(1, L + 1) for n in (f"z{l}", f"a{l}")] + ["loss"]
    for l in range(L, 0, -1):
        names += [f"delta{l}", f"dW{l}"] + ([f"db{l}"] if bias else [])
    names.append("dx")
    for l in range(1, L + 1):
        names += [f"W{l}_after"] + ([f"b{l}_after"] if bias else [])
    return tuple(names)


@dataclass(frozen=True)
class CaseResult:
    spec: NetSpec | StackSpec
    seed: int
    batch: int
    records: tuple[Comparison, ...]
    error: str = ""          # what the implementation raised, if it did
    timed_out: bool = False  # the implementation (or its step) was stopped at its time limit
    scale: float = 1.0
    zero_fraction: float = 0.0
    located: str = ""        # where single-example calls place the root cause (verify.harness.localise)
    note: str = ""           # about the case as a counterexample: "did not reproduce when re-run"
    impl: str = DEFAULT_IMPL  # the implementation checked, as a TARGET (verify.byo.target)
    test: str = ""            # the pytest node id of the test that made the check, if any
    optimizer: str = ""       # a case drawn with an optimizer (verify run --optimizers): its spec,
                              # 'adam:lr=0.01' (verify.core.optim_spec); '' for none
    train_repro: str = ""     # the `verify train` command that runs its training again ('' for none)

    @property
    def passed(self) -> bool:
        return not self.error and all(r.passed for r in self.records)

    @property
    def error_sentence(self) -> str:
        """'the implementation raised ...' ('was stopped: ...' at its time limit), or ''."""
        if not self.error:
            return ""
        return f"the implementation {'was stopped:' if self.timed_out else 'raised'} {self.error}"

    @property
    def first_divergence(self) -> Comparison | None:
        """The root cause: the first diverging tensor in forward-then-backward order (a
        tensor that only inherits a difference from upstream is never it)."""
        return root_cause(self.records)

    @property
    def repro(self) -> str:
        """The shell command that runs this check again (verify.byo.target.repro_command); for a
        case whose training failed (an optimizer drawn, the pass itself agreeing), the `verify
        train` command that runs the training again."""
        first = self.first_divergence
        if self.train_repro and not self.passed and (
                self.error.startswith(TRAINING_FAILED) or (first is not None and first.quantity.startswith(OPTIMIZER))):
            return self.train_repro
        return repro_command(self.spec, self.seed, self.batch, self.impl)

    def _repr_html_(self) -> str | None:
        """A notebook's view: the verdict, the tensors by status, the card of a failing case."""
        return None if HTML_SUMMARY is None else HTML_SUMMARY(self)


def references(spec: NetSpec | StackSpec, case: Case, lr: float) -> tuple[Trace, Trace | None]:
    """torch's trace and, for float32, the float64 reference on the same data (verify.core.compare),
    run by the same twin reloaded in float64."""
    if isinstance(spec, StackSpec):
        ref = stack_trace(spec, case.params, case.x, case.y, lr)
        return ref, (None if spec.dtype != "float32" else
                     stack_trace(spec, case.params, case.x, case.y, lr, dtype="float64"))
    model = build_twin(spec, case.params)
    ref = torch_trace(spec, case.params, case.x, case.y, lr, model=model)
    if spec.dtype != "float32":
        return ref, None
    model = reload_twin(model, case.params, "float64")
    return ref, torch_trace(spec, case.params, case.x, case.y, lr, dtype="float64", model=model)


@dataclass(frozen=True, eq=False)
class Traced:
    """One case run on both sides, nothing compared yet: the data, torch's trace and the float64
    reference (``refs``), what the implementation returned (``hand``, its step included) and
    the failing records about the call itself."""
    spec: NetSpec | StackSpec
    seed: int
    batch: int
    case: Case
    refs: tuple[Trace, Trace | None]
    hand: dict[str, Any]
    lr: float
    rtol: float
    atol: float
    problems: tuple[Comparison, ...] = ()    # about the call: it raised, returned no mapping, missing keys
    step_problems: tuple[Comparison, ...] = ()
    mutations: tuple[Comparison, ...] = ()   # inputs it modified in place
    error: str = ""
    timed_out: bool = False
    impl: str = DEFAULT_IMPL
    strict: bool = False         # judged by the tight allowance alone (no textbook allowance)

    @property
    def textbook(self) -> bool:
        """Whether a tensor beyond its tight allowance gets the textbook allowance: not in strict
        mode, and only where one of the case's functions declares a textbook form."""
        if isinstance(self.spec, StackSpec):
            return not self.strict and stack_has_textbook(self.spec)
        return not self.strict and has_textbook(self.spec)

    @property
    def size(self) -> int:
        """How many values torch's trace holds (what comparing this run costs)."""
        return sum(getattr(value, "size", 1) for value in self.refs[0].values())   # loss: a float


def compare_many(runs: list[Traced]) -> list[list[Comparison]]:
    """Every traced tensor of each run judged: within its a priori allowance of the reference
    (verify.core.bounds, verify.core.compare), then each failing one settled as inheriting or diverging
    (verify.core.verdict). The runs of one dtype and tolerance go through one compare_all call,
    whose per-call cost then falls on all of them; a case's records do not depend on the
    others judged with it (a sweep compares its cases in groups, verify.sweep.execute.run_block)."""
    pairs = [_pairs(run) for run in runs]
    judged = _compare_groups(runs, pairs)
    # A run with a tensor beyond its tight allowance is judged again with the textbook
    # allowance too (docs/verdict.md), where its functions have textbook forms.
    loose = [i for i, (run, records) in enumerate(zip(runs, judged))
             if run.textbook and any(not r.passed and not r.problem for r in records)]
    if loose:
        again = [_with_textbook(runs[i], pairs[i]) for i in loose]
        for i, records in zip(loose, _compare_groups([runs[i] for i in loose], again)):
            judged[i] = records
    return [refine(run.spec, run.case, run.hand, exact_trace(run), run.lr, records, textbook=run.textbook)
            for run, records in zip(runs, judged)]


def _compare_groups(runs: list[Traced], pairs: list[list[Pair]]) -> list[list[Comparison]]:
    """compare_all over each group of runs of one dtype and tolerance; records per run."""
    groups: dict[tuple[str, float, float], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.spec.dtype, run.rtol, run.atol), []).append(i)
    judged: list[list[Comparison]] = [[] for _ in runs]
    for (dtype, rtol, atol), members in groups.items():
        records = iter(compare_all([p for i in members for p in pairs[i]], dtype=dtype, rtol=rtol, atol=atol))
        for i in members:
            judged[i] = [next(records) for _ in pairs[i]]
    return judged


def exact_trace(run: Traced) -> Trace:
    """The reference r: the float64 run for a float32 case, torch's own trace for float64."""
    ref, ref64 = run.refs
    return ref if ref64 is None else ref64


def allowances(run: Traced, textbook: bool = False) -> dict[str, np.ndarray[Any, Any]]:
    """Each traced tensor's bound E·(1 + u_r/u): the a priori bound (verify.bounds) widened by
    the reference's own rounding, itself a correct evaluation in float64 (``textbook``: the
    textbook allowance's bound)."""
    own_error = 1.0 + UNIT_ROUNDOFF["float64"] / UNIT_ROUNDOFF[run.spec.dtype]
    bound_of = stack_a_priori if isinstance(run.spec, StackSpec) else a_priori
    bounds = bound_of(run.spec, run.case, exact_trace(run), run.lr, textbook=textbook)
    return {name: E * own_error for name, E in bounds.items()}


def _pairs(run: Traced) -> list[Pair]:
    ref, ref64 = run.refs
    bound = allowances(run)
    return [Pair(name, run.hand[name], ref[name], None if ref64 is None else ref64[name], bound.get(name))
            for name in trace_order(run.spec) if name in run.hand and name in ref]


def _with_textbook(run: Traced, pairs: list[Pair]) -> list[Pair]:
    """``pairs`` (the run's, tight bounds computed once) with the textbook allowance's bounds."""
    loose = allowances(run, textbook=True)
    return [pair._replace(textbook=loose.get(pair.name)) for pair in pairs]


def trace(spec: NetSpec | StackSpec | str, seed: int = 0, batch: int = 4, *, impl: Impl | None = None,
          lr: float = 0.1, rtol: float | None = None, atol: float | None = None,
          time_limit: float | None = None, isolate: bool = False, strict: bool = False) -> Traced:
    """One case run on both sides (check's arguments), nothing compared yet."""
    parsed = parse_any(spec)
    case = draw_stack_case(parsed, seed, batch) if isinstance(parsed, StackSpec) else draw_case(parsed, seed, batch)
    return trace_data(parsed, case, seed, batch, impl=impl, lr=lr, rtol=rtol,
                      atol=atol, time_limit=time_limit, isolate=isolate, strict=strict)


def trace_data(spec: NetSpec | StackSpec, case: Case, seed: int, batch: int, *, impl: Impl | None = None,
               lr: float = 0.1, rtol: float | None = None, atol: float | None = None,
               time_limit: float | None = None, isolate: bool = False, strict: bool = False) -> Traced:
    """trace on given data (a verify.core.data.Case), e.g. one example of a drawn case."""
    rtol, atol = tolerances(spec.dtype, rtol, atol)
    refs = references(spec, case, lr)
    fn = impl or (stack_backprop if isinstance(spec, StackSpec) else handimpl.backprop)
    limit = TimeLimit(None if impl is None else (TIME_LIMIT if time_limit is None else time_limit),
                      isolate=isolate and impl is not None)
    hand, problems, mutations, error, step_problems = call_and_step(
        fn, spec, case.params, case.x, case.y, lr, rtol=rtol, atol=atol, limit=limit)
    return Traced(spec, seed, batch, case, refs, hand, lr, rtol, atol, tuple(problems),
                  tuple(step_problems), tuple(mutations), error, limit.expired, target_of(impl), strict)


def check(spec: NetSpec | str, seed: int = 0, batch: int = 4, *, impl: Impl | None = None,
          lr: float = 0.1, rtol: float | None = None, atol: float | None = None,
          time_limit: float | None = None, isolate: bool = False, strict: bool | None = None) -> CaseResult:
    """Run one case on both sides and compare every tensor.

    Data (parameters, x, y) are drawn reproducibly from ``seed`` (verify.core.data).
    ``impl`` defaults to handimpl.backprop; any function with its contract works. It is
    called safely (verify.byo.call.call_safely): on copies of its inputs, with whatever it
    raises, returns wrongly or modifies in place turned into failing records. A call of
    ``impl`` taking longer than ``time_limit`` seconds (default TIME_LIMIT; 0: none; handimpl
    has none) is stopped and fails the case (``timed_out``). ``isolate``: each call of ``impl``
    runs in a child process, killed when it outlives its time limit (verify.byo.call.call_and_step).
    A tensor beyond its tight allowance that lies within its textbook allowance (a documented
    formula evaluated as written, handimpl.textbook) passes as 'imprecise', with a precision
    note; ``strict`` judges by the tight allowance alone (docs/verdict.md; None: STRICT_DEFAULT).
    Every result is passed to each of OBSERVERS before it is returned.
    """
    run = trace(spec, seed, batch, impl=impl, lr=lr, rtol=rtol, atol=atol, time_limit=time_limit,
                isolate=isolate, strict=strict_or_default(strict))
    return result_of(run, compare_many([run])[0])


def strict_or_default(strict: bool | None) -> bool:
    """``strict``, or STRICT_DEFAULT where it is None."""
    return STRICT_DEFAULT if strict is None else bool(strict)


def result_of(run: Traced, compared: list[Comparison]) -> CaseResult:
    """The run's CaseResult (records in forward-then-backward order, the call's first, then
    the mutations), after each of OBSERVERS has seen it."""
    rank = {name: i for i, name in enumerate(trace_order(run.spec))} if isinstance(run.spec, StackSpec) \
        else _rank(run.spec.depth, run.spec.bias)
    records = sorted([*run.problems, *compared, *run.step_problems],
                     key=lambda r: -1 if r.name == CALL else rank.get(r.name, len(rank)))
    result = CaseResult(run.spec, run.seed, run.batch, tuple(records) + run.mutations,
                        error=run.error, timed_out=run.timed_out, scale=run.case.scale,
                        zero_fraction=run.case.zero_fraction, impl=run.impl)
    notify(result)
    return result


@functools.lru_cache(maxsize=None)
def _rank(L: int, bias: bool) -> dict[str, int]:
    return {name: i for i, name in enumerate(_trace_order(L, bias))}
