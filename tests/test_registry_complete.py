"""Every registered activation and loss is complete: a torch twin, kinks declared as a tuple of
numbers, an error model (the verdict's bounds) that returns finite arrays of the right shape, and
the formulas verify explain displays."""
import re

import numpy as np
import pytest

import handimpl
from handimpl import ACTIVATIONS, LOSSES
from handimpl.losses import Loss
from handimpl.network import split_loss_kwargs
from verify.core import torch_ops
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


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_an_activation_displays_its_formula_and_a_derivative_written_as_one(name):
    act = ACTIVATIONS[name]
    assert act.formula.strip() and act.derivative.strip()
    assert "′" in act.derivative or "∂" in act.derivative, act.derivative
    assert act.formula != act.derivative


def _one_sided(act, k: float) -> tuple[float, float, float]:
    """f′ just left of k, at k, and just right of k."""
    z = np.array([[np.nextafter(k, -np.inf), k, np.nextafter(k, np.inf)]])
    return tuple(act.df(z, act.f(z))[0])


def _conditions(text: str) -> list[str]:
    """The 'if ...' conditions of a piecewise derivative text, as Python expressions in z."""
    found = re.findall(r"\bif (.+?)(?=,|\s+else\b|\s{2,}|$)", text)
    return [c.replace("−", "-").replace("≤", "<=").replace("≥", ">=") for c in found]


# Kinks where f′ really jumps, so that torch chooses a value there: elu's and celu's f′ (α = 1) is
# continuous at 0, and softplus's switch to z at 20 moves f′ by about 2e-9.
CORNERS = [(name, k) for name, act in ACTIVATIONS.items() for k in act.kinks
           if abs(_one_sided(act, k)[0] - _one_sided(act, k)[2]) > 1e-6]


@pytest.mark.parametrize("name, k", CORNERS)
def test_a_derivative_text_says_which_side_of_each_kink_its_value_there_comes_from(name, k):
    act = ACTIVATIONS[name]
    left, at, right = _one_sided(act, k)
    conditions = _conditions(act.derivative)
    assert conditions, act.derivative

    def branch(z: float) -> tuple[bool, ...]:
        return tuple(eval(c, {"__builtins__": {}}, {"z": z}) for c in conditions)

    below, here, above = branch(np.nextafter(k, -np.inf)), branch(k), branch(np.nextafter(k, np.inf))
    assert below != above, f"{act.derivative!r} does not tell the two sides of {k} apart"
    assert here in (below, above)
    assert at == (left if here == below else right), (act.derivative, k, left, at, right)


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_displays_its_terms_and_its_gradient_over_the_divisor_n(name):
    loss = LOSSES[name]
    assert loss.formula.startswith("ℓ"), loss.formula
    assert loss.grad_formula.startswith("∂J/∂a⁽ᴸ⁾ = ") and re.search(r"/ ?N\b", loss.grad_formula), loss.grad_formula


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_has_a_shortcut_formula_exactly_when_it_implements_shortcut(name):
    loss = LOSSES[name]
    implements = type(loss).shortcut is not Loss.shortcut
    assert (loss.shortcut_formula is not None) == implements
    if implements:
        assert loss.shortcut_formula.endswith("/N"), loss.shortcut_formula


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_explains_the_cancellation_for_exactly_its_canonical_output_activations(name):
    loss = LOSSES[name]
    assert set(loss.cancellations) == set(loss.canonical)
    assert all(text.strip() for text in loss.cancellations.values())


def test_an_activation_or_loss_without_a_torch_counterpart_is_refused_by_name():
    class Unpaired(handimpl.Activation):
        name = "unpaired"

    class NoFunction(Loss):
        name, torch_function = "no_function", "not_in_torch"

    with pytest.raises(LookupError, match="activation 'unpaired': torch_module"):
        torch_ops._activation_module(Unpaired())
    with pytest.raises(LookupError, match="loss 'no_function': torch_function 'not_in_torch'"):
        torch_ops._loss_function(NoFunction())
