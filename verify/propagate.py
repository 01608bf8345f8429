"""How far apart two correct implementations may land: each tensor's error budget c.

Two correct implementations round differently, and a step can magnify what it
inherits or what it rounds. Each tensor's budget c (added to atol + rtol·|t|)
has two parts, both computed from torch's trace (magnitudes |·|) and the
differences Δ = |hand - torch| already seen upstream:

1. carried: the difference its inputs already showed, through the step that made it.
   A δ⁽ˡ⁾ agreeing to 6e-8, times a⁽ˡ⁻¹⁾ ≈ 1e3, makes ∂J/∂W⁽ˡ⁾ differ by 6e-5.
2. rounding: the error a correct evaluation of the step itself may add, Higham's
   bound γ_n·(sum of the magnitudes of its terms), γ_n = (n + 2)·u, u the unit
   roundoff. It matters only under cancellation: a softmax backward
   a ⊙ (g - Σ gⱼaⱼ) with g ≈ 1e11 from a saturated binary_cross_entropy.

    tensor     carried                            rounding (n terms summed)
    J          G·|J(hand's a⁽ᴸ⁾) - J(torch's a⁽ᴸ⁾)|  γ_{m·k} Σ|ℓ| / N
    δ⁽ᴸ⁾       G·|the output step on hand's z⁽ᴸ⁾, a⁽ᴸ⁾ - on torch's|  (plus the δ rounding below)
    z⁽ˡ⁾       |Δa⁽ˡ⁻¹⁾||W⁽ˡ⁾|ᵀ                   γ_{n_{l-1}} (|a⁽ˡ⁻¹⁾||W⁽ˡ⁾|ᵀ + |b⁽ˡ⁾|)
    a⁽ˡ⁾       G·|Δz⁽ˡ⁾| (row max: softmax)        γ_k |a⁽ˡ⁾| for softmax/log_softmax rows
    δ⁽ˡ⁾       G·|Δδ⁽ˡ⁺¹⁾||W⁽ˡ⁺¹⁾| + |g ⊙ f′(hand's z⁽ˡ⁾) - g ⊙ f′(torch's z⁽ˡ⁾)|
                                                  γ_n G·|g| (g = δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾, or ∂J/∂a⁽ᴸ⁾), and for
                                                  softmax γ_k |a|(|g| + Σ|g||a|), log_softmax γ_k (|g| + e^a Σ|g|)
    ∂J/∂W⁽ˡ⁾   |Δδ⁽ˡ⁾|ᵀ|a⁽ˡ⁻¹⁾| + |δ⁽ˡ⁾|ᵀ|Δa⁽ˡ⁻¹⁾|  γ_m |δ⁽ˡ⁾|ᵀ|a⁽ˡ⁻¹⁾|
    ∂J/∂b⁽ˡ⁾   Σ_rows |Δδ⁽ˡ⁾|                      γ_m Σ_rows |δ⁽ˡ⁾|
    ∂J/∂x      |Δδ⁽¹⁾||W⁽¹⁾|                       γ_{n₁} |δ⁽¹⁾||W⁽¹⁾|
    W, b after η·|Δ∂J/∂W|, η·|Δ∂J/∂b|             γ_1 (|W| + η|∂J/∂W|)

For J, δ⁽ᴸ⁾ and the f′ factor of δ⁽ˡ⁾ the carried part is measured rather than bounded:
handimpl's own step is evaluated on both sides' z, a and the results subtracted. At a kink
this is 0 when both sides hold the same z (exactly 0, say: a wrong kink convention still
fails) and excuses the jump only where rounding put the two z on different sides of it.

G = 2 bounds |f'| for every registered activation (selu's 1.76 is the largest).
A formula bug is not excused: it moves a tensor by about the size of its terms,
not by a few units of roundoff of them, nor by what its inputs already differed.
Non-finite magnitudes give no budget (non-finite values must match exactly).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.network import split_loss_kwargs

GAIN = 2.0
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}

# Σ|terms| of the row-wise backward steps (the activations that are not elementwise), given
# a = the activation's output and g = |upstream gradient|: softmax a ⊙ (g - Σ gⱼaⱼ),
# log_softmax g - e^a Σ gⱼ.
ROW_VJP_TERMS = {
    "softmax": lambda a, g: np.abs(a) * (g + (g * np.abs(a)).sum(axis=1, keepdims=True)),
    "log_softmax": lambda a, g: g + np.exp(a) * g.sum(axis=1, keepdims=True),
}
assert set(ROW_VJP_TERMS) == {n for n, f in ACTIVATIONS.items() if not f.elementwise}


def _delta(hand: dict, ref: dict, name: str) -> np.ndarray:
    """|hand - torch| for an upstream tensor, 0 where it is unusable (missing, misshapen, non-finite)."""
    t = np.asarray(ref[name], dtype=np.float64)
    h = hand.get(name)
    if not isinstance(h, np.ndarray) or h.shape != t.shape:
        return np.zeros_like(t)
    with np.errstate(invalid="ignore"):
        d = np.abs(h.astype(np.float64) - t)
    return np.where(np.isfinite(d), d, 0.0)


def _output_step_difference(spec: Any, hand: dict, ref: dict, y: np.ndarray, what: str) -> np.ndarray:
    """Carried difference of J or δ⁽ᴸ⁾: handimpl's own step evaluated on hand's and on torch's
    z⁽ᴸ⁾, a⁽ᴸ⁾, and the two results subtracted. No linear bound serves here: binary_cross_entropy's
    log(1 - a) turns one rounding unit of a ≈ 1 - 1e-14 into a difference of 1e-2, while its
    gradient, clamped at 1e-12 by torch, would not show it."""
    L = spec.depth
    sides = []
    for trace in (hand, ref):
        z, a = trace.get(f"z{L}"), trace.get(f"a{L}")
        t_a = np.asarray(ref[f"a{L}"])
        if not all(isinstance(v, np.ndarray) and v.shape == t_a.shape for v in (z, a)):
            return np.zeros(() if what == "loss" else t_a.shape)
        sides.append((z.astype(np.float64), a.astype(np.float64)))
    loss, act = LOSSES[spec.loss], ACTIVATIONS[spec.activations[-1]]
    reduction, opts = split_loss_kwargs(spec)
    if what == "loss":
        h, t = (loss.value(a, y, reduction, **opts) for _, a in sides)
    else:
        h, t = (act.vjp(z, a, loss.grad(a, y, reduction, **opts)) for z, a in sides)
    return GAIN * np.abs(h - t)


def _hidden_step_difference(act: str, hand: dict, ref: dict, l: int, g: np.ndarray) -> np.ndarray:
    """Carried difference of δ⁽ˡ⁾ through f′: the step g ⊙ f′(z⁽ˡ⁾) evaluated on hand's and on
    torch's z⁽ˡ⁾, a⁽ˡ⁾ with the same g. It is 0 unless the two z differ, and large only where
    they straddle a kink: z = ±1e-22 around selu's 0 gives f′ = 1.05 on one side, 1.76 on the other."""
    z, a = hand.get(f"z{l}"), hand.get(f"a{l}")
    t_z = np.asarray(ref[f"z{l}"])
    if not all(isinstance(v, np.ndarray) and v.shape == t_z.shape for v in (z, a)):
        return np.zeros(t_z.shape)
    f = ACTIVATIONS[act]
    mine = f.vjp(z.astype(np.float64), a.astype(np.float64), g)
    theirs = f.vjp(t_z.astype(np.float64), np.asarray(ref[f"a{l}"], dtype=np.float64), g)
    return np.abs(mine - theirs)


