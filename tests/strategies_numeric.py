"""Array strategies for the activation and loss tests (kinks, exact zeros, ±1e3), and the
agreement check both use."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verify.core.bounds import underflow
from verify.core.compare import compare, tolerances

DTYPES = ["float32", "float64"]


def agree(name, hand, ref, dtype, bound):
    """Assert that ``hand`` matches torch's ``ref`` within twice ``bound``, the rounding error
    model's allowance for one correct evaluation (verify.core.bounds), plus the dtype's floor: both
    are correct evaluations of the same exact values."""
    rtol, atol = tolerances(dtype)
    bound = np.asarray(bound, dtype=np.float64)
    allowance = 2 * np.where(np.isfinite(bound), bound, 0.0) + 2 * underflow(dtype)
    record = compare(name, hand, ref, dtype=dtype, rtol=rtol, atol=atol, bound=allowance)
    assert record.passed, record


def f64(v):
    return np.asarray(v, dtype=np.float64)

KINKS = (0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, 1e3, -1e3, 1e-30, -1e-30)


def as_dtype(v: float, dtype: str) -> float:
    """``v`` rounded to ``dtype``: array strategies take only elements the dtype holds exactly."""
    return float(np.dtype(dtype).type(v))


def values(*, dtype: str, lo: float = -1e3, hi: float = 1e3, special=KINKS):
    width = 32 if dtype == "float32" else 64
    specials = [as_dtype(v, dtype) for v in special if lo <= v <= hi]
    return st.one_of(st.sampled_from(specials), st.floats(lo, hi, width=width)) if specials \
        else st.floats(lo, hi, width=width)


def matrices(*, dtype: str, max_rows: int = 4, max_cols: int = 5, shape=None, **bounds):
    shapes = st.just(shape) if shape is not None else hnp.array_shapes(
        min_dims=2, max_dims=2, max_side=max(max_rows, max_cols)).filter(
        lambda s: s[0] <= max_rows and s[1] <= max_cols)
    return shapes.flatmap(lambda s: hnp.arrays(np.dtype(dtype), s, elements=values(dtype=dtype, **bounds)))
