"""Tensor-by-tensor comparison: one frozen record per tensor, a verdict without false alarms.

Tolerances live in one table, ``TOLERANCES = {dtype: (rtol, atol)}``, with
torch.testing.assert_close's defaults. An element agrees when
|h - t| <= atol + rtol·|t| + c (h: hand, t: torch; c the tensor's error budget
from verify.propagate: the difference carried in from upstream tensors plus the
rounding a correct evaluation of its own step may add); non-finite values agree
only where both sides hold the same one (nan with nan, +inf with +inf).

float32 needs one more look. Under cancellation (a bias gradient summing terms
of both signs, inputs near 1e3) torch's own float32 result can be far from the
exact answer, so an elementwise test against it cannot tell rounding from a
bug. For float32 cases the harness also runs the twin in float64 on the same
float32-rounded parameters and data: the reference r. Elements that miss the
elementwise test are then judged against r: they pass when
|h - r| <= atol + rtol·|r| + c + K·max|t - r|, i.e. when the hand result is no
further from the exact answer than K times the worst error torch's own float32
computation makes on that tensor (K = ``REFERENCE_FACTOR``). A formula bug
moves results by far more than rounding and still fails. The record keeps both
normwise errors, ‖h - r‖/‖r‖ and torch's ‖t - r‖/‖r‖.

``compare_all`` judges every tensor of a case in one vectorised pass (the
tensors are flattened into one array, per-tensor results come from segment
reductions); ``compare`` is the one-tensor form.
"""
from __future__ import annotations

import functools
import itertools
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


@functools.lru_cache(maxsize=4096)
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


def problem_record(name: str, dtype: str, shape: tuple, problem: str,
                   rtol: float, atol: float) -> Comparison:
    """A failing record for a tensor that could not be compared at all."""
    quantity, layer = split_name(name)
    nan = float("nan")
    return Comparison(name, quantity, layer, dtype, tuple(shape), int(np.prod(shape, dtype=np.int64)),
                      nan, nan, nan, nan, (), nan, nan, int(np.prod(shape, dtype=np.int64)),
                      rtol, atol, False, problem=problem)


@dataclass(frozen=True)
class Pair:
    """One tensor to judge: the hand value, torch's, and optionally the float64 reference and budget."""
    name: str
    hand: Any
    ref: Any
    ref64: Any = None
    floor: Any = None            # None: no budget


def _prepare(pair: Pair, dtype: str) -> tuple[np.ndarray | None, np.ndarray, str]:
    """(h, t, "") ready to compare, or (None, t, the problem that prevents it)."""
    t = np.asarray(pair.ref)
    hand = pair.hand
    if not isinstance(hand, (np.ndarray, np.generic, float, int)) or isinstance(hand, bool):
        return None, t, f"{type(hand).__name__} where torch has an array"
    h = np.asarray(hand)
    if pair.name == "loss":
        h, t = h.astype(dtype), t.astype(dtype)
    if h.shape != t.shape:
        hint = ": a missing transpose?" if h.shape == t.shape[::-1] and t.ndim == 2 else ""
        return None, t, f"shape {h.shape} where torch has {t.shape}{hint}"
    if h.dtype != t.dtype:
        return None, t, f"dtype {h.dtype} where torch has {t.dtype}"
    return h, t, ""


