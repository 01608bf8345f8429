"""compare_all's vectorised statistics equal a plain element-by-element computation, a
tensor's record does not depend on the tensors judged with it, and records are ordinary
frozen Comparisons."""
import dataclasses
import math
import struct

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies_numeric import as_dtype

import verify.core.compare as compare_module
from verify.core.compare import TOLERANCES, Comparison, Pair, _judged, compare_all

SPECIAL = (0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, math.inf, -math.inf, math.nan)


def _ordinal(v: float, dtype: str) -> int:
    """The position of v among the dtype's floats (-0.0 and 0.0 share one), from its bits."""
    fmt, ufmt, bits = ("<f", "<I", 32) if dtype == "float32" else ("<d", "<Q", 64)
    u = struct.unpack(ufmt, struct.pack(fmt, v))[0]
    magnitude = u & ((1 << (bits - 1)) - 1)
    return -magnitude if u >> (bits - 1) else magnitude


def _norm(values) -> float:
    return math.hypot(*values) if values else 0.0


def _norm_rel(d: list, r: list) -> float:
    nd, nr = _norm(d), _norm(r)
    return nd / nr if nr > 0 else (0.0 if nd == 0 else math.inf)


def _ratio(d: float, a: float) -> float:
    with np.errstate(over="ignore"):
        return d / a if a else (math.inf if d else 0.0)


def expected(pair: Pair, dtype: str, rtol: float, atol: float) -> dict:
    """The record's fields, one element at a time, as the compare module's docstring defines them."""
    h = pair.hand.astype(np.float64).ravel().tolist()
    t = pair.ref.astype(np.float64).ravel().tolist()
    n = len(t)
    if n == 0:
        return dict(n_elements=0, n_mismatched=0, passed=True, worst_index=())
    r = t if pair.exact is None else pair.exact.astype(np.float64).ravel().tolist()
    c = np.broadcast_to(np.asarray(0.0 if pair.bound is None else pair.bound, float), pair.ref.shape).ravel()
    fin = [all(math.isfinite(v) for v in vs) for vs in zip(h, t, r)]
    allowed = [ci + atol + rtol * abs(x) if f else ci + atol for x, ci, f in zip(r, c, fin)]
    e_h = [abs(a - x) if f else 0.0 for a, x, f in zip(h, r, fin)]
    good = [e <= al if f else (a == b or (math.isnan(a) and math.isnan(b)))
            for a, b, e, al, f in zip(h, t, e_h, allowed, fin)]
    bad = [not g for g in good]
    score = [_ratio(e, al) if f else (math.inf if b else 0.0) for e, al, f, b in zip(e_h, allowed, fin, bad)]
    margin = max([_ratio(e, al) for e, al, f in zip(e_h, allowed, fin) if f], default=0.0)
    if any(b and not f for b, f in zip(bad, fin)):
        margin = math.inf
    stats = {}
    if pair.exact is not None:
        r_ok = [x if f else 0.0 for x, f in zip(r, fin)]
        e_t = [abs(b - x) if f else 0.0 for b, x, f in zip(t, r, fin)]
        stats["hand_ref_err"] = _norm_rel(e_h, r_ok)
        stats["torch_ref_err"] = _norm_rel(e_t, r_ok)
        stats["torch_margin"] = max([_ratio(e, al) for e, al, f in zip(e_t, allowed, fin) if f], default=0.0)
    worst = max(range(n), key=lambda i: (bad[i], score[i]))       # the first of the largest
    diff = [abs(a - b) if f else 0.0 for a, b, f in zip(h, t, fin)]
    rel = [d / abs(b) if f and b != 0 else (math.inf if d > 0 else 0.0) for d, b, f in zip(diff, t, fin)]
    ulp = [abs(_ordinal(a, pair.ref.dtype.name) - _ordinal(b, pair.ref.dtype.name)) if f else 0
           for a, b, f in zip(pair.hand.ravel().tolist(), pair.ref.ravel().tolist(), fin)]
    return dict(stats, max_abs_err=max(diff), max_rel_err=max(rel), max_ulp=float(max(ulp)),
                norm_rel_err=_norm_rel(diff, [b if f else 0.0 for b, f in zip(t, fin)]),
                worst_index=tuple(int(i) for i in np.unravel_index(worst, pair.ref.shape)),
                hand_value=h[worst], torch_value=t[worst], n_mismatched=sum(bad), passed=not any(bad),
                status="diverges" if any(bad) else "agrees", margin=margin, allowed=allowed[worst],
                reference_value=r[worst] if fin[worst] else math.nan)