def floors(spec: Any, hand: dict, ref: dict, case: Any, lr: float) -> dict[str, np.ndarray]:
    """The budget c for every traced tensor."""
    u = UNIT_ROUNDOFF[spec.dtype]
    L, n, m = spec.depth, spec.widths, case.x.shape[0]
    f64 = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    absW = [None] + [np.abs(f64(W)) for W, _ in case.params]
    absb = [None] + [0.0 if b is None else np.abs(f64(b)) for _, b in case.params]
    A = [f64(case.x)] + [f64(ref[f"a{l}"]) for l in range(1, L + 1)]
    absA = [np.abs(a) for a in A]
    dA = [np.zeros_like(A[0])] + [_delta(hand, ref, f"a{l}") for l in range(1, L + 1)]
    D = [None] + [f64(ref[f"delta{l}"]) for l in range(1, L + 1)]            # δ⁽ˡ⁾, torch's
    absD = [None] + [np.abs(d) for d in D[1:]]
    dD = [None] + [_delta(hand, ref, f"delta{l}") for l in range(1, L + 1)]
    loss = LOSSES[spec.loss]
    reduction, opts = split_loss_kwargs(spec)
    out: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        aL = f64(ref[f"a{L}"])
        y = case.y if case.y.dtype == np.int64 else f64(case.y)
        terms = np.abs(loss.terms(aL, y, **opts))
        out["loss"] = np.asarray((aL.size + 2) * u * terms.sum() / loss.count(aL, reduction)) + \
            _output_step_difference(spec, hand, ref, y, "loss")
        g_mag = np.abs(loss.grad(aL, y, reduction, **opts))   # |∂J/∂a⁽ᴸ⁾|
        for l in range(L, 0, -1):
            act = spec.activations[l - 1]
            k = n[l]
            gamma_vjp = (n[l + 1] + 2) * u if l < L else 4 * u
            if l < L:
                g = D[l + 1] @ f64(case.params[l][0])                       # δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾
                g_mag = absD[l + 1] @ absW[l + 1]
                out[f"delta{l}"] = GAIN * (dD[l + 1] @ absW[l + 1]) + \
                    _hidden_step_difference(act, hand, ref, l, g)
            else:
                out[f"delta{l}"] = _output_step_difference(spec, hand, ref, y, "delta")
            gamma_row = (k + 2) * u
            row_terms = ROW_VJP_TERMS.get(act)
            if row_terms is not None:
                out[f"delta{l}"] += gamma_row * row_terms(A[l], g_mag)
            out[f"delta{l}"] += gamma_vjp * GAIN * g_mag
            absd, dd = absD[l], dD[l]
            out[f"z{l}"] = dA[l - 1] @ absW[l].T + (n[l - 1] + 2) * u * (absA[l - 1] @ absW[l].T + absb[l])
            dz = _delta(hand, ref, f"z{l}")
            if ACTIVATIONS[act].elementwise:
                out[f"a{l}"] = GAIN * dz
            else:
                out[f"a{l}"] = GAIN * dz.max(axis=1, keepdims=True) + gamma_row * absA[l]
            out[f"dW{l}"] = dd.T @ absA[l - 1] + absd.T @ dA[l - 1] + (m + 2) * u * (absd.T @ absA[l - 1])
            dW = np.abs(f64(ref[f"dW{l}"]))
            out[f"W{l}_after"] = lr * _delta(hand, ref, f"dW{l}") + 3 * u * (absW[l] + lr * dW)
            if spec.bias:
                out[f"db{l}"] = dd.sum(axis=0) + (m + 2) * u * absd.sum(axis=0)
                out[f"b{l}_after"] = lr * _delta(hand, ref, f"db{l}") + \
                    3 * u * (absb[l] + lr * np.abs(f64(ref[f"db{l}"])))
        out["dx"] = dD[1] @ absW[1] + (n[1] + 2) * u * (absD[1] @ absW[1])
    return {name: np.where(np.isfinite(c), c, 0.0) for name, c in out.items()}
