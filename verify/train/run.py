"""`verify train`: both sides trained for T steps on the same fixed data, compared at every step.

Two comparisons at each step t (docs/training.md):

- **one-step**: from torch's exact state before step t (its parameters, running statistics and
  torch.optim's state), the hand side's forward/backward and its optimizer step, against what
  torch computed from that same state. Each tensor is judged under its a priori allowance 2E
  (docs/verdict.md, "Optimizers": E carried from the pass's bounds through the update's
  equations; torch's own result is one correct evaluation, the hand side's another). A wrong
  update formula fails here, at the first step where it makes a difference.
- **trajectory**: the hand side trained on its own from the start, against torch's trajectory.
  Rounding differences grow along a trajectory (chaotically in long ones); they are reported as
  drift, with the fitted growth rate of the error per step, never as a failure.

The loss at step t is the loss at the parameters before update t.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from handimpl.optim import step as handimpl_step
from verify.byo import isolation
from verify.byo.call import ISOLATE_GRACE, PROCESS_ENDED, describe_exception
from verify.byo.guard import TimeLimit, guarded
from verify.core.compare import UNIT_ROUNDOFF, Comparison, Pair, compare_all, problem_record, tolerances
from verify.core.optim_spec import OptimizerSpec
from verify.core.spec import NetSpec
from verify.core.stack import StackSpec, parse_any
from verify.core.torch_ops import one_thread
from verify.train import model

StepFn = Callable[[dict, dict, dict, dict], Any]
DEFAULT_STEPS = 100
ONE_STEP, TRAJECTORY = "one-step", "trajectory"
STEP = "step"             # the record name for problems with the step call as a whole
NOT_FINITE = "not finite"  # how the problem of a value nan or ±inf on one side only begins


@dataclass
class TrainResult:
    spec: NetSpec | StackSpec
    optimizer: OptimizerSpec
    steps: int
    seed: int
    batch: int
    impl: str                                  # 'handimpl' or the user's TARGET
    records: list[tuple[int, str, str, Comparison]] = field(default_factory=list)  # (step, check, kind, record)
    hand_loss: list[float] = field(default_factory=list)       # the hand trajectory's loss at each step
    torch_loss: list[float] = field(default_factory=list)
    drift: list[float] = field(default_factory=list)           # the parameters' trajectory error per step
    one_step: list[float] = field(default_factory=list)        # ... and their one-step error (parameter_error)
    error: str = ""                            # a step call that failed outright (the run stopped there)
    note: str = ""                             # why some comparison could not be made
    overflow: int | None = None                # the step where torch's own loss or gradients left the finite range
    interrupted: int | None = None             # the step during which Ctrl-C (or SIGTERM) stopped the run

    def failing(self, check: str, record: Comparison) -> bool:
        """Whether a record fails the run: a one-step record that does not pass, and a record with a
        problem in either check (a step call that failed, a state tensor missing, a value nan or
        ±inf where torch's is not), but a trajectory's non-finite value when torch's own training
        overflowed too (rounding decides which side overflows first: drift)."""
        if record.problem:
            return not (check == TRAJECTORY and self.overflow is not None and record.problem.startswith(NOT_FINITE))
        return check == ONE_STEP and not record.passed

    @property
    def failures(self) -> list[tuple[int, str, str, Comparison]]:
        """The failing records (``failing``), in the order compared."""
        return [r for r in self.records if self.failing(r[1], r[3])]

    @property
    def judged_steps(self) -> int:
        """How many steps were judged one step from torch's state."""
        return len({step for step, check, _, _ in self.records if check == ONE_STEP})

    @property
    def passed(self) -> bool:
        return not self.failures and not self.error

    @property
    def first_diverging_step(self) -> int | None:
        steps = [step for step, _, _, _ in self.failures]
        return min(steps) if steps else None

    @property
    def first_divergence(self) -> Comparison | None:
        """The first failing one-step record (the earliest step, in the order compared)."""
        failures = self.failures
        return failures[0][3] if failures else None

    @property
    def repro(self) -> str:
        """The command that runs this training again."""
        impl = "" if self.impl == "handimpl" else f" --impl '{self.impl}'"
        return (f"verify train '{self.spec}' --optimizer '{self.optimizer}' --steps {self.steps} "
                f"--seed {self.seed} --batch {self.batch}{impl}")

    def card(self) -> dict[str, Any]:
        """What a report says about this run as a counterexample (the keys of
        verify.report.frames.counterexample that the mutant page reads)."""
        first, step = self.first_divergence, self.first_diverging_step
        if first is None:
            why = self.error or "no failing comparison"
            worst = ""
        else:
            why = f"step {step}: {first.name} is the first to diverge" + (f": {first.problem}" if first.problem else "")
            worst = "" if first.problem else (f"worst element {first.name}{list(first.worst_index)}: yours "
                                              f"{first.hand_value:.6g}, torch {first.torch_value:.6g} "
                                              f"(allowed ±{first.allowed:.3g})")
        return {"repro": self.repro, "first_divergence": why, "look_at": f"the {self.optimizer.name} update",
                "formula": self.optimizer.optimizer.formula, "worst_text": worst}

    @property
    def drift_rate(self) -> float | None:
        """The fitted slope of log10(the parameters' trajectory error) per step (decades per step),
        over the steps where it is positive and finite; None with fewer than 3 such steps."""
        t = np.arange(1, len(self.drift) + 1)
        e = np.asarray(self.drift, dtype=float)
        ok = np.isfinite(e) & (e > 0)
        if ok.sum() < 3:
            return None
        return float(np.polyfit(t[ok], np.log10(e[ok]), 1)[0])


# -- the torch side ------------------------------------------------------------------------------

class TorchTrainer:
    """torch's trajectory: the twin's pass on the current parameters, then torch.optim's own step
    on persistent tensors holding them, their .grad set to the twin's gradients."""

    def __init__(self, spec: Any, params: Any, optimizer: OptimizerSpec):
        self.spec, self.params = spec, params
        self.names = model.param_names(spec)
        flat = model.flat_params(spec, params)
        self.tensors = {n: torch.from_numpy(np.array(flat[n])) for n in self.names}
        cls = getattr(torch.optim, optimizer.optimizer.torch_class)
        self.opt = cls([self.tensors[n] for n in self.names], **optimizer.hyper)
        self.buffers: model.Flat = {}

    def flat(self) -> model.Flat:
        return {n: t.detach().numpy().copy() for n, t in self.tensors.items()}

    def state(self) -> dict[str, dict[str, Any]]:
        """torch.optim's state in handimpl.optim's layout: numpy copies, the step as a float."""
        out: dict[str, dict[str, Any]] = {}
        for n, t in self.tensors.items():
            out[n] = {k: (float(v) if k == "step" else v.detach().numpy().copy())
                      for k, v in self.opt.state.get(t, {}).items() if v is not None}
        return out

    def current(self) -> Any:
        return model.rebuilt(self.spec, self.params, self.flat(), self.buffers)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[dict, Any]:
        """One pass and one torch.optim step: (the pass's trace, the params it ran on)."""
        params = self.current()
        with torch.enable_grad():
            trace = model.torch_pass(self.spec, params, x, y)
        for n, t in self.tensors.items():
            t.grad = torch.from_numpy(np.array(trace["d" + n]))
        self.opt.step()
        self.buffers = model.buffers_of(self.spec, trace)
        return trace, params


# -- the hand side -------------------------------------------------------------------------------

def _read_step(out: Any, params: dict[str, np.ndarray]) -> tuple[dict | None, Any, str]:
    """(new params, new state, '') from what a step returned, or (None, None, the problem)."""
    if not (isinstance(out, tuple) and len(out) == 2):
        return None, None, f"step returned a {type(out).__name__}, expected a pair (params, state)"
    new, state = out
    if not isinstance(new, dict):
        return None, None, f"step returned params as a {type(new).__name__}, expected a dict name -> array"
    missing = [n for n in params if n not in new]
    if missing:
        return None, None, f"step's params lack {missing[0]!r} (it returned {', '.join(map(str, new)) or 'none'})"
    read = {}
    for n, p in params.items():
        v = new[n]
        if type(v) is not np.ndarray:
            return None, None, f"step's {n} is a {type(v).__name__}, expected a numpy array"
        if v.shape != p.shape or v.dtype != p.dtype:
            return None, None, f"step's {n} is {v.shape} {v.dtype} where the parameter is {p.shape} {p.dtype}"
        read[n] = v.copy()
    if not isinstance(state, dict):
        return None, None, f"step returned state as a {type(state).__name__}, expected a dict"
    return read, state, ""


def _layout(state: dict, names: Any, state_names: tuple[str, ...]) -> dict | None:
    """The state as plain dicts of plain values where it keeps torch.optim's layout (state[name] =
    {'exp_avg': array, 'step': number, ...}, torch's names only), so that it can be compared and
    torch's own state handed to the step; None where it does not (it is the step's own business)."""
    known = {*state_names, "step"}
    if not (set(state) <= set(names) and all(isinstance(v, dict) and set(v) <= known for v in state.values())):
        return None
    return {n: {k: (float(v) if k == "step" else np.array(v)) for k, v in dict(entries).items()}
            for n, entries in dict(state).items()}


@dataclass
class Stepped:
    """What one call of the step gave: the new params, the state to hand back next time (the
    step's own object, never read but by copying it), that state in torch's layout (or None), and
    the problem ('' when none)."""
    params: dict | None
    state: Any
    layout: dict | None
    problem: str


class HandStep:
    """The hand side's optimizer step: handimpl's (trusted) or a user's, called on copies of its
    inputs under verify.byo.guard; the copying of the state it returned and the reading of its
    result are guarded too (whatever it raises, hangs or returns becomes a problem line)."""

    def __init__(self, fn: StepFn, hyper: dict, state_names: tuple[str, ...], trusted: bool,
                 time_limit: float | None, isolate: bool = False):
        self.fn, self.hyper, self.state_names, self.trusted = fn, hyper, state_names, trusted
        self.limit = None if trusted else TimeLimit(time_limit)
        self.isolate = isolate and not trusted and isolation.AVAILABLE

    def __call__(self, params: dict, grads: dict, state: Any) -> Stepped:
        def run() -> Stepped:
            args = (copy.deepcopy(params), copy.deepcopy(grads), copy.deepcopy(state), dict(self.hyper))
            new, new_state, problem = _read_step(self.fn(*args), params)
            return Stepped(new, new_state, None if problem else _layout(new_state, params, self.state_names),
                           problem)

        if self.trusted:
            return run()
        if self.isolate:
            return self._forked(run)
        return self._guarded(run)

    def _guarded(self, run: Callable[[], Stepped]) -> Stepped:
        stepped, e = guarded(run, self.limit)
        return Stepped(None, None, None, describe_exception(e, self.fn)) if e is not None else stepped

    def _forked(self, run: Callable[[], Stepped]) -> Stepped:
        """The guarded call in a forked child (verify.byo.isolation), killed ISOLATE_GRACE seconds
        past its time limit; what it changes dies with it, and a call that ends the process fails."""
        seconds = self.limit.seconds if self.limit else None
        outcome = isolation.run_forked(self._guarded, (run,), deadlines=(seconds + ISOLATE_GRACE if seconds else None,))
        if outcome.ok:
            return outcome.value
        if outcome.timed_out:
            problem = (f"CallTimedOut: did not return within {seconds:g} s (the time limit) and did not stop "
                       f"when told to: its process was killed (--isolate)")
        elif outcome.ended:
            problem = f"{PROCESS_ENDED}: the step ended the process ({outcome.ended})"
        else:
            problem = f"the step's result could not be sent back from its process: {outcome.raised}"
        return Stepped(None, None, None, problem)


# -- judging -------------------------------------------------------------------------------------

def _f64(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def step_bounds(optimizer: OptimizerSpec, dtype: str, flat: model.Flat, grads: model.Flat,
                E_grads: dict, state: dict) -> dict[str, np.ndarray]:
    """E of every parameter ('W1') and state tensor ('W1.exp_avg') after one step from the exact
    ``flat`` and ``state`` with gradients off by up to E_grads (handimpl.optim's update_error)."""
    u, hyper, out = UNIT_ROUNDOFF[dtype], optimizer.hyper, {}
    with np.errstate(all="ignore"):
        for n, theta in flat.items():
            s = {k: (v if k == "step" else _f64(v)) for k, v in state.get(n, {}).items()}
            E = optimizer.optimizer.update_error(_f64(theta), _f64(grads[n]), _f64(E_grads[n]), s, hyper, u)
            out[n] = E.pop("param")
            out.update({f"{n}.{k}": v for k, v in E.items()})
    return out


def _state_pairs(hand_state: dict, torch_state: dict, bounds: dict | None) -> list[Pair]:
    pairs = []
    for n, entries in torch_state.items():
        for k, r in entries.items():
            h = hand_state.get(n, {}).get(k)
            key = f"{n}.{k}"
            bound = 0.0 if k == "step" else (None if bounds is None else 2 * bounds.get(key, np.inf))
            pairs.append(Pair(key, None if h is None else np.asarray(h, dtype=np.float64 if k == "step" else None),
                              np.asarray(r), None, bound, None))
    return pairs


def _judge(pairs: list[Pair], dtype: str) -> list[Comparison]:
    """compare_all, with a missing hand value a failing record of its own, and a non-finite value
    on one side only named in the record's problem (_non_finite)."""
    rtol, atol = tolerances(dtype)
    present = [p for p in pairs if p.hand is not None]
    judged = iter(compare_all(present, dtype=dtype, rtol=rtol, atol=atol) if present else ())
    out = []
    for p in pairs:
        if p.hand is None:
            out.append(problem_record(p.name, dtype, np.shape(p.ref), "missing from the step's state", rtol, atol))
        else:
            out.append(_non_finite(p, next(judged)))
    return out


def _non_finite(pair: Pair, record: Comparison) -> Comparison:
    """``record`` failed, with a problem naming the first element where one side is nan or ±inf and
    the other is not the same value (compare_all counts such an element off without bound, but its
    error columns hold the finite elements' only, and a nan is a blank CSV cell)."""
    h, r = _f64(pair.hand), _f64(pair.ref)
    with np.errstate(invalid="ignore"):
        off = ~(np.isfinite(h) & np.isfinite(r)) & ~((h == r) | (np.isnan(h) & np.isnan(r)))
    if not off.any():
        return record
    index = tuple(int(i) for i in np.argwhere(off)[0])
    hv, rv = float(h[index]), float(r[index])
    where = f"{record.name}{list(index)}" if index else record.name
    if math.isfinite(hv):
        text = f"{NOT_FINITE}: torch's {where} is {rv} where yours is {hv:.6g}"
    else:
        bad = int(np.count_nonzero(~np.isfinite(h)))
        shown = format(rv, ".6g") if math.isfinite(rv) else rv
        text = (f"{NOT_FINITE}: yours {where} is {hv} where torch's is {shown} "
                f"({bad} of {h.size} elements of yours not finite)")
    return dataclasses.replace(record, problem=text, passed=False, status="diverges", worst_index=index,
                               hand_value=hv, torch_value=rv, max_abs_err=math.inf, norm_rel_err=math.inf,
                               margin=math.inf)


def _kind(name: str, buffers: list[str]) -> str:
    if name == "loss":
        return "loss"
    if "." in name and not name.split(".")[-1].isdigit():
        return "state"
    return "buffer" if name in buffers else "param"


def parameter_error(pairs: list[Pair], names: Any) -> float:
    """‖h − r‖/‖r‖ over all the parameters among ``pairs`` taken as one vector: how far the whole
    parameter set is from torch's (a tensor whose gradient is rounding noise, such as a bias before
    batch norm, weighs by its size, not as the largest relative error of one tensor would)."""
    diff = ref = 0.0
    for pair in pairs:
        if pair.name in names and pair.hand is not None:
            h, r = _f64(pair.hand), _f64(pair.ref)
            if h.shape != r.shape:
                return math.inf
            diff += float(np.sum((h - r) ** 2))
            ref += float(np.sum(r * r))
    if not math.isfinite(diff):                  # nan or ±inf on one side: off without bound (drawn at the top)
        return math.inf
    return math.sqrt(diff / ref) if ref > 0 else (0.0 if diff == 0 else math.inf)


# -- the run -------------------------------------------------------------------------------------

def train(spec: NetSpec | StackSpec | str, optimizer: OptimizerSpec | str, *, steps: int = DEFAULT_STEPS,
          seed: int = 0, batch: int = 4, step_fn: StepFn | None = None, impl: str = "handimpl",
          time_limit: float | None = 10.0, isolate: bool = False, trajectory: bool = True,
          progress: Callable[[int], None] | None = None, partial: bool = False) -> TrainResult:
    """Train both sides for ``steps`` steps on the case ``seed`` draws and compare them at every
    step (the module docstring). ``step_fn`` is the hand side's optimizer step (default
    handimpl.optim's; a user's is called under verify.byo's guard, stopped after ``time_limit``;
    with ``isolate``, each call in a forked child process, killed when it outlives the limit).
    ``trajectory=False``: the one-step comparisons alone (the hand side's own trajectory, drift
    only, is not run: a sweep's case, verify.train.sweep). ``partial``: Ctrl-C (or SIGTERM) ends the
    training and the result holds the steps before it (TrainResult.interrupted), for `verify train`'s
    partial report; otherwise it propagates (a search or a sweep stops on it)."""
    spec = parse_any(spec) if isinstance(spec, str) else spec
    optimizer = OptimizerSpec.parse(optimizer) if isinstance(optimizer, str) else optimizer
    trusted = step_fn is None
    hand_step = HandStep(handimpl_step if trusted else step_fn, {"optimizer": optimizer.name, **optimizer.hyper},
                         optimizer.optimizer.state_names, trusted, time_limit, isolate)
    result = TrainResult(spec, optimizer, steps, seed, batch, impl)
    case = model.draw(spec, seed, batch)
    x, y, dtype = case.x, case.y, spec.dtype
    buffers = model.buffer_names(spec)
    # One torch thread, as a sweep runs its cases (float32 sums round one way). A training that
    # diverges stops where torch's own pass overflows (_finite_pass); before that a non-finite value
    # is compared as every other (nan agrees with nan, inf with inf), without a warning per overflow.
    at = [1]                            # the step in progress
    with one_thread(), np.errstate(all="ignore"), _stops_at_interrupt(result, at, partial):
        torch_side = TorchTrainer(spec, case.params, optimizer)
        own = {"params": model.flat_params(spec, case.params), "state": {}, "buffers": {}}
        hand_ok = True                  # the hand trajectory goes on (a failed step call stops it)
        # torch's state can be handed to handimpl's step at every step, and to a user's once its state
        # shows torch's layout; a user's first step starts from {} (torch's state then is the initial one).
        torch_state_ok = trusted
        for t in range(1, steps + 1):
            at[0] = t
            flat_t, state_t = torch_side.flat(), torch_side.state()
            ref, params_t = torch_side.step(x, y)
            if not _finite_pass(ref, flat_t):
                result.overflow = t
                break
            flat_next, state_next = torch_side.flat(), torch_side.state()
            result.torch_loss.append(float(ref["loss"]))
            given = state_t if torch_state_ok else {} if t == 1 else None
            if given is not None:
                layout = _one_step(result, t, spec, optimizer, hand_step, params_t, flat_t, given, ref,
                                   flat_next, state_next, x, y, dtype, buffers)
                torch_state_ok = torch_state_ok or layout
            elif not result.note and not result.failures:
                result.note = ("the step's state is not in torch.optim's layout (state[name] = {'exp_avg': ..., "
                               "torch's names}): only the first step is judged from torch's state (both start "
                               "empty); later steps are compared as drift")
            if result.error:            # a step that hangs once would hang again: stop here
                break
            if hand_ok and trajectory:
                hand_ok = _trajectory(result, t, spec, hand_step, case.params, own, ref, flat_next, state_next,
                                      torch_side.buffers, x, y, dtype, buffers)
            if result.error:
                break
            if progress:
                progress(t)
    if result.overflow is not None:
        judged = f"steps 1–{result.overflow - 1} are compared" if result.overflow > 1 else "no step is compared"
        result.note = " ".join(filter(None, (result.note, (
            f"torch's own training overflowed at step {result.overflow} (its loss or a gradient is nan or "
            f"±inf: the learning rate is too large for this network); the run stops there and {judged}"))))
    return result


@contextlib.contextmanager
def _stops_at_interrupt(result: TrainResult, at: list[int], partial: bool) -> Iterator[None]:
    """With ``partial``, Ctrl-C (or SIGTERM, verify.report.output.Terminated) ends the training during
    step ``at[0]``, the steps before it kept (TrainResult.interrupted), so that the command writes a
    partial report."""
    try:
        yield
    except KeyboardInterrupt:
        if not partial:
            raise
        result.interrupted = at[0]


def _finite_pass(ref: dict, names: Any) -> bool:
    """Whether torch's loss and gradients at a step are finite: where they are not, torch's own
    training has overflowed (too large a learning rate), and neither side's values mean anything
    from that step on, so the run stops there (TrainResult.overflow)."""
    return math.isfinite(float(ref["loss"])) and all(np.isfinite(ref["d" + n]).all() for n in names)


def _one_step(result, t, spec, optimizer, hand_step, params_t, flat_t, state_t, ref, flat_next, state_next,
              x, y, dtype, buffers) -> bool:
    """The hand pass and step from torch's exact state before step t, judged under 2E. True when
    the state the step returned is in torch's layout."""
    hand = model.hand_pass(spec, params_t, x, y)
    grads = {n: hand["d" + n] for n in flat_t}
    E = model.pass_bounds(spec, params_t, x, y, ref)
    bounds = step_bounds(optimizer, dtype, flat_t, {n: ref["d" + n] for n in flat_t},
                         {n: E["d" + n] for n in flat_t}, state_t)
    stepped = hand_step(flat_t, grads, state_t)
    pairs = [Pair("loss", np.asarray(hand["loss"], dtype=np.float64), np.asarray(ref["loss"], dtype=np.float64),
                  None, 2 * E["loss"], None)]
    pairs += [Pair(b, hand[b], ref[b], None, 2 * E[b], None) for b in buffers if b in hand and b in ref]
    problem = stepped.problem
    if problem:
        result.records.append((t, ONE_STEP, "param", problem_record(STEP, dtype, (), problem, *tolerances(dtype))))
        if not hand_step.trusted and "CallTimedOut" in problem:
            result.error = problem
    else:
        pairs += [Pair(n, stepped.params[n], flat_next[n], None, 2 * bounds[n], None) for n in flat_next]
        if stepped.layout is not None:
            pairs += _state_pairs(stepped.layout, state_next, bounds)
    for pair, record in zip(pairs, _judge(pairs, dtype)):
        result.records.append((t, ONE_STEP, _kind(pair.name, buffers), record))
    result.one_step.append(parameter_error(pairs, flat_next) if not problem else math.nan)
    return stepped.layout is not None


def _trajectory(result, t, spec, hand_step, base_params, own: dict, ref, flat_next, state_next, torch_buffers,
                x, y, dtype, buffers) -> bool:
    """The hand side's own step t from ``own`` (its params, state and buffers, replaced by the new
    ones), its loss, parameters, state and buffers against torch's trajectory, as drift. False: the
    step failed (the trajectory ends there)."""
    params = model.rebuilt(spec, base_params, own["params"], own["buffers"])
    hand = model.hand_pass(spec, params, x, y)
    result.hand_loss.append(float(hand["loss"]))
    stepped = hand_step(own["params"], {n: hand["d" + n] for n in own["params"]}, own["state"])
    if stepped.problem:
        result.records.append((t, TRAJECTORY, "param",
                               problem_record(STEP, dtype, (), stepped.problem, *tolerances(dtype))))
        return False
    own.update(params=stepped.params, state=stepped.state, buffers=model.buffers_of(spec, hand))
    pairs = [Pair("loss", np.asarray(hand["loss"], dtype=np.float64), np.asarray(ref["loss"], dtype=np.float64),
                  None, None, None)]
    pairs += [Pair(n, own["params"][n], flat_next[n], None, None, None) for n in flat_next]
    pairs += [Pair(b, own["buffers"][b], torch_buffers[b], None, None, None)
              for b in buffers if b in own["buffers"] and b in torch_buffers]
    if stepped.layout is not None:
        pairs += _state_pairs(stepped.layout, state_next, None)
    for pair, record in zip(pairs, _judge(pairs, dtype)):
        result.records.append((t, TRAJECTORY, _kind(pair.name, buffers), record))
    result.drift.append(parameter_error(pairs, flat_next))
    return True