@st.composite
def pairs(draw, *, dtype: str, with_ref: bool, max_tensors: int = 4, misshapen: bool = False):
    """Tensors (the scalar ones named loss, some empty) whose hand values are torch's, a few
    ULPs off, a fraction of |t| off, anything (inf, nan, 0, huge), with float64 references near
    torch's values and optional bounds; ``misshapen``: some hand values of another shape."""
    width = 32 if dtype == "float32" else 64
    out = []
    for k in range(draw(st.integers(1, max_tensors))):
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        floats = st.one_of(st.sampled_from([as_dtype(v, dtype) for v in SPECIAL]), st.floats(-1e3, 1e3, width=width),
                           st.floats(width=width, allow_nan=False))
        magnitude = draw(st.sampled_from((1.0, 1e-40, 1e35) if dtype == "float32" else (1.0, 1e-200, 1e200)))
        with np.errstate(all="ignore"):                              # whole tensors tiny or huge too
            t = (draw(hnp.arrays(dtype, shape, elements=floats)) * magnitude).astype(dtype)
        moves = draw(hnp.arrays(np.int8, shape, elements=st.integers(-3, 5)))
        h = t.copy()
        with np.errstate(over="ignore"):
            for step in range(3):                                    # moves in -3..3: that many ULPs
                h = np.where(moves > step, np.nextafter(h, np.inf),
                             np.where(moves < -step, np.nextafter(h, -np.inf), h))
        h = np.where(moves == 4, draw(hnp.arrays(dtype, shape, elements=floats)), h)
        off = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e-2, 1e-2)))
        with np.errstate(all="ignore"):                              # 5: off by a fraction of |t|
            h = np.where(moves == 5, t * (1 + off), h).astype(dtype)
        exact = None
        if with_ref:
            scale = draw(st.sampled_from([1e-9, 1e-6, 1e-4, 1e-2]))
            noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-scale, scale)))
            exact = t.astype(np.float64) * (1 + noise)
        bound = draw(st.one_of(st.none(), st.floats(0, 1e-3),
                               hnp.arrays(np.float64, shape, elements=st.floats(0, 1e-3))))
        if misshapen and draw(st.booleans()):
            h = np.zeros(shape[::-1] + (1,), dtype)
        out.append(Pair("loss" if shape == () else f"z{k + 1}", h, t, exact, bound))
    return out


@given(st.sampled_from([("float32", True), ("float32", False), ("float64", False)]).flatmap(
    lambda d: st.tuples(st.just(d[0]), pairs(dtype=d[0], with_ref=d[1]))))
def test_every_statistic_of_every_record_is_the_element_by_element_one(drawn):
    dtype, given_pairs = drawn
    rtol, atol = TOLERANCES[dtype]
    records = compare_all(given_pairs, dtype=dtype, rtol=rtol, atol=atol)
    for pair, record in zip(given_pairs, records):
        want = expected(pair, dtype, rtol, atol)
        for field, value in want.items():
            got = getattr(record, field)
            if field.endswith("_err") and field != "max_abs_err" and math.isfinite(value):
                assert math.isclose(got, value, rel_tol=1e-12, abs_tol=1e-300), (pair.name, field, got, value)
            else:
                assert got == value or (math.isnan(got) and math.isnan(value)), (pair.name, field, got, value)


@given(st.sampled_from([("float32", True), ("float32", False), ("float64", False)]).flatmap(
    lambda d: st.tuples(st.just(d[0]), pairs(dtype=d[0], with_ref=d[1], max_tensors=6, misshapen=True))))
@example(("float64", [Pair("z1", np.array([1e-30, 1.0000000000000006e-30]), np.array([1e-30, 1e-30])),
                      Pair("loss", np.array(5e-324), np.array(0.0))]))  # a square that underflows
def test_a_tensors_record_is_the_same_judged_alone_or_with_others(drawn):
    dtype, given_pairs = drawn
    rtol, atol = TOLERANCES[dtype]
    together = compare_all(given_pairs, dtype=dtype, rtol=rtol, atol=atol)
    alone = [compare_all([pair], dtype=dtype, rtol=rtol, atol=atol)[0] for pair in given_pairs]
    assert [repr(r) for r in together] == [repr(r) for r in alone]          # repr: nan == nan


@given(st.sampled_from([("float32", True), ("float32", False), ("float64", False)]).flatmap(
    lambda d: st.tuples(st.just(d[0]), pairs(dtype=d[0], with_ref=d[1], max_tensors=6, misshapen=True))),
    st.integers(0, 6))
def test_a_calls_records_are_the_same_however_its_tensors_are_cut_into_chunks(drawn, unreferenced):
    dtype, given_pairs = drawn
    if unreferenced < len(given_pairs):          # one pair without a reference: torch's is everyone's
        given_pairs[unreferenced] = given_pairs[unreferenced]._replace(exact=None)
    rtol, atol = TOLERANCES[dtype]
    records = {}
    for chunk in (1, 2**62):                     # each tensor judged in its own chunk, or all in one
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compare_module, "CHUNK", chunk)
            records[chunk] = [repr(r) for r in compare_all(given_pairs, dtype=dtype, rtol=rtol, atol=atol)]
    assert records[1] == records[2**62]          # repr: nan == nan


def test_a_record_built_by_the_fast_constructor_equals_the_dataclass_one_and_is_frozen():
    values = dict(name="dW2", quantity="dW", layer=2, dtype="float32", shape=(3, 4), n_elements=12,
                  max_abs_err=1e-7, max_rel_err=2e-7, norm_rel_err=1e-7, max_ulp=3.0, worst_index=(1, 2),
                  hand_value=0.5, torch_value=0.5000001, n_mismatched=0, rtol=1.3e-6, atol=1e-5,
                  passed=True, hand_ref_err=1e-8, torch_ref_err=2e-8)
    record = _judged(**values)
    # repr, not ==: from Python 3.13 a dataclass's == compares field by field, so the NaN defaults
    # (allowed, reference_value) make two identical records unequal; repr shows every field
    assert repr(record) == repr(Comparison(**values)) and hash(record) == hash(Comparison(**values))
    assert set(vars(record)) == {f.name for f in dataclasses.fields(Comparison)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.passed = False
