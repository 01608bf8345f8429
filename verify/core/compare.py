"""Tensor-by-tensor comparison: one frozen record per tensor.

An element of the implementation's result h agrees when it lies within its allowance of the
reference r:

    |h - r| <= E·(1 + u_r/u) + atol + rtol·|r|

r is the exact result as near as the harness can compute it: for a float32 case, torch's
twin run in float64 on the same float32 parameters and data; for a float64 case, torch's
own float64 result. E is the a priori bound of verify.core.bounds on how far any correct
evaluation in the case's dtype may land from the exact result; the reference itself is a
correct evaluation in its own dtype, off by at most E·u_r/u (u, u_r the two unit
roundoffs: 2⁻²⁹·E for a float32 case, E itself for a float64 one). atol + rtol·|r| is the
floor from ``TOLERANCES``, a few units of roundoff: the allowance never depends on what
any other tensor of the case did. Non-finite values agree only where torch holds the same
one (nan with nan, +inf with +inf).

A record keeps both views: its verdict (``passed``, ``status``, the worst element by
|h - r|/allowance, ``margin`` = the largest such ratio) and its statistics against torch's
own result t in the case's dtype (max_abs_err, max_rel_err, norm_rel_err, max_ulp,
hand_value, torch_value), which is what a user sees beside their own numbers.

``compare_all`` judges every tensor of a case in one vectorised pass (the tensors are
flattened into one array, per-tensor results come from segment reductions); ``compare``
is the one-tensor form.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

# The floor of every allowance: (rtol, atol) per dtype, about two units of roundoff and the
# smallest normal number. Override both or neither (as torch.testing.assert_close).
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (2.0**-23, 2.0**-126),
    "float64": (2.0**-52, 2.0**-1022),
}
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
# agrees: within the tight allowance; imprecise: within the textbook allowance only (it passes,
# with a precision note); inherits and diverges fail (verify.core.verdict).
STATUSES = ("agrees", "imprecise", "inherits", "diverges")
PASSING = ("agrees", "imprecise")


def tolerances(dtype: str, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    """(rtol, atol) for dtype; override both or neither, as torch.testing.assert_close."""
    if (rtol is None) != (atol is None):
        raise ValueError("give both rtol and atol, or neither")
    return (rtol, atol) if rtol is not None else TOLERANCES[dtype]  # type: ignore[return-value]  # both given


@dataclass(frozen=True)
class Comparison:
    """One tensor of one case, hand against torch."""
    name: str                    # trace key: 'delta2', 'loss', 'W1_after'
    quantity: str                # z a delta dW db dx loss W_after_step b_after_step
    layer: int | None            # the tutorial's l; None for loss and dx
    dtype: str
    shape: tuple[int, ...]
    n_elements: int
    max_abs_err: float
    max_rel_err: float
    norm_rel_err: float
    max_ulp: float
    worst_index: tuple[int, ...]
    hand_value: float
    torch_value: float
    n_mismatched: int
    rtol: float
    atol: float
    passed: bool                         # status is 'agrees' or 'imprecise'
    hand_ref_err: float | None = None    # ‖h - r‖/‖r‖ against the float64 reference (float32 cases)
    torch_ref_err: float | None = None   # ‖t - r‖/‖r‖
    problem: str = ""                    # why it could not be compared (shape, dtype, missing, ...)
    status: str = "agrees"               # agrees | imprecise | inherits | diverges (verify.core.verdict)
    margin: float = 0.0                  # max |h - r|/allowance over the finite elements
    allowed: float = float("nan")        # the allowance at worst_index (the textbook one where it was used)
    reference_value: float = float("nan")  # r at worst_index
    torch_margin: float | None = None    # max |t - r|/allowance (float32: torch's own float32 result)
    note: str = ""                       # a remark on the verdict (verify.core.verdict)
    at_kink: bool = False                # the layer's reference z lies on a kink of its activation
    n_imprecise: int = 0                 # elements within the textbook allowance only (status 'imprecise')
    # The finite-difference referee's opinion (verify.harness.referee; empty where it was not asked):
    referee: str = ""                    # whose value it supports: yours | torch's | both | neither | kink
    referee_value: float | None = None   # its estimate at the element its conclusion rests on
    referee_error: float | None = None   # its error bar there (truncation + rounding)
    referee_note: str = ""               # its sentence: the element, both terms of the bar, both sides' errors


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Comparison) if f.default is not dataclasses.MISSING}


def _judged(*columns: Any, **values: Any) -> Comparison:
    """Comparison(**values), built without the frozen dataclass's __init__, which sets each
    field through object.__setattr__ and costs about as much as the rest of a small case's
    comparison; ``columns``, iterables of (field, value), are more fields (a row of compare_all's
    columns, without a keyword dict made for it). The record is as frozen as any other;
    tests/test_compare.py checks the two constructions are equal."""
    record = object.__new__(Comparison)
    fields = record.__dict__
    fields.update(_DEFAULTS)
    fields.update(values)
    for more in columns:
        fields.update(more)
    return record


_NAME = re.compile(r"(?P<quantity>[A-Za-z_]*[A-Za-z])(?P<layer>[0-9]+)(?:\.[0-9]+)?(?P<after>_after)?")


@functools.lru_cache(maxsize=4096)
def split_name(name: str) -> tuple[str, int | None]:
    """'delta2' -> ('delta', 2); 'W1_after' -> ('W_after_step', 1); 'loss' -> ('loss', None);
    a stack's 'out3' -> ('out', 3), 'dgamma2' -> ('dgamma', 2), 'dW3.1' (a residual block's
    inner layer) -> ('dW', 3), 'running_mean2' -> ('running_mean', 2)."""
    match = _NAME.fullmatch(name)
    if match is None:
        return name, None
    quantity = match["quantity"] + ("_after_step" if match["after"] else "")
    return quantity, int(match["layer"])


def _max_ulps(ht: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], seg: "_Segments",
              finite: np.ndarray[Any, Any] | None, scratch: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
    """Per segment, the most representable floats between ht[0] and ht[1] (the elements where
    ``finite`` is false count 0), exactly, as float64 (exact up to 2**53; the conversion keeps the
    order, so the largest distance is taken before it). A float's bits, read as a signed integer
    i, are consecutive for consecutive floats of one sign: where the two signs agree the distance
    is |i₀ - i₁|, which fits the integer's own width; where they differ (values about 0, or +0
    against -0) it is the sum of the two magnitudes' bits, up to 2**(bits) - 2, which fits the
    unsigned integer of that width. So the elementwise work stays in the dtype's own width.
    ``scratch``: a float64 array of ht[0]'s size, free to overwrite, to hold the integer
    distances (on a big case a fresh array costs more in page faults than in arithmetic)."""
    # (typed Any: numpy 1.26's and 2.x's stubs type these classes differently)
    width: Any = np.int32 if ht[0].dtype == np.float32 else np.int64
    unsigned: Any = np.uint32 if ht[0].dtype == np.float32 else np.uint64
    i0, i1 = ht[0].view(width), ht[1].view(width)
    room = None if scratch is None else scratch.view(width)[:i0.size]
    d = np.subtract(i0, i1, out=room)
    np.abs(d, out=d)                                    # exact where the signs agree
    distance = d.view(unsigned)                         # the same bits: every value there is >= 0
    mixed = np.signbit(ht[0]) != np.signbit(ht[1])      # signs differ (the integers' signs, NaN's too)
    if mixed.any():
        magnitude = np.iinfo(width).max
        distance[mixed] = (i0[mixed] & magnitude).view(unsigned) + (i1[mixed] & magnitude).view(unsigned)
    if finite is not None:
        distance[~finite] = 0
    return seg.max(distance).astype(np.float64)


def problem_record(name: str, dtype: str, shape: tuple[int, ...], problem: str,
                   rtol: float, atol: float) -> Comparison:
    """A failing record for a tensor that could not be compared at all."""
    quantity, layer = split_name(name)
    nan = float("nan")
    size = int(np.prod(shape, dtype=np.int64))
    return Comparison(name, quantity, layer, dtype, tuple(shape), size, nan, nan, nan, nan, (), nan, nan,
                      size, rtol, atol, False, problem=problem, status="diverges", margin=nan)


class Pair(NamedTuple):
    """One tensor to judge: the implementation's value, torch's, the reference r (None: torch's
    own, for float64), the a priori bound E (None: 0), already scaled for r's own error, and the
    textbook bound (None: none; verify.core.bounds.a_priori with textbook=True), no smaller than E."""
    name: str
    hand: Any
    ref: Any
    exact: Any = None
    bound: Any = None
    textbook: Any = None


def _prepare(pair: Pair, dtype: str) -> tuple[np.ndarray[Any, Any] | None, np.ndarray[Any, Any], str]:
    """(h, t, "") ready to compare, or (None, t, the problem that prevents it)."""
    t = np.asarray(pair.ref)
    hand = pair.hand
    if type(hand) is np.ndarray and hand.shape == t.shape and hand.dtype == t.dtype and pair.name != "loss":
        return hand, t, ""                                  # the usual case, all checks below passed
    if not isinstance(hand, (np.ndarray, np.generic, float, int)) or isinstance(hand, bool):
        return None, t, f"{type(hand).__name__} where torch has an array"
    h = np.asarray(hand)
    if pair.name == "loss":
        # a Python number, or NumPy's of the case's precision or above, is J in the case's dtype;
        # a float32 J in a float64 case has lost digits: say so, as for any array
        if h.dtype.kind == "f" and h.dtype.itemsize < np.dtype(dtype).itemsize:
            return None, t, f"dtype {h.dtype} where torch has {dtype}"
        h, t = h.astype(dtype), t.astype(dtype)
    if h.shape != t.shape:
        hint = ": a missing transpose?" if h.shape == t.shape[::-1] and t.ndim == 2 else ""
        return None, t, f"shape {h.shape} where torch has {t.shape}{hint}"
    if h.dtype != t.dtype:
        return None, t, f"dtype {h.dtype} where torch has {t.dtype}"
    return h, t, ""


FEW_SEGMENTS = 64      # _Segments.first_argmax loops over at most this many segments


class _Segments:
    """Per-tensor reductions over the concatenation of several flattened tensors; each method
    takes a stack of such concatenations (shape (k, N)) and reduces all k rows at once."""

    def __init__(self, sizes: list[int]):
        self.starts = np.array([0, *itertools.accumulate(sizes[:-1])], dtype=np.intp)
        self.sizes = sizes

    @functools.cached_property
    def ids(self) -> np.ndarray[Any, Any]:
        """Each element's segment (made when first needed)."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    def max(self, v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.maximum.reduceat(v, self.starts, axis=-1)

    def sum(self, v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.add.reduceat(v, self.starts, axis=-1)

    def norm(self, v: np.ndarray[Any, Any], top: np.ndarray[Any, Any],
             scratch: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """‖v‖₂ of each segment of each row, given ``top``, each segment's max|v|. A segment
        where a square could overflow or underflow (max|v| beyond 1e±150, or not finite) is
        scaled by its max|v| first; the others are not, so that each segment's norm depends
        on that segment alone. ``scratch`` (v's shape and dtype), where given, holds the squares."""
        plain = np.sqrt(self.sum(np.multiply(v, v, out=scratch)))
        safe = ((top > 1e-150) & (top < 1e150)) | (top == 0)
        if safe.all():
            return plain  # type: ignore[no-any-return]
        scale = np.where((top > 0) & np.isfinite(top), top, 1.0)
        if v.ndim == 1:                # only the segments that need it, each summed as it would be
            unsafe = np.flatnonzero(~safe).tolist()
            part = _Segments([self.sizes[k] for k in unsafe])
            values = np.concatenate([v[self.starts[k]:self.starts[k] + self.sizes[k]] for k in unsafe])
            scaled = plain.copy()
            scaled[unsafe] = scale[unsafe] * np.sqrt(part.sum((values / scale[unsafe][part.ids]) ** 2))
        else:
            scaled = scale * np.sqrt(self.sum((v / scale[..., self.ids]) ** 2))
        return np.where(safe, plain, np.where(np.isfinite(top), scaled, top))

    def count(self, v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """How many of each segment's elements are true (v: bool, one row); with few segments
        (a big case's tensors) np.count_nonzero of each, which reads bytes without widening them."""
        if len(self.starts) <= FEW_SEGMENTS and v.ndim == 1:
            ends = [*self.starts[1:].tolist(), v.size]
            return np.array([np.count_nonzero(v[a:b]) for a, b in zip(self.starts.tolist(), ends)], dtype=np.int64)
        return np.add.reduceat(v, self.starts, axis=-1, dtype=np.int64)

    def first_argmax(self, v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The index of each segment's largest value (its first, on ties; v without NaN): with
        few segments (a big case's tensors) np.argmax of each, else all at once."""
        if len(self.starts) <= FEW_SEGMENTS:
            ends = [*self.starts[1:].tolist(), v.size]
            return np.array([a + int(np.argmax(v[a:b])) for a, b in zip(self.starts.tolist(), ends)], dtype=np.intp)
        at_max = v == self.max(v)[self.ids]
        return np.minimum.reduceat(np.where(at_max, np.arange(v.size), v.size), self.starts)


def _norm_rel(nd: np.ndarray[Any, Any], nr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """‖d‖/‖r‖ from the two norms: 0 where both are 0, inf where only ‖r‖ is (under the
    caller's np.errstate)."""
    q = nd / nr
    q[(nd == 0) & (nr == 0)] = 0.0
    return q  # type: ignore[no-any-return]


def compare_all(pairs: list[Pair], *, dtype: str, rtol: float, atol: float) -> list[Comparison]:
    """Judge every pair in one pass; one record each, in the order given."""
    records: list[Comparison | None] = [None] * len(pairs)
    ready = []
    for i, pair in enumerate(pairs):
        h, t, problem = _prepare(pair, dtype)
        if problem:
            records[i] = problem_record(pair.name, dtype, t.shape, problem, rtol, atol)
        elif h.size:  # type: ignore[union-attr]  # h is an array where there is no problem
            ready.append((i, pair, h, t))
        else:
            records[i] = Comparison(pair.name, *split_name(pair.name), dtype, t.shape, 0, 0.0, 0.0, 0.0,
                                    0.0, (), float("nan"), float("nan"), 0, rtol, atol, True)
    separate = all(p.exact is not None for _, p, _, _ in ready)   # one reference for the whole call
    for chunk in _chunks(ready):
        for i, record in zip([i for i, *_ in chunk], _judge(chunk, dtype, rtol, atol, separate)):
            records[i] = record
    return records  # type: ignore[return-value]  # every entry is filled


# Tensors are judged together, flattened into one array, up to this many elements; a bigger
# tensor is judged alone. Each element's verdict and each tensor's statistics depend on that
# tensor alone (its sums, maxima and norms are reduced per tensor, in the same order either
# way), so the records are the same whatever the split; on a big case, arrays of one tensor's
# size stay in the processor's caches through the comparison's dozens of passes, where arrays
# of the whole case's size go to memory and back in each.
CHUNK = 2**16


def _chunks(ready: list[Any]) -> list[list[Any]]:
    """``ready`` cut into runs of consecutive tensors of at most CHUNK elements together (a
    bigger tensor alone)."""
    chunks: list[list[Any]] = []
    size = CHUNK
    for item in ready:
        n = item[2].size
        if size + n > CHUNK:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks


def _or_zero(bound: Any) -> Any:
    return 0.0 if bound is None else bound


def _flat_like(c: Any, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """A tensor's bound, flattened, as float64 of the tensor's shape (a scalar is broadcast)."""
    c = np.asarray(c, dtype=np.float64)
    return c.ravel() if c.shape == shape else np.broadcast_to(c, shape).ravel()  # type: ignore[no-any-return]


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """np.unravel_index for one flat index, as a tuple of ints (C order)."""
    if len(shape) == 2:                 # most tensors: (row, column)
        return divmod(i, shape[1])
    index = []
    for n in reversed(shape):
        i, r = divmod(i, n)
        index.append(r)
    return tuple(reversed(index))


class _Flat(NamedTuple):
    """The tensors of one compare_all call, flattened and concatenated (verify.core.compare)."""
    seg: _Segments
    hand_torch: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]   # (the implementation's, torch's) in the dtype
    both: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]         # the same as float64
    h: np.ndarray[Any, Any]                 # float64, non-finite elements set to 0 (see finite)
    t: np.ndarray[Any, Any]
    r: np.ndarray[Any, Any]                 # the reference (torch's own values where no separate one is given)
    finite: np.ndarray[Any, Any] | None     # h, t and r all finite (None: everywhere)
    separate: bool                # a separate float64 reference was given

    @property
    def everywhere(self) -> bool:
        return self.finite is None


def _all_finite(v: np.ndarray[Any, Any]) -> bool:
    """Whether every element of ``v`` is finite: its sum is finite exactly when they all are, but
    for a sum of finite values that overflows (then the elementwise test decides). One pass,
    nothing allocated."""
    return bool(np.isfinite(np.add.reduce(v, axis=None))) or bool(np.isfinite(v).all())


def _joined(arrays: list[Any], dtype: Any = None) -> np.ndarray[Any, Any]:
    """The arrays flattened and concatenated (one array: flattened only, a view where its layout
    allows; nothing here writes into it)."""
    if len(arrays) == 1:
        return np.asarray(arrays[0], dtype=dtype).reshape(-1)
    return np.concatenate(arrays, axis=None, dtype=dtype)


def _flatten(ready: list[Any], separate: bool) -> _Flat:
    """``ready``'s tensors flattened; ``separate``: every pair of the compare_all call has its own
    reference (else torch's values are the reference for all)."""
    seg = _Segments([h.size for _, _, h, _ in ready])
    hand_torch = (_joined([h for _, _, h, _ in ready]), _joined([t for _, _, _, t in ready]))
    both = (hand_torch[0].astype(np.float64, copy=False), hand_torch[1].astype(np.float64, copy=False))
    h, t = both
    r = _joined([p.exact for _, p, _, _ in ready], dtype=np.float64) if separate else t
    if _all_finite(h) and _all_finite(t) and (not separate or _all_finite(r)):
        return _Flat(seg, hand_torch, both, h, t, r, None, separate)
    finite = np.isfinite(h) & np.isfinite(t) & np.isfinite(r)
    h, t, r = np.where(finite, [h, t, r], 0.0)
    return _Flat(seg, hand_torch, both, h, t, r, finite, separate)


class _Gaps(NamedTuple):
    """The elementwise magnitudes both the verdict and the statistics read, each computed once:
    |h - r|, |t - r| and |r| (with no separate reference, r is t: |h - t|, zeros and |t|)."""
    hand: np.ndarray[Any, Any]
    torch: np.ndarray[Any, Any] | None     # None without a separate reference
    ref: np.ndarray[Any, Any]


def _gaps(f: _Flat) -> _Gaps:
    e_h = np.subtract(f.h, f.r)
    np.abs(e_h, out=e_h)
    e_t = None
    if f.separate:
        e_t = np.subtract(f.t, f.r)
        np.abs(e_t, out=e_t)
    return _Gaps(e_h, e_t, np.abs(f.r))


def _verdict(f: _Flat, gaps: _Gaps, bound: np.ndarray[Any, Any], rtol: float, atol: float,
             textbook: np.ndarray[Any, Any] | None = None) -> dict[str, Any]:
    """Which elements miss their allowance, and per tensor: how many, the worst one (by
    |h - r|/allowance, failing ones first), margin and torch_margin (verify.core.compare). With
    a ``textbook`` bound, that one judges, and the elements within it but beyond ``bound`` are
    counted (n_imprecise). Overwrites ``gaps`` (read the statistics first) and ``bound``."""
    seg = f.seg
    floor = np.multiply(gaps.ref, rtol, out=gaps.ref)
    floor += atol                                        # atol + rtol·|r|
    e_h = gaps.hand
    imprecise = None
    if textbook is None:
        allowance = np.add(bound, floor, out=bound)
    else:
        allowance = np.maximum(textbook, bound) + floor
        imprecise = (e_h > np.add(bound, floor, out=bound)) & (e_h <= allowance)
    bad = e_h > allowance
    score = np.divide(e_h, allowance, out=e_h)           # in units of the allowance
    score[np.isnan(score)] = 0.0                         # 0/0: exact where nothing is allowed
    if f.finite is not None:                             # non-finite: bad unless torch holds the same
        H, T = f.both
        bad |= ~f.finite & ~((H == T) | (np.isnan(H) & np.isnan(T)))
        score[~f.finite] = 0.0
    margin = seg.max(score)
    if f.finite is not None:                             # a non-finite mismatch is off without bound
        margin = np.where(seg.max((~f.finite & bad).astype(np.int8)) > 0, np.inf, margin)
        score[~f.finite & bad] = np.inf
    n_bad = seg.count(bad)
    # the worst element: the worst failing one where any fails, else the worst of all
    worst = seg.first_argmax(np.where(bad | (n_bad[seg.ids] == 0), score, -1.0) if n_bad.any() else score)
    n_imprecise = seg.count(imprecise).tolist() if imprecise is not None else [0] * len(n_bad)
    if gaps.torch is not None:
        off = gaps.torch
        torch_margin = seg.max(np.divide(off, allowance, out=off)).tolist()
    else:
        torch_margin = [None] * len(n_bad)
    reference = f.r[worst] if f.finite is None else np.where(f.finite[worst], f.r[worst], np.nan)
    return {"n_mismatched": n_bad.tolist(), "n_imprecise": n_imprecise, "worst": worst, "margin": margin.tolist(),
            "allowed": allowance[worst].tolist(), "reference_value": reference.tolist(),
            "torch_margin": torch_margin}


def _statistics(f: _Flat, gaps: _Gaps) -> dict[str, list[Any]]:
    """Per tensor, against torch: max_abs_err, max_rel_err, norm_rel_err, max_ulp; against the
    reference (when a separate one is given): hand_ref_err, torch_ref_err. Each row is reduced
    on its own, never stacked into one copy; ``gaps`` is read, not changed."""
    seg = f.seg
    if f.separate:
        abs_t = np.abs(f.t)
        diff = np.subtract(f.h, f.t)
        np.abs(diff, out=diff)
        rows = {"h-t": diff, "t": abs_t, "h-r": gaps.hand, "t-r": gaps.torch, "r": gaps.ref}
    else:                                                # r is t: |h - r| is |h - t|, |r| is |t|
        diff, abs_t = gaps.hand, gaps.ref
        rows = {"h-t": diff, "t": abs_t}
    tops = {k: seg.max(v) for k, v in rows.items()}
    scratch = np.empty_like(f.h)                         # the squares of each row in turn, then rel
    norm = {k: seg.norm(v, tops[k], scratch) for k, v in rows.items()}
    rel = np.divide(diff, abs_t, out=scratch)            # inf where t = 0 and h is not; 0/0 below
    rel[np.isnan(rel)] = 0.0
    max_rel = seg.max(rel).tolist()
    max_ulp = _max_ulps(f.hand_torch, seg, f.finite, scratch).tolist()    # rel read: overwritten
    none = [None] * len(tops["h-t"])
    return {"max_abs_err": tops["h-t"].tolist(), "max_rel_err": max_rel,
            "norm_rel_err": _norm_rel(norm["h-t"], norm["t"]).tolist(),
            "max_ulp": max_ulp,
            "hand_ref_err": _norm_rel(norm["h-r"], norm["r"]).tolist() if f.separate else none,
            "torch_ref_err": _norm_rel(norm["t-r"], norm["r"]).tolist() if f.separate else none}


def _judge(ready: list[Any], dtype: str, rtol: float, atol: float, separate: bool) -> list[Comparison]:
    with np.errstate(all="ignore"):
        f = _flatten(ready, separate)
        bound = np.concatenate([_flat_like(_or_zero(p.bound), h.shape) for _, p, h, _ in ready])
        textbook = None
        if any(p.textbook is not None for _, p, _, _ in ready):      # a pair without one: its own bound
            textbook = np.concatenate([_flat_like(_or_zero(p.bound if p.textbook is None else p.textbook), h.shape)
                                       for _, p, h, _ in ready])
        gaps = _gaps(f)
        stats = _statistics(f, gaps)                            # before _verdict overwrites gaps
        verdict = _verdict(f, gaps, bound, rtol, atol, textbook)
    worst = verdict.pop("worst")
    H, T = f.both
    columns = {**verdict, **stats, "hand_value": H[worst].tolist(), "torch_value": T[worst].tolist()}
    offsets = (worst - f.seg.starts).tolist()
    keys = tuple(columns)
    records = []
    for (_, pair, h, t), row, offset, nb, n_imprecise in zip(
            ready, zip(*columns.values()), offsets, columns["n_mismatched"], columns["n_imprecise"]):
        quantity, layer = split_name(pair.name)
        status = ("imprecise" if n_imprecise else "agrees") if nb == 0 else "diverges"
        records.append(_judged(
            zip(keys, row), name=pair.name, quantity=quantity, layer=layer, dtype=dtype, shape=t.shape,
            n_elements=h.size, worst_index=_unravel(offset, t.shape), rtol=rtol, atol=atol, passed=nb == 0,
            status=status))
    return records


def compare(name: str, hand: Any, ref: Any, *, dtype: str, rtol: float, atol: float,
            exact: Any = None, bound: Any = None, textbook: Any = None) -> Comparison:
    """Compare ``hand`` with torch's ``ref`` against the reference ``exact`` (None: ``ref``
    itself) within ``bound`` (verify.core.bounds) plus the floor; with a ``textbook`` bound,
    elements within it pass too, and make the record 'imprecise'."""
    return compare_all([Pair(name, hand, ref, exact, bound, textbook)], dtype=dtype, rtol=rtol, atol=atol)[0]
