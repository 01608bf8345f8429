"""Every registered activation and loss is complete: a torch twin, kinks declared as a tuple of
numbers, and an error model (the verdict's bounds) that returns finite arrays of the right shape."""
import numpy as np
import pytest

import handimpl
from handimpl import ACTIVATIONS, LOSSES
from handimpl.network import split_loss_kwargs
from verify.core.data import draw_case
from verify.core.spec import NetSpec
from verify.core.torch_ops import TORCH_ACTIVATIONS, TORCH_LOSSES
from verify.errors import SpecError

U = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_an_activation_has_its_twin_its_kinks_and_an_error_model(name):
    act = ACTIVATIONS[name]
    assert name in TORCH_ACTIVATIONS and callable(TORCH_ACTIVATIONS[name])
    assert isinstance(act.kinks, tuple) and all(isinstance(k, float) for k in act.kinks)
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        z = rng.standard_normal((3, 4)).astype(dtype) * 3
        z[0, :len(act.kinks)] = act.kinks[:4]
        a = act.f(z)
        g = rng.standard_normal(z.shape).astype(dtype)
        Ez = np.full(z.shape, 1e-6)
        Ea = np.full(z.shape, 1e-6)
        Eg = np.full(z.shape, 1e-6)
        bounds = [act.forward_error(z, a, Ez, U[dtype]), act.vjp_error(z, a, g, Ez, Ea, Eg, U[dtype])]
        values = [act.vjp(z, a, g)]
        if act.elementwise:          # softmax and log_softmax act on whole rows: no f′ of their own
            bounds += [act.f_terms(z, a), act.df_terms(z, a)]
            values += [act.df(z, a)]
        for out in map(np.asarray, bounds):
            assert out.shape == z.shape and np.isfinite(out).all() and (out >= 0).all(), (name, dtype)
        for out in map(np.asarray, values):
            assert out.shape == z.shape and np.isfinite(out).all(), (name, dtype)


def _spec_for(loss: str) -> NetSpec:
    """A 3-4 network whose output activation the loss accepts."""
    for act in ACTIVATIONS:
        try:
            return NetSpec.parse(f"3-4:{act}:{loss}")
        except SpecError:
            continue
    raise AssertionError(f"no output activation suits {loss}")


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_has_its_twin_and_an_error_model(name):
    loss = LOSSES[name]
    assert name in TORCH_LOSSES and callable(TORCH_LOSSES[name])
    for dtype in ("float32", "float64"):
        spec = NetSpec.parse(str(_spec_for(name)) + f":dtype={dtype}")
        case = draw_case(spec, seed=1, batch=3)
        a = handimpl.backprop(spec, case.params, case.x, case.y)[f"a{len(spec.widths) - 1}"]
        reduction, opts = split_loss_kwargs(spec)
        Ea = np.full(a.shape, 1e-6)
        value = np.asarray(loss.value_error(a, case.y, Ea, U[dtype], reduction, **opts))
        grad = np.asarray(loss.grad_error(a, case.y, Ea, U[dtype], reduction, **opts))
        assert value.size == 1 and np.isfinite(value).all() and (value >= 0).all(), (name, dtype)
        assert grad.shape == a.shape and np.isfinite(grad).all() and (grad >= 0).all(), (name, dtype)
