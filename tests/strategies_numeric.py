"""Array strategies for the activation and loss tests (kinks, exact zeros, ±1e3), and the
agreement check both use."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verify.compare import compare, tolerances

DTYPES = ["float32", "float64"]


def agree(name, hand, ref, dtype):
    """Assert that ``hand`` matches torch's ``ref`` under the dtype's tolerances."""
    rtol, atol = tolerances(dtype)
    record = compare(name, hand, ref, dtype=dtype, rtol=rtol, atol=atol)
    assert record.passed, record

KINKS = (0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, 1e3, -1e3, 1e-30, -1e-30)


def values(*, dtype: str, lo: float = -1e3, hi: float = 1e3, special=KINKS):
    width = 32 if dtype == "float32" else 64
    specials = [v for v in special if lo <= v <= hi]
    return st.one_of(st.sampled_from(specials), st.floats(lo, hi, width=width)) if specials \
        else st.floats(lo, hi, width=width)


def matrices(*, dtype: str, max_rows: int = 4, max_cols: int = 5, shape=None, **bounds):
    shapes = st.just(shape) if shape is not None else hnp.array_shapes(
        min_dims=2, max_dims=2, max_side=max(max_rows, max_cols)).filter(
        lambda s: s[0] <= max_rows and s[1] <= max_cols)
    return shapes.flatmap(lambda s: hnp.arrays(np.dtype(dtype), s, elements=values(dtype=dtype, **bounds)))
