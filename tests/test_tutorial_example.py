"""The tutorial's worked example: 2-2-1, sigmoid in both layers, J = ½(ŷ - y)², one example."""
import numpy as np
import pytest

import handimpl
from verify import NetSpec, torch_trace

SPEC = NetSpec.parse("2-2-1:sigmoid:quadratic")
x = np.array([0.05, 0.10])
y = np.array([0.01])
W1, b1 = np.array([[0.15, 0.20], [0.25, 0.30]]), np.array([0.35, 0.35])
W2, b2 = np.array([[0.40, 0.45]]), np.array([0.60])


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def tutorial_formulas():
    """The tutorial's own per-example, column-vector formulas, written out."""
    z1 = W1 @ x + b1
    a1 = sigmoid(z1)
    z2 = W2 @ a1 + b2
    y_hat = sigmoid(z2)
    delta2 = (y_hat - y) * y_hat * (1 - y_hat)          # δ₂ = (ŷ - y)·ŷ(1 - ŷ)
    delta1 = (W2.T @ delta2) * a1 * (1 - a1)             # δ₁ = (W₂)ᵀδ₂ · a₁(1 - a₁)
    return {"delta2": delta2, "delta1": delta1,
            "dW2": np.outer(delta2, a1), "db2": delta2,   # ∂J/∂W₂ = δ₂a₁ᵀ, ∂J/∂b₂ = δ₂
            "dW1": np.outer(delta1, x), "db1": delta1}    # ∂J/∂W₁ = δ₁xᵀ,  ∂J/∂b₁ = δ₁


PARAMS = [(W1, b1), (W2, b2)]
X, Y = x[None, :], y[None, :]


@pytest.mark.parametrize("name", ["delta2", "delta1", "dW2", "db2", "dW1", "db1"])
def test_handimpl_gives_the_tutorials_gradient(name):
    hand = handimpl.backprop(SPEC, PARAMS, X, Y)
    np.testing.assert_allclose(hand[name].reshape(-1), tutorial_formulas()[name].reshape(-1), rtol=1e-12)


@pytest.mark.parametrize("name", ["delta2", "delta1", "dW2", "db2", "dW1", "db1"])
def test_torch_autograd_gives_the_tutorials_gradient(name):
    ref = torch_trace(SPEC, PARAMS, X, Y)
    np.testing.assert_allclose(ref[name].reshape(-1), tutorial_formulas()[name].reshape(-1), rtol=1e-12)


def test_the_tutorials_cost_is_half_the_squared_error():
    hand = handimpl.backprop(SPEC, PARAMS, X, Y)
    y_hat = hand["a2"][0, 0]
    assert hand["loss"] == pytest.approx(0.5 * (y_hat - 0.01) ** 2, rel=1e-14)


def test_one_sgd_step_is_w_minus_eta_times_the_gradient():
    grads = handimpl.backprop(SPEC, PARAMS, X, Y)
    (W1_new, _), (W2_new, _) = handimpl.sgd_step(PARAMS, grads, lr=0.5)
    np.testing.assert_allclose(W2_new, W2 - 0.5 * tutorial_formulas()["dW2"], rtol=1e-14)
    np.testing.assert_allclose(W1_new, W1 - 0.5 * tutorial_formulas()["dW1"], rtol=1e-14)
