"""handimpl's gradients against central finite differences of its own loss, in float64.

NumPy, hypothesis and pytest only: no torch and nothing of verify, so that this file also runs
on Pythons that have no torch (.ci/run runs it on a second Python version). Every registered
activation and every registered loss appears in at least one network; points within reach of
a kink are redrawn, since a finite difference across a kink measures neither side.
"""
import types

import numpy as np
import pytest

import handimpl
from handimpl import ACTIVATIONS, LOSSES

H = 1e-6            # the step of the central difference
CLEAR = 1e-3        # no z⁽ˡ⁾ this close to a kink of its activation


def fits(activation: str, loss: str) -> bool:
    """The activation's outputs lie in the loss's domain."""
    lo, hi = LOSSES[loss].domain(**LOSSES[loss].options)
    a_lo, a_hi = ACTIVATIONS[activation].range
    return lo <= a_lo and a_hi <= hi


def networks() -> list[tuple[str, str, str]]:
    """(hidden activation, output activation, loss): each activation hidden, before mse_loss,
    and each loss after the first output activation that fits it."""
    nets = [(name, "identity", "mse_loss") for name in ACTIVATIONS]
    for loss in LOSSES:
        output = next(name for name in ACTIVATIONS if fits(name, loss))
        nets.append(("tanh", output, loss))
    return nets


def target(loss: str, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    kind = LOSSES[loss].target
    if kind == "class":
        return rng.integers(0, k, m)
    if kind == "unit":
        return rng.uniform(0, 1, (m, k))
    if kind == "sign":
        return rng.choice([-1.0, 1.0], (m, k))
    if kind == "counts":
        return rng.poisson(2.0, (m, k)).astype(np.float64)
    if kind == "distribution":
        e = np.exp(rng.normal(size=(m, k)))
        return e / e.sum(axis=1, keepdims=True)
    return rng.normal(size=(m, k))


def clear_of_kinks(spec, params, x) -> bool:
    zs, _ = handimpl.forward(spec, params, x)
    return all(np.all(np.abs(zs[l] - kink) > CLEAR)
               for l, name in enumerate(spec.activations, start=1) for kink in ACTIVATIONS[name].kinks)


def case(hidden: str, output: str, loss: str, reduction: str, seed: int):
    """A 3-4-3 network with its data, drawn again until no z lies near a kink."""
    spec = types.SimpleNamespace(widths=(3, 4, 3), activations=(hidden, output), loss=loss,
                                 loss_kwargs={"reduction": reduction}, bias=True, dtype="float64")
    rng = np.random.default_rng(seed)
    while True:
        params = handimpl.init_params(spec.widths, seed=rng)
        x = rng.normal(size=(5, 3))
        if clear_of_kinks(spec, params, x):
            return spec, params, x, target(loss, 5, 3, rng)


def loss_at(spec, params, x, y) -> float:
    _, a = handimpl.forward(spec, params, x)
    reduction = spec.loss_kwargs["reduction"]
    return float(LOSSES[spec.loss].value(a[-1], y, reduction, **LOSSES[spec.loss].options))


def finite_differences(spec, params, x, y) -> dict[str, np.ndarray]:
    """(J(θ + h) − J(θ − h)) / 2h for every weight and bias θ."""
    out = {}
    for l, (W, b) in enumerate(params, start=1):
        for name, p in ((f"dW{l}", W), (f"db{l}", b)):
            grad = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                keep = p[i]
                p[i] = keep + H
                up = loss_at(spec, params, x, y)
                p[i] = keep - H
                down = loss_at(spec, params, x, y)
                p[i] = keep
                grad[i] = (up - down) / (2 * H)
            out[name] = grad
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("hidden, output, loss", networks())
def test_handimpl_gradients_are_the_slopes_of_its_own_loss(hidden, output, loss, reduction):
    spec, params, x, y = case(hidden, output, loss, reduction, seed=len(hidden) + 7 * len(loss))
    hand = handimpl.backprop(spec, params, x, y)
    for name, slope in finite_differences(spec, params, x, y).items():
        scale = max(np.abs(slope).max(), 1e-3)
        np.testing.assert_allclose(hand[name], slope, rtol=1e-5, atol=1e-6 * scale, err_msg=name)


def test_every_activation_and_loss_is_in_some_network():
    nets = networks()
    assert {a for h, o, _ in nets for a in (h, o)} == set(ACTIVATIONS)
    assert {loss for *_, loss in nets} == set(LOSSES)


def test_a_wrong_delta_is_caught_by_the_finite_differences():
    spec, params, x, y = case("sigmoid", "identity", "mse_loss", "mean", seed=1)
    slope = finite_differences(spec, params, x, y)["dW1"]
    hand = handimpl.backprop(spec, params, x, y)["dW1"]
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(hand * 1.001, slope, rtol=1e-5, atol=1e-6 * np.abs(slope).max())
