"""Each activation's value and vector-Jacobian product against torch, kinks and ±1e3 included."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies_numeric import DTYPES, agree, f64, matrices

from handimpl import ACTIVATIONS
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
