"""The shrink: failing cases grouped by a failure signature, each group shrunk by hypothesis
to a minimal counterexample."""
from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from typing import Any, Iterable, Sequence

import numpy as np
from hypothesis import Phase, find
from hypothesis import settings as hsettings
from hypothesis.errors import Flaky, HypothesisException, NoSuchExample

from verify.byo import isolation
from verify.byo.call import PROCESS_ENDED
from verify.core.optim_spec import OptimizerSpec
from verify.core.spec import NetSpec
from verify.core.verdict import step_key
from verify.harness import trace as trace_module
from verify.harness.trace import OPTIMIZER, CaseResult
from verify.sweep.draw import Case, pinned_constants
from verify.sweep.execute import CheckFn, run_case
from verify.sweep.strategies import cases

MAX_SHRUNK = 8              # distinct failures shrunk; further ones are listed as found
SHRINK_SECONDS = 10.0       # per distinct failure
SHRINK_SEARCH = 60          # examples hypothesis.find may generate before giving up
NOT_REPRODUCED = "did not reproduce when re-run"   # the note of a counterexample that failed once


def signature(result: CaseResult) -> tuple | None:
    """What makes two failures the same root cause; None for a passing case.

    The step that diverges first and the functions that step evaluates (verify.core.verdict.
    step_key: a hidden activation step does not read the loss, ∂W's step reads δ and a⁽ˡ⁻¹⁾
    and no activation's name), and for a step that reads f or f′, whether it sits on a kink;
    an exception: its type; a problem with the call: the key and the problem's kind; a tensor
    that could not be compared (a shape, a dtype or a type that is not torch's): its quantity
    and the problem's kind (with the dtype for a dtype). A ∂W or ∂b whose δ was not returned
    may stand for a kink convention in δ's step: it is keyed on whether its unit's z sits on a
    kink too. Failures that differ in any of these are distinct, even when one formula looks
    shared (f′ of two activations is two places to look); what the step does not read (the
    spec's other functions, its dtype, its depth) is counted per failure instead
    (``failure_groups``).
    """
    if result.passed:
        return None
    if result.error:
        return ("error", result.error.split(":", 1)[0])
    r = result.first_divergence or next(r for r in result.records if not r.passed)
    spec = result.spec
    if r.quantity == "":                 # a record about the call itself (verify.byo.call)
        return ("call", r.name, r.problem.split(":", 1)[0])
    if r.problem:
        kind = r.problem.split(" ", 1)[0]
        return (r.quantity, kind) + ((spec.dtype,) if kind == "dtype" else ())
    if r.quantity.startswith(OPTIMIZER):     # the training's update: the optimizer, the tensor's kind and entry
        entry = r.name.rpartition(".")[2] if "." in r.name else ""
        return (r.quantity, result.optimizer.partition(":")[0], "" if entry.isdigit() else entry)
    key = step_key(spec, r.name)
    if r.quantity in ("a", "delta"):
        return (*key, r.at_kink)      # a kink matters where f or f′ is read
    return (*key, "at a kink") if r.at_kink else key      # ∂W, ∂b whose δ was not returned


@dataclasses.dataclass(frozen=True)
class Seen:
    """Where one distinct failure was seen: how many failing cases share its signature, and
    the activations, losses, dtypes and depths of their specs."""
    cases: int
    activations: tuple[str, ...]
    losses: tuple[str, ...]
    dtypes: tuple[str, ...]
    depths: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def text(self) -> str:
        """'seen in 63 cases: activations relu, tanh; losses mse_loss; dtypes float32, float64; depths 1-4'."""
        lo, hi = min(self.depths), max(self.depths)
        depths = f"depth {lo}" if lo == hi else f"depths {lo}–{hi}"
        return (f"seen in {self.cases} case{'s' if self.cases != 1 else ''}: "
                f"{'activation' if len(self.activations) == 1 else 'activations'} {', '.join(self.activations)}; "
                f"{'loss' if len(self.losses) == 1 else 'losses'} {', '.join(self.losses)}; "
                f"{'dtype' if len(self.dtypes) == 1 else 'dtypes'} {', '.join(self.dtypes)}; {depths}")


def failure_groups(results: Iterable[CaseResult]) -> dict[tuple, Seen]:
    """Per signature of the failing ``results``: where it was seen (Seen)."""
    groups: dict[tuple, list[CaseResult]] = {}
    for r in results:
        sig = signature(r)
        if sig is not None:
            groups.setdefault(sig, []).append(r)

    def names(values: Iterable) -> tuple:
        return tuple(sorted(set(values)))

    return {sig: Seen(len(members), names(a for m in members for a in m.spec.activations),
                      names(m.spec.loss for m in members), names(m.spec.dtype for m in members),
                      names(m.spec.depth for m in members))
            for sig, members in groups.items()}


def size_key(result: CaseResult) -> tuple:
    """Smaller is simpler: depth, total width, batch, then the spec text and seed."""
    s = result.spec
    width = sum(int(np.prod(shape)) for shape in s.shapes) if hasattr(s, "layers") else sum(s.widths)
    return (s.depth, width, result.batch, len(result.optimizer), len(str(s)), str(s), result.seed)


def case_of(result: CaseResult) -> Case:
    """The case a result checked: (spec, data seed, batch), and its optimizer where one was drawn."""
    optimizer = (OptimizerSpec.parse(result.optimizer),) if result.optimizer else ()
    return (result.spec, result.seed, result.batch, *optimizer)


def _neighbourhood(spec: NetSpec, batch: int, optimizer: str = ""):
    """Cases no larger than (spec, batch), with its loss, dtype and activations (and its optimizer,
    the hyperparameters drawn again)."""
    acts = list(dict.fromkeys(spec.activations)) or None
    optimizers = {"optimizers": [optimizer.partition(":")[0]]} if optimizer else {}
    if hasattr(spec, "layers"):          # a stack: stacks no larger, with its loss, dtype and activations
        width = max(int(np.prod(s)) for s in spec.shapes)
        return cases(max_batch=max(batch, 2), max_depth=spec.depth, max_width=max(width, 1), activations=acts,
                     losses=[spec.loss], dtypes=[spec.dtype], architectures=["stack"], **optimizers)
    return cases(max_batch=batch, max_depth=spec.depth, max_width=max(spec.widths),
                 activations=acts, losses=[spec.loss], dtypes=[spec.dtype], **optimizers)


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
        again = run_case(check_fn, *case_of(found))
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
    with _unobserved(), pinned_constants():
        try:
            find(_neighbourhood(found.spec, found.batch, found.optimizer), same_failure, settings=opts,
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


