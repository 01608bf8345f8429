"""Accepted upstream differences, carried through the linear steps of the trace.

Two correct implementations round differently, and a linear step multiplies
the difference it inherits by the magnitudes it meets: δ⁽ˡ⁾ agreeing to 6e-8
times a⁽ˡ⁻¹⁾ of size 1e3 gives ∂J/∂W⁽ˡ⁾ differing by 6e-5, over float32's atol,
although each step was computed correctly. So each tensor's budget also gets
the difference its inputs already showed (Δ = |hand - torch|), carried through
the step that made it, with magnitudes |·| taken from torch's trace:

    z⁽ˡ⁾      |Δa⁽ˡ⁻¹⁾| |W⁽ˡ⁾|ᵀ
    a⁽ˡ⁾      G·|Δz⁽ˡ⁾|                 (G·row max for softmax/log_softmax)
    δ⁽ˡ⁾, l<L G·|Δδ⁽ˡ⁺¹⁾| |W⁽ˡ⁺¹⁾|
    ∂J/∂W⁽ˡ⁾  |Δδ⁽ˡ⁾|ᵀ|a⁽ˡ⁻¹⁾| + |δ⁽ˡ⁾|ᵀ|Δa⁽ˡ⁻¹⁾|
    ∂J/∂b⁽ˡ⁾  Σ_rows |Δδ⁽ˡ⁾|
    ∂J/∂x     |Δδ⁽¹⁾| |W⁽¹⁾|
    W, b after the step   η·|Δ∂J/∂W|, η·|Δ∂J/∂b|

G = 2 bounds |f'| for every registered activation (selu's 1.76 is the largest).
A formula bug is not excused: its tensor differs by far more than its inputs did.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from handimpl import ACTIVATIONS

GAIN = 2.0


def _delta(hand: dict, ref: dict, name: str) -> np.ndarray:
    """|hand - torch| for an upstream tensor, 0 where it is unusable (missing, misshapen, non-finite)."""
    t = np.asarray(ref[name], dtype=np.float64)
    h = hand.get(name)
    if not isinstance(h, np.ndarray) or h.shape != t.shape:
        return np.zeros_like(t)
    with np.errstate(invalid="ignore"):
        d = np.abs(h.astype(np.float64) - t)
    return np.where(np.isfinite(d), d, 0.0)


def floors(spec: Any, hand: dict, ref: dict, params: list, x: np.ndarray, lr: float) -> dict[str, np.ndarray]:
    """The propagated budget for every traced tensor the table above covers."""
    L = spec.depth
    absW = [None] + [np.abs(np.asarray(W, dtype=np.float64)) for W, _ in params]
    absA = [np.abs(np.asarray(x, dtype=np.float64))] + \
        [np.abs(np.asarray(ref[f"a{l}"], dtype=np.float64)) for l in range(1, L + 1)]
    dA = [np.zeros_like(absA[0])] + [_delta(hand, ref, f"a{l}") for l in range(1, L + 1)]
    out: dict[str, np.ndarray] = {}
    for l in range(1, L + 1):
        out[f"z{l}"] = dA[l - 1] @ absW[l].T
        dz = _delta(hand, ref, f"z{l}")
        if ACTIVATIONS[spec.activations[l - 1]].elementwise:
            out[f"a{l}"] = GAIN * dz
        else:
            out[f"a{l}"] = GAIN * np.broadcast_to(dz.max(axis=1, keepdims=True), dz.shape)
        dd = _delta(hand, ref, f"delta{l}")
        if l < L:
            out[f"delta{l}"] = GAIN * (_delta(hand, ref, f"delta{l + 1}") @ absW[l + 1])
        absd = np.abs(np.asarray(ref[f"delta{l}"], dtype=np.float64))
        out[f"dW{l}"] = dd.T @ absA[l - 1] + absd.T @ dA[l - 1]
        out[f"W{l}_after"] = lr * _delta(hand, ref, f"dW{l}")
        if spec.bias:
            out[f"db{l}"] = dd.sum(axis=0)
            out[f"b{l}_after"] = lr * _delta(hand, ref, f"db{l}")
    out["dx"] = _delta(hand, ref, "delta1") @ absW[1]
    return out
