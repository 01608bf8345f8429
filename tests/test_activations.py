"""Each activation's value and vector-Jacobian product against torch, kinks and ±1e3 included."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies_numeric import DTYPES, agree, f64, matrices

from handimpl import ACTIVATIONS
from handimpl.activations import LIBRARY_ULPS
from verify.core.bounds import underflow
from verify.core.compare import UNIT_ROUNDOFF
from verify.core.torch_ops import TORCH_ACTIVATIONS

NAMES = list(ACTIVATIONS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_activation_value_matches_torch(name, dtype, data):
    z = data.draw(matrices(dtype=dtype))
    expected = TORCH_ACTIVATIONS[name]()(torch.from_numpy(z)).numpy()
    act = ACTIVATIONS[name]
    exact = act.f(f64(z))
    bound = act.forward_error(f64(z), exact, np.zeros(z.shape), UNIT_ROUNDOFF[dtype])
    agree(name, act.f(z), expected, dtype, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_activation_vjp_matches_torch_autograd_including_kinks(name, dtype, data):
    z = data.draw(matrices(dtype=dtype))
    g = data.draw(matrices(dtype=dtype, shape=z.shape, lo=-10, hi=10, special=(0.0, 1.0)))
    zt = torch.from_numpy(z.copy()).requires_grad_(True)
    TORCH_ACTIVATIONS[name]()(zt).backward(torch.from_numpy(g))
    act = ACTIVATIONS[name]
    u, zero = UNIT_ROUNDOFF[dtype], np.zeros(z.shape)
    exact = act.f(f64(z))
    Ea = act.forward_error(f64(z), exact, zero, u)
    bound = act.vjp_error(f64(z), exact, f64(g), zero, Ea, zero, u) + np.abs(g) * underflow(dtype)
    agree(name, act.vjp(z, act.f(z), g), zt.grad.numpy(), dtype, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_activation_keeps_the_dtype_it_is_given(name, dtype):
    z = np.linspace(-4, 4, 12, dtype=dtype).reshape(3, 4)
    act = ACTIVATIONS[name]
    a = act.f(z)
    assert a.dtype == z.dtype and act.vjp(z, a, np.ones_like(z)).dtype == z.dtype


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh", "hardsigmoid", "hardswish",
                                  "leaky_relu", "elu", "selu", "celu"])
def test_derivative_at_each_kink_is_torchs_convention(name):
    kinks = np.array([[-3.0, -1.0, 0.0, 1.0, 3.0, 6.0]])
    zt = torch.from_numpy(kinks.copy()).requires_grad_(True)
    TORCH_ACTIVATIONS[name]()(zt).sum().backward()
    act = ACTIVATIONS[name]
    # torch's float64 hardsigmoid/hardswish use a float32 1/6 (off by 5e-9), hence allclose
    np.testing.assert_allclose(act.df(kinks, act.f(kinks)), zt.grad.numpy(), rtol=1e-7, atol=0)


def test_an_unknown_activation_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: identity, sigmoid"):
        ACTIVATIONS["sigmod"]


def test_the_torch_registry_has_exactly_handimpls_names():
    assert tuple(TORCH_ACTIVATIONS) == tuple(ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_the_error_model_bounds_how_far_f_and_its_vjp_move_while_the_inputs_move_within_theirs(name, data):
    """What the verdict assumes of each activation: with z off by up to Ez and g by up to Eg,
    f(z) moves by no more than forward_error, and g ⊙ f′(z) (from a = f(z) where f′ is written
    in a) by no more than vjp_error, kinks and turning points inside the interval included.
    Beside each bound, a few units of roundoff of the values compared and of the bound (this
    test's own float64 evaluations and subtractions) and the verdict's floor for underflow."""
    act = ACTIVATIONS[name]
    z = data.draw(matrices(dtype="float64", max_rows=3, max_cols=4, lo=-30, hi=30))
    g = data.draw(matrices(dtype="float64", shape=z.shape, lo=-10, hi=10, special=(0.0, 1.0)))
    relative = st.sampled_from([0.0, 1e-12, 1e-8, 1e-4, 1e-2, 0.5])
    Ez = data.draw(relative) * (np.abs(z) + 1)
    Eg = data.draw(relative) * (np.abs(g) + 1)
    moves = matrices(dtype="float64", shape=z.shape, lo=-1, hi=1, special=(-1.0, 0.0, 1.0))
    z2, g2 = z + Ez * data.draw(moves), g + Eg * data.draw(moves)
    u, tiny = UNIT_ROUNDOFF["float64"], underflow("float64")
    a, a2 = act.f(z), act.f(z2)
    Ea = act.forward_error(z, a, Ez, u)
    assert (np.abs(a2 - a) <= Ea + 4 * u * (np.abs(a2) + np.abs(a) + Ea) + tiny).all()
    new, old = act.vjp(z2, a2, g2), act.vjp(z, a, g)
    bound = act.vjp_error(z, a, g, Ez, Ea, Eg, u)
    assert (np.abs(new - old) <= bound + 4 * u * (np.abs(new) + np.abs(old) + bound) + tiny).all()


def _pieces(values: np.ndarray, noise: np.ndarray, grid: np.ndarray, points) -> list:
    """(values, noise) on ``grid`` cut at ``points`` (a small gap left around each)."""
    cut = np.searchsorted(grid, sorted(points))
    keep = np.ones(grid.shape, bool)
    for p in points:
        keep &= np.abs(grid - p) > 1e-6
    return [(v[k], n[k]) for v, n, k in zip(np.split(values, cut), np.split(noise, cut), np.split(keep, cut))]


def _monotone(v: np.ndarray, noise: np.ndarray) -> bool:
    """Monotone, steps within the evaluation's own rounding allowance (the error model's
    LIBRARY_ULPS·u·terms at either end) counted as flat."""
    step = np.diff(v)
    step[np.abs(step) <= noise[1:] + noise[:-1]] = 0
    return bool((step >= 0).all() or (step <= 0).all())


@pytest.mark.parametrize("name", [n for n in NAMES if ACTIVATIONS[n].elementwise])
def test_f_and_its_derivative_are_monotone_between_the_points_where_the_activation_says_they_turn(name):
    """What the error model relies on to read an interval at its ends, its turning points and
    each side of its kinks only."""
    act = ACTIVATIONS[name]
    z = np.linspace(-30, 30, 600_001).reshape(1, -1)
    a = act.f(z)
    noise = LIBRARY_ULPS * UNIT_ROUNDOFF["float64"]
    for values, terms, turns in ((a, act.f_terms(z, a), act.turning_points),
                                 (act.df(z, a), act.df_terms(z, a), act.df_turning_points)):
        pieces = _pieces(values[0], noise * terms[0], z[0], turns + tuple(act.kinks))
        assert all(_monotone(v, n) for v, n in pieces if v.size > 1), (name, turns)
