"""Localising a root cause the implementation's own tensors cannot show.

An implementation that returns only loss, ∂J/∂W and ∂J/∂b hides its δ. When its first
diverging tensor is a gradient, the minimal counterexample is run again one example at a
time: for m = 1, ∂J/∂b⁽ˡ⁾ = δ⁽ˡ⁾ and ∂J/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀa⁽ˡ⁻¹⁾ is an outer product, so each
δ⁽ˡ⁾ can be read back (from the bias gradient, or from the column of ∂J/∂W⁽ˡ⁾ with the
largest |a⁽ˡ⁻¹⁾ⱼ|) and judged against torch's δ⁽ˡ⁾ for that example within its a priori
bound. The first layer, from L down, whose recovered δ diverges is named; where a δ cannot
be recovered, the sentence says which formulas remain consistent with what was seen.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from verify.core.compare import Pair, compare_all
from verify.core.data import draw_case
from verify.harness.diagnose import hint, sup
from verify.harness.trace import CaseResult, allowances, compare_many, exact_trace, trace_data

GRADIENTS = ("dW", "db", "dx", "W_after_step", "b_after_step")
MAX_EXAMPLES = 8


def with_location(result: CaseResult, impl: Any) -> CaseResult:
    """``result`` with ``located`` filled in where its root cause is a gradient and the
    implementation returned no δ; unchanged otherwise."""
    first = result.first_divergence
    if impl is None or first is None or first.quantity not in GRADIENTS or hasattr(result.spec, "layers") or \
            any(r.quantity == "delta" for r in result.records):
        return result
    return dataclasses.replace(result, located=localise(result, impl))


def _recovered(spec: Any, hand: dict, exact: dict, case: Any, bound: dict, l: int
               ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(δ⁽ˡ⁾ read back from one example's gradients, its allowance, from what) or None."""
    db = hand.get(f"db{l}")
    if spec.bias and isinstance(db, np.ndarray) and db.shape == (spec.widths[l],):
        return db.astype(np.float64)[None, :], bound[f"db{l}"][None, :], f"∂J/∂b{sup(l)}"
    dW = hand.get(f"dW{l}")
    if not isinstance(dW, np.ndarray) or dW.shape != (spec.widths[l], spec.widths[l - 1]):
        return None
    a = np.asarray(case.x if l == 1 else exact[f"a{l - 1}"], dtype=np.float64)[0]
    j = int(np.argmax(np.abs(a)))
    if a[j] == 0:
        return None
    inferred = dW.astype(np.float64)[:, j] / a[j]
    return inferred[None, :], (bound[f"dW{l}"][:, j] / abs(a[j]))[None, :], f"∂J/∂W{sup(l)}"


def localise(result: CaseResult, impl: Any) -> str:
    """The sentence for ``result.located``: which δ⁽ˡ⁾ (or which per-example gradient) is the
    first to diverge when the implementation is called on single examples."""
    spec = result.spec
    case = draw_case(spec, result.seed, result.batch)
    lost: set[int] = set()
    for i in range(min(case.x.shape[0], MAX_EXAMPLES)):
        one = dataclasses.replace(case, x=case.x[i:i + 1], y=case.y[i:i + 1])
        run = trace_data(spec, one, result.seed, 1, impl=impl)
        if run.error:
            return f"called on example {i} alone, the implementation raised {run.error}"
        exact = exact_trace(run)
        bound = allowances(run)
        judged = {r.name: r for r in compare_many([run])[0]}
        agreed: set[int] = set()
        for l in range(spec.depth, 0, -1):
            got = _recovered(spec, run.hand, exact, one, bound, l)
            if got is None:
                lost.add(l)
            else:
                inferred, allowance, source = got
                record = compare_all([Pair(f"delta{l}", inferred, exact[f"delta{l}"], None, allowance)],
                                     dtype="float64", rtol=run.rtol, atol=run.atol)[0]
                if not record.passed:
                    _, where = hint(spec, f"delta{l}")
                    below = l + 1
                    also = "" if l == spec.depth else (
                        f" while δ{sup(below)} agrees" if below in agreed else
                        f" (δ{sup(below)} could not be read back)")
                    return (f"δ{sup(l)}, read back from {source} with example {i} alone (m = 1), is the "
                            f"first to diverge{also}: look at {where}")
                agreed.add(l)
                dW = judged.get(f"dW{l}")
                if dW is not None and not dW.passed and source != f"∂J/∂W{sup(l)}":
                    _, where = hint(spec, f"dW{l}")
                    return (f"∂J/∂W{sup(l)} with example {i} alone (m = 1) diverges while δ{sup(l)}, read "
                            f"back from {source}, agrees: look at {where}")
    if lost:
        layers = ", ".join(f"δ{sup(l)}" for l in sorted(lost))
        return (f"{layers} could not be read back on single examples (a⁽ˡ⁻¹⁾ is 0 there and there is "
                f"no bias); what was seen is consistent with a wrong δ there or a wrong gradient formula")
    return ("every δ read back from single examples (m = 1) agrees with torch's, and so does each "
            "example's ∂J/∂W: look at how the gradients combine the batch (a sum over examples, "
            "the loss's 1/m) and at the step itself")
