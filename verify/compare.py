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
from typing import Any, NamedTuple

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


def _judged(**values: Any) -> Comparison:
    """Comparison(**values, problem=""), built without the frozen dataclass's __init__, which
    sets each of the 20 fields through object.__setattr__ (3 µs a record, 17 records a case,
    where the whole comparison of a case takes 0.3 ms). The record is as frozen as any other;
    tests/test_compare.py checks the two constructions are equal."""
    record = object.__new__(Comparison)
    fields = record.__dict__
    fields.update(values)
    fields["problem"] = ""
    return record


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


def _ulps(ht: np.ndarray) -> np.ndarray:
    """How many representable floats lie between ht[0] and ht[1], elementwise, as float64
    (exact up to 2**53). Floats map to integers that are consecutive for consecutive floats;
    their difference, which for float64 values of opposite signs can exceed int64, is taken
    modulo 2**64 and read as uint64, which holds any distance exactly."""
    ints = {np.dtype("float32"): np.int32, np.dtype("float64"): np.int64}[ht.dtype]
    i = ht.view(ints).astype(np.int64)
    o = np.where(i < 0, np.iinfo(ints).min - i, i)
    d = (o[0] - o[1]).view(np.uint64)
    return np.where(o[0] >= o[1], d, -d).astype(np.float64)


def problem_record(name: str, dtype: str, shape: tuple, problem: str,
                   rtol: float, atol: float) -> Comparison:
    """A failing record for a tensor that could not be compared at all."""
    quantity, layer = split_name(name)
    nan = float("nan")
    return Comparison(name, quantity, layer, dtype, tuple(shape), int(np.prod(shape, dtype=np.int64)),
                      nan, nan, nan, nan, (), nan, nan, int(np.prod(shape, dtype=np.int64)),
                      rtol, atol, False, problem=problem)


class Pair(NamedTuple):
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
    if type(hand) is np.ndarray and hand.shape == t.shape and hand.dtype == t.dtype and pair.name != "loss":
        return hand, t, ""                                  # the usual case, all checks below passed
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
    """Per-tensor reductions over the concatenation of several flattened tensors; each method
    takes a stack of such concatenations (shape (k, N)) and reduces all k rows at once."""

    def __init__(self, sizes: list[int]):
        self.starts = np.array([0, *itertools.accumulate(sizes[:-1])], dtype=np.intp)
        self.ids = np.repeat(np.arange(len(sizes)), sizes)

    def max(self, v: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(v, self.starts, axis=-1)

    def sum(self, v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, self.starts, axis=-1)

    def norm(self, v: np.ndarray, top: np.ndarray) -> np.ndarray:
        """‖v‖₂ of each segment of each row, given ``top``, each segment's max|v|. A segment
        where a square could overflow or underflow (max|v| beyond 1e±150, or not finite) is
        scaled by its max|v| first; the others are not, so that each segment's norm depends
        on that segment alone."""
        plain = np.sqrt(self.sum(v * v))
        safe = ((top > 1e-150) & (top < 1e150)) | (top == 0)
        if safe.all():
            return plain
        scale = np.where((top > 0) & np.isfinite(top), top, 1.0)
        scaled = scale * np.sqrt(self.sum((v / scale[..., self.ids]) ** 2))
        return np.where(safe, plain, np.where(np.isfinite(top), scaled, top))

    def first_argmax(self, v: np.ndarray) -> np.ndarray:
        """The index of each segment's largest value (its first, on ties; v without NaN)."""
        at_max = v == self.max(v)[self.ids]
        return np.minimum.reduceat(np.where(at_max, np.arange(v.size), v.size), self.starts)


def _norm_rel(nd: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """‖d‖/‖r‖ from the two norms: 0 where both are 0, inf where only ‖r‖ is (under the
    caller's np.errstate)."""
    q = nd / nr
    q[(nd == 0) & (nr == 0)] = 0.0
    return q


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
    HT = np.concatenate([h.ravel() for _, _, h, _ in ready] + [t.ravel() for _, _, _, t in ready])
    HT = HT.reshape(2, -1)                   # row 0 hand, row 1 torch
    F = 0.0 if all(p.floor is None for _, p, _, _ in ready) else \
        np.concatenate([_flat_like(0.0 if p.floor is None else p.floor, h.shape) for _, p, h, _ in ready])
    with_ref = all(p.ref64 is not None for _, p, _, _ in ready)
    with np.errstate(all="ignore"):
        HT64 = HT.astype(np.float64, copy=False)
        H64, T64 = HT64
        fin = np.isfinite(HT64).all(axis=0)
        everywhere = bool(fin.all())         # the usual case: no masking needed below
        Hf, Tf = HT64 if everywhere else np.where(fin, HT64, 0.0)
        diff, absT = np.abs(Hf - Tf), np.abs(Tf)
        plain = atol + rtol * absT
        bad = diff > plain + F
        if not everywhere:                   # non-finite: bad unless both hold the same value
            bad |= ~fin & ~((H64 == T64) | (np.isnan(H64) & np.isnan(T64)))
        rows = {"h-t": diff, "t": absT}      # whose norms and maxima are taken
        if with_ref:
            R = np.concatenate([np.asarray(p.ref64, dtype=np.float64).ravel() for _, p, _, _ in ready])
            ok = np.isfinite(R) & fin
            e_h, e_t = np.abs(HT64 - R)
            if not bool(ok.all()):
                R, e_h, e_t = np.where(ok, [R, e_h, e_t], 0.0)
            abs_r = np.abs(R)
            budget = atol + rtol * abs_r + F + REFERENCE_FACTOR * seg.max(e_t)[seg.ids]
            bad &= ~(ok & (e_h <= budget))
            rows.update({"h-r": e_h, "t-r": e_t, "r": abs_r})
        rel = diff / absT                    # inf where t = 0 and h is not; 0/0 below
        rel[np.isnan(rel)] = 0.0
        ulp = _ulps(HT)
        if not everywhere:
            ulp[~fin] = 0.0
        rows.update({"rel": rel, "ulp": ulp})
        stacked = np.stack(list(rows.values()))
        maxima = seg.max(stacked)
        k = len(rows) - 2                    # the rows before rel and ulp, whose norms are taken
        tops, norm = dict(zip(rows, maxima)), dict(zip(rows, seg.norm(stacked[:k], maxima[:k])))
        refs = [_norm_rel(norm["h-r"], norm["r"]).tolist(), _norm_rel(norm["t-r"], norm["r"]).tolist()] \
            if with_ref else [[None] * len(ready)] * 2
        score = diff / plain                 # error in units of atol + rtol·|t|
        score[np.isnan(score)] = 0.0         # 0/0: exact where atol = rtol = 0
        if not everywhere:
            score[~fin & bad] = np.inf
        n_bad = seg.sum(bad.astype(np.int64))
        score = np.where(bad | (n_bad[seg.ids] == 0), score, -1.0)  # the worst failing one, if any
        worst = seg.first_argmax(score)
        stats = zip(tops["h-t"].tolist(), tops["rel"].tolist(), _norm_rel(norm["h-t"], norm["t"]).tolist(),
                    tops["ulp"].tolist(), (worst - seg.starts).tolist(), *HT64[:, worst].tolist(),
                    n_bad.tolist(), *refs)
    records = []
    for (_, pair, h, t), (mx_abs, mx_rel, nrel, mx_ulp, w, h_w, t_w, nb, e_h, e_t) in zip(ready, stats):
        quantity, layer = split_name(pair.name)
        records.append(_judged(
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
