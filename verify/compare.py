"""Tensor-by-tensor comparison: one frozen record per tensor, a verdict without false alarms.

Tolerances live in one table, ``TOLERANCES = {dtype: (rtol, atol)}``, with
torch.testing.assert_close's defaults. An element agrees when
|h - t| <= atol + rtol·|t| + c (h: hand, t: torch; c the difference carried in
from upstream tensors through linear steps, see verify.propagate); non-finite values agree only
where both sides hold the same one (nan with nan, +inf with +inf).

float32 needs more than that. Under cancellation (a bias gradient summing
terms of both signs, a softmax row summing to 1, inputs near 1e3) torch's own
float32 result can be far from the exact answer, or exact by luck, so an
elementwise test against it cannot tell rounding from a bug. For float32
cases the harness therefore also runs the twin (1) in float64 on the same
float32-rounded parameters and data, the reference r, and (2) in float32 once
more with x and the parameters nudged by one rounding unit (×(1 ± 2⁻²³)), which
shows how large torch's float32 error on this case can be when luck does not
help. Torch's float32 error on a tensor is e = max|t - r| over both runs.
Elements that miss the elementwise test are then judged against r: they pass
when |h - r| <= atol + rtol·|r| + K·e, i.e. when the hand result is no further
from the exact answer than K times torch's own float32 error on that tensor
(K = ``REFERENCE_FACTOR``). A formula bug moves results by far more than
rounding and still fails. The record keeps both normwise errors,
‖h - r‖/‖r‖ and torch's ‖t - r‖/‖r‖ (the larger of its two runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
}
REFERENCE_FACTOR = 10.0


def tolerances(dtype: str, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    """(rtol, atol) for dtype; override both or neither, as torch.testing.assert_close."""
    if (rtol is None) != (atol is None):
        raise ValueError("give both rtol and atol, or neither")
    return (rtol, atol) if rtol is not None else TOLERANCES[dtype]


@dataclass(frozen=True)
class Comparison:
    """One tensor of one case, hand against torch."""
    name: str                    # trace key: 'delta2', 'loss', 'W1_after'
    quantity: str                # z a delta dW db dx loss W_after_step b_after_step
    layer: int | None            # the seed's l; None for loss and dx
    dtype: str
    shape: tuple
    n_elements: int
    max_abs_err: float
    max_rel_err: float
    norm_rel_err: float
    max_ulp: float
    worst_index: tuple
    hand_value: float
    torch_value: float
    n_mismatched: int
    rtol: float
    atol: float
    passed: bool
    hand_ref_err: float | None = None    # ‖h - r‖/‖r‖ against the float64 reference
    torch_ref_err: float | None = None   # ‖t - r‖/‖r‖
    problem: str = ""                    # why it could not be compared (shape, dtype, missing, ...)


_QUANTITIES = (("delta", "delta"), ("z", "z"), ("a", "a"), ("dW", "dW"), ("db", "db"))


def split_name(name: str) -> tuple[str, int | None]:
    """'delta2' -> ('delta', 2); 'W1_after' -> ('W_after_step', 1); 'loss' -> ('loss', None)."""
    if name.endswith("_after"):
        return f"{name[0]}_after_step", int(name[1:-6])
    for prefix, quantity in _QUANTITIES:
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return quantity, int(name[len(prefix):])
    return name, None


def _ordered(x: np.ndarray) -> np.ndarray:
    """Map floats to integers that are consecutive for consecutive floats (for ULP distance)."""
    ints = {np.dtype("float32"): np.int32, np.dtype("float64"): np.int64}[x.dtype]
    i = x.view(ints).astype(np.int64)
    return np.where(i < 0, np.iinfo(ints).min - i, i)


def _norm(v: np.ndarray) -> float:
    """‖v‖₂ without overflow: scaled by max|v| first."""
    top = float(np.max(np.abs(v), initial=0.0))
    return top * float(np.linalg.norm(v.ravel() / top)) if 0 < top < np.inf else top


def _norm_rel(d: np.ndarray, ref: np.ndarray) -> float:
    nd, nr = _norm(d), _norm(ref)
    return nd / nr if nr > 0 else (0.0 if nd == 0 else float("inf"))


def problem_record(name: str, dtype: str, shape: tuple, problem: str,
                   rtol: float, atol: float) -> Comparison:
    """A failing record for a tensor that could not be compared at all."""
    quantity, layer = split_name(name)
    nan = float("nan")
    return Comparison(name, quantity, layer, dtype, tuple(shape), int(np.prod(shape, dtype=np.int64)),
                      nan, nan, nan, nan, (), nan, nan, int(np.prod(shape, dtype=np.int64)),
                      rtol, atol, False, problem=problem)


def compare(name: str, hand: Any, ref: np.ndarray, *, dtype: str, rtol: float, atol: float,
            ref64: np.ndarray | None = None, nudged: np.ndarray | None = None,
            floor: np.ndarray | float = 0.0) -> Comparison:
    """Compare ``hand`` with torch's ``ref``; for float32 also with the float64 reference
    ``ref64``, torch's error being judged from ``ref`` and its ``nudged`` float32 run.
    ``floor`` is the difference carried in from upstream tensors (verify.propagate)."""
    t = np.asarray(ref)
    shape = t.shape
    if not isinstance(hand, (np.ndarray, np.generic, float, int)) or isinstance(hand, bool):
        return problem_record(name, dtype, shape, f"{type(hand).__name__} where torch has an array", rtol, atol)
    h = np.asarray(hand)
    if name == "loss":
        h, t = h.astype(dtype), t.astype(dtype)
    if h.shape != shape:
        hint = ": a missing transpose?" if h.shape == shape[::-1] and len(shape) == 2 else ""
        return problem_record(name, dtype, shape, f"shape {h.shape} where torch has {shape}{hint}", rtol, atol)
    if h.dtype != t.dtype:
        return problem_record(name, dtype, shape, f"dtype {h.dtype} where torch has {t.dtype}", rtol, atol)

    with np.errstate(all="ignore"):
        fin = np.isfinite(h) & np.isfinite(t)
        same_nonfinite = ~fin & ((h == t) | (np.isnan(h) & np.isnan(t)))
        diff = np.where(fin, np.abs(h - t), 0.0)
        allowed = atol + rtol * np.abs(np.where(fin, t, 0.0)) + floor
        bad = (fin & (diff > allowed)) | (~fin & ~same_nonfinite)
        hand_ref_err = torch_ref_err = None
        if ref64 is not None:
            r = np.asarray(ref64, dtype=np.float64)
            hh, tt = h.astype(np.float64), t.astype(np.float64)
            ok = np.isfinite(r) & fin
            runs = [tt] + ([np.asarray(nudged, dtype=np.float64)] if nudged is not None else [])
            e_runs = [np.where(ok & np.isfinite(run), np.abs(run - r), 0.0) for run in runs]
            e_t = max(float(e.max(initial=0.0)) for e in e_runs)
            budget = atol + rtol * np.abs(np.where(ok, r, 0.0)) + floor + REFERENCE_FACTOR * e_t
            bad = bad & ~(ok & (np.abs(hh - r) <= budget))
            r_ok = np.where(ok, r, 0.0)
            hand_ref_err = _norm_rel(np.where(ok, hh - r, 0.0), r_ok)
            torch_ref_err = max(_norm_rel(e, r_ok) for e in e_runs)
        rel = np.where(fin & (t != 0), diff / np.abs(np.where(t != 0, t, 1)), np.where(diff > 0, np.inf, 0.0))
        ulp = np.where(fin, np.abs(_ordered(h) - _ordered(t)), 0)
        score = np.where(fin, diff / allowed, np.where(bad, np.inf, 0.0))   # error in tolerances
        score = np.where(bad, score, -1.0) if bad.any() else score          # the worst failing one
    flat = int(np.argmax(score)) if h.size else 0
    idx = tuple(int(i) for i in np.unravel_index(flat, shape)) if h.size else ()
    return Comparison(
        name=name, quantity=split_name(name)[0], layer=split_name(name)[1], dtype=dtype,
        shape=tuple(shape), n_elements=int(h.size),
        max_abs_err=float(diff.max(initial=0.0)), max_rel_err=float(rel.max(initial=0.0)),
        norm_rel_err=_norm_rel(diff, np.where(fin, t, 0.0)), max_ulp=float(ulp.max(initial=0)),
        worst_index=idx, hand_value=float(h[idx]) if h.size else float("nan"),
        torch_value=float(t[idx]) if h.size else float("nan"),
        n_mismatched=int(bad.sum()), rtol=rtol, atol=atol, passed=not bad.any(),
        hand_ref_err=hand_ref_err, torch_ref_err=torch_ref_err,
    )