class _Segments:
    """Per-tensor reductions over the concatenation of several flattened tensors."""

    def __init__(self, sizes: list[int]):
        self.starts = np.fromiter(itertools.accumulate(sizes[:-1], initial=0), np.intp, len(sizes))
        self.ids = np.repeat(np.arange(len(sizes)), sizes)

    def max(self, v: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(v, self.starts)

    def sum(self, v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, self.starts)

    def norm(self, v: np.ndarray) -> np.ndarray:
        """‖v‖₂ of each segment. Where a square could overflow or underflow (max|v| beyond
        1e±150, or not finite), each segment is scaled by its max|v| first."""
        top = self.max(np.abs(v))
        if np.all(((top > 1e-150) & (top < 1e150)) | (top == 0)):
            return np.sqrt(self.sum(v * v))
        scale = np.where((top > 0) & np.isfinite(top), top, 1.0)
        return np.where(np.isfinite(top), scale * np.sqrt(self.sum((v / scale[self.ids]) ** 2)), top)

    def norm_rel(self, d: np.ndarray, ref: np.ndarray) -> np.ndarray:
        nd, nr = self.norm(d), self.norm(ref)
        return np.where(nr > 0, nd / np.where(nr > 0, nr, 1.0), np.where(nd == 0, 0.0, np.inf))

    def first_argmax(self, v: np.ndarray) -> np.ndarray:
        """The index of each segment's largest value (its first, on ties; v without NaN)."""
        at_max = v == self.max(v)[self.ids]
        return np.minimum.reduceat(np.where(at_max, np.arange(v.size), v.size), self.starts)


def compare_all(pairs: list[Pair], *, dtype: str, rtol: float, atol: float) -> list[Comparison]:
    """Judge every pair in one pass; one record each, in the order given."""
    records: list[Comparison | None] = [None] * len(pairs)
    ready = []
    for i, pair in enumerate(pairs):
        h, t, problem = _prepare(pair, dtype)
        if problem:
            records[i] = problem_record(pair.name, dtype, t.shape, problem, rtol, atol)
        elif h.size:
            ready.append((i, pair, h, t))
        else:
            records[i] = Comparison(pair.name, *split_name(pair.name), dtype, t.shape, 0, 0.0, 0.0, 0.0,
                                    0.0, (), float("nan"), float("nan"), 0, rtol, atol, True)
    if ready:
        for i, record in zip([i for i, *_ in ready], _judge(ready, dtype, rtol, atol)):
            records[i] = record
    return records


def _flat_like(c: Any, shape: tuple) -> np.ndarray:
    """A tensor's budget c, flattened, as float64 of the tensor's shape (a scalar is broadcast)."""
    c = np.asarray(c, dtype=np.float64)
    return c.ravel() if c.shape == shape else np.broadcast_to(c, shape).ravel()


def _unravel(i: int, shape: tuple) -> tuple[int, ...]:
    """np.unravel_index for one flat index, as a tuple of ints (C order)."""
    index = []
    for n in reversed(shape):
        i, r = divmod(i, n)
        index.append(r)
    return tuple(reversed(index))


def _judge(ready: list, dtype: str, rtol: float, atol: float) -> list[Comparison]:
    seg = _Segments([h.size for _, _, h, _ in ready])
    H = np.concatenate([h.ravel() for _, _, h, _ in ready])
    T = np.concatenate([t.ravel() for _, _, _, t in ready])
    F = 0.0 if all(p.floor is None for _, p, _, _ in ready) else \
        np.concatenate([_flat_like(0.0 if p.floor is None else p.floor, h.shape) for _, p, h, _ in ready])
    with_ref = all(p.ref64 is not None for _, p, _, _ in ready)
    with np.errstate(all="ignore"):
        H64, T64 = H.astype(np.float64), T.astype(np.float64)
        fin = np.isfinite(H64) & np.isfinite(T64)
        same_nonfinite = ~fin & ((H64 == T64) | (np.isnan(H64) & np.isnan(T64)))
        diff = np.where(fin, np.abs(H64 - T64), 0.0)
        plain = atol + rtol * np.abs(np.where(fin, T64, 0.0))
        bad = (fin & (diff > plain + F)) | (~fin & ~same_nonfinite)
        hand_ref = torch_ref = [None] * len(ready)
        if with_ref:
            R = np.concatenate([np.asarray(p.ref64, dtype=np.float64).ravel() for _, p, _, _ in ready])
            ok = np.isfinite(R) & fin
            r_ok = np.where(ok, R, 0.0)
            e_t = np.where(ok, np.abs(T64 - R), 0.0)
            budget = atol + rtol * np.abs(r_ok) + F + REFERENCE_FACTOR * seg.max(e_t)[seg.ids]
            bad &= ~(ok & (np.abs(H64 - R) <= budget))
            hand_ref = seg.norm_rel(np.where(ok, H64 - R, 0.0), r_ok).tolist()
            torch_ref = seg.norm_rel(e_t, r_ok).tolist()
        tz = np.where(T64 != 0, np.abs(T64), 1.0)
        rel = np.where(fin & (T64 != 0), diff / tz, np.where(diff > 0, np.inf, 0.0))
        ulp = np.where(fin, np.abs(_ordered(H) - _ordered(T)), 0)
        score = np.where(fin, diff / plain, np.where(bad, np.inf, 0.0))   # error in units of atol + rtol·|t|
        score[np.isnan(score)] = 0.0                                   # 0/0: exact where atol = rtol = 0
        n_bad = seg.sum(bad.astype(np.int64))
        score = np.where(n_bad[seg.ids] > 0, np.where(bad, score, -1.0), score)  # worst failing one
        worst = seg.first_argmax(score)
        stats = zip(seg.max(diff).tolist(), seg.max(rel).tolist(),
                    seg.norm_rel(diff, np.where(fin, T64, 0.0)).tolist(), seg.max(ulp).astype(float).tolist(),
                    (worst - seg.starts).tolist(), H64[worst].tolist(), T64[worst].tolist(),
                    n_bad.tolist(), hand_ref, torch_ref)
    records = []
    for (_, pair, h, t), (mx_abs, mx_rel, nrel, mx_ulp, w, h_w, t_w, nb, e_h, e_t) in zip(ready, stats):
        quantity, layer = split_name(pair.name)
        records.append(Comparison(
            name=pair.name, quantity=quantity, layer=layer, dtype=dtype, shape=t.shape,
            n_elements=h.size, max_abs_err=mx_abs, max_rel_err=mx_rel, norm_rel_err=nrel,
            max_ulp=mx_ulp, worst_index=_unravel(w, t.shape), hand_value=h_w, torch_value=t_w,
            n_mismatched=nb, rtol=rtol, atol=atol, passed=nb == 0, hand_ref_err=e_h, torch_ref_err=e_t))
    return records


def compare(name: str, hand: Any, ref: Any, *, dtype: str, rtol: float, atol: float,
            ref64: Any = None, floor: Any = None) -> Comparison:
    """Compare ``hand`` with torch's ``ref`` (for float32 also against the float64 reference
    ``ref64``); ``floor`` is the tensor's error budget c (verify.propagate)."""
    return compare_all([Pair(name, hand, ref, ref64, floor)], dtype=dtype, rtol=rtol, atol=atol)[0]
