"""The shortcuts that make the a priori bounds cheaper give exactly the bounds they replace, bit for
bit: a product skipped because its error operand is all 0, and the points of an interval found in
one pass (docs/scale.md, "The verdict's own cost")."""
import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import handimpl.rounding as rounding
from handimpl import ACTIVATIONS
from handimpl.activations import _inside
from verify.core.bounds import a_priori
from verify.core.data import draw_case
from verify.harness.trace import exact_trace, trace
from verify.sweep.draw import draw_all

EXACT_IN_FLOAT32 = [0.0, 2.0**-23, 2.0**-10, 0.5, 3.0]     # older hypothesis refuses a float32 array of 1e-7
MAGNITUDES = st.one_of(st.sampled_from([0.0, -0.0, 5e-324, 2.2e-308, 1.0, 1e300]),
                       st.floats(0, 1e3), st.floats(0, 1e-300))


@st.composite
def zero_products(draw):
    """An all-zero error E (some of its zeros -0.0) and a finite magnitude M that it multiplies."""
    m, n, k = (draw(st.integers(1, 6)) for _ in range(3))
    E = draw(hnp.arrays(np.float64, (m, n), elements=st.sampled_from([0.0, -0.0])))
    M = draw(hnp.arrays(np.float64, (n, k), elements=MAGNITUDES))
    return E, M


@contextlib.contextmanager
def skipping_all():
    """Every product with an all-zero error skipped, however small."""
    saved = rounding.SKIP_ZERO_PRODUCTS
    rounding.SKIP_ZERO_PRODUCTS = 0
    try:
        yield
    finally:
        rounding.SKIP_ZERO_PRODUCTS = saved


@given(zero_products(), st.booleans())
def test_a_product_skipped_for_its_all_zero_error_is_bit_for_bit_the_product(drawn, left):
    E, M = drawn
    with skipping_all():
        got = rounding.spread_product(E if left else E.T, M if left else M.T, error_left=left)
    want = E @ M if left else M.T @ E.T
    assert got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_a_product_with_a_non_finite_magnitude_is_computed_as_is():
    E, M = np.zeros((2, 3)), np.array([[1.0], [np.inf], [2.0]])
    with skipping_all(), np.errstate(invalid="ignore"):
        assert np.isnan(rounding.spread_product(E, M)).all()


def _inside_point_by_point(value, error, points, move):
    """_inside as it was written first: each point tested on its own."""
    out = np.zeros(np.shape(value))
    for p in points:
        inside = (np.abs(value - p) <= error) & (error > 0)
        if inside.any():
            out = np.maximum(out, np.where(inside, move(np.full(np.shape(value), p)), 0.0))
    return out


@given(st.sampled_from(sorted(ACTIVATIONS)), st.sampled_from(["float32", "float64"]), st.data())
def test_the_points_inside_each_interval_are_found_as_one_point_at_a_time_finds_them(name, dtype, data):
    act = ACTIVATIONS[name]
    points = act.turning_points + act.kink_sides + act.df_turning_points
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
    near = st.one_of(st.sampled_from(points or (0.0,)).map(lambda p: float(np.dtype(dtype).type(p))),
                     st.floats(-4, 4, width=32))
    value = data.draw(hnp.arrays(dtype, shape, elements=near))
    error = data.draw(hnp.arrays(dtype, shape, elements=st.sampled_from(EXACT_IN_FLOAT32)))

    def move(v):
        return np.abs(v - value) * 3.0

    got, want = _inside(value, error, points, move), _inside_point_by_point(value, error, points, move)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cases_bounds_are_the_same_bits_whether_zero_products_are_skipped_or_computed(monkeypatch, seed):
    for spec, case_seed, batch in draw_all(dict(max_depth=4, max_width=16, max_batch=16), 30, seed):
        run = trace(spec, case_seed, batch)
        bounds = {}
        for threshold in (0, 2**62):
            monkeypatch.setattr(rounding, "SKIP_ZERO_PRODUCTS", threshold)
            bounds[threshold] = a_priori(spec, draw_case(spec, case_seed, batch), exact_trace(run), 0.1)
        skipped, computed = bounds.values()
        assert skipped.keys() == computed.keys()
        assert all(skipped[k].tobytes() == computed[k].tobytes() for k in skipped), spec


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cases_bounds_are_the_same_bits_whether_each_step_is_evaluated_in_place_or_as_written(monkeypatch, seed):
    for spec, case_seed, batch in draw_all(dict(max_depth=4, max_width=16, max_batch=16), 30, seed):
        run = trace(spec, case_seed, batch)
        bounds = {}
        for threshold in (0, 2**62):             # every float64 array in place, or none
            monkeypatch.setattr(rounding, "IN_PLACE", threshold)
            bounds[threshold] = a_priori(spec, draw_case(spec, case_seed, batch), exact_trace(run), 0.1)
        in_place, as_written = bounds.values()
        assert in_place.keys() == as_written.keys()
        assert all(in_place[k].tobytes() == as_written[k].tobytes() for k in in_place), spec
