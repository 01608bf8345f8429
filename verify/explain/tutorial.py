"""The tutorial's 2-2-1 sigmoid example, step by step, with concrete numbers.

The tutorial gives the formulas but no numbers; these are chosen here (the classic
worked example's values). With batch m = 1 the tutorial's J = ½(ŷ − y)² is exactly
the ``quadratic`` loss, so the spec is ``2-2-1:sigmoid:quadratic``. The hand
column is the tutorial's formulas evaluated literally on column vectors; the torch
column is the twin's tensors (transposed to columns where torch keeps rows).
"""
from __future__ import annotations

import numpy as np
import torch

from handimpl.activations import sigmoid
from verify.core.spec import NetSpec
from verify.core.twin import build_twin, sgd_step
from verify.explain.graph import run_torch
from verify.explain.steps import TUTORIAL, Explanation, Section, Step, compared

SPEC = "2-2-1:sigmoid:quadratic"
X = np.array([[0.05, 0.10]])
W1 = np.array([[0.15, 0.20], [0.25, 0.30]])
B1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45]])
B2 = np.array([0.60])
Y = np.array([[0.01]])
ETA = 0.5


def tutorial_formulas() -> dict:
    """The tutorial's example evaluated literally, column vectors and all."""
    x, y = X.T, Y.T                                   # columns (2, 1) and (1, 1)
    z1 = W1 @ x + B1.reshape(-1, 1)                   # z₁ = W₁x + b₁
    a1 = sigmoid(z1)                                 # a₁ = σ(z₁)
    z2 = W2 @ a1 + B2.reshape(-1, 1)                  # z₂ = W₂a₁ + b₂
    yhat = sigmoid(z2)                               # ŷ = σ(z₂)
    J = 0.5 * float(((yhat - y) ** 2).sum())          # J = ½(ŷ − y)²
    d2 = (yhat - y) * yhat * (1 - yhat)               # δ₂ = (ŷ − y)·ŷ(1 − ŷ)
    d1 = (W2.T @ d2) * a1 * (1 - a1)                  # δ₁ = (W₂)ᵀδ₂ ⊙ a₁(1 − a₁)
    dW2, db2 = d2 @ a1.T, d2                          # ∂J/∂W₂ = δ₂a₁ᵀ, ∂J/∂b₂ = δ₂
    dW1, db1 = d1 @ x.T, d1                           # ∂J/∂W₁ = δ₁xᵀ,  ∂J/∂b₁ = δ₁
    return dict(z1=z1, a1=a1, z2=z2, yhat=yhat, J=J, d2=d2, d1=d1, dW2=dW2, db2=db2, dW1=dW1, db1=db1,
                W2_new=W2 - ETA * dW2, W1_new=W1 - ETA * dW1,
                b2_new=B2.reshape(-1, 1) - ETA * db2, b1_new=B1.reshape(-1, 1) - ETA * db1)


def _sgd(spec) -> dict:
    model = build_twin(spec, [(W1, B1), (W2, B2)])
    h = model(torch.from_numpy(X))
    J = 0.5 * ((h - torch.from_numpy(Y)) ** 2).sum()
    J.backward()
    sgd_step(model.parameters(), ETA)                 # torch.optim.SGD's update, bit for bit
    return {"W1": model[0].weight.detach().numpy(), "b1": model[0].bias.detach().numpy(),
            "W2": model[2].weight.detach().numpy(), "b2": model[2].bias.detach().numpy()}


def _transposed(path, what):
    return tuple(f"{n} → {what}" if n.startswith("T") else n for n in path)


def _step(formula, hand, torch_value, nodes=(), note="") -> Step:
    return Step(formula, tuple(nodes), (("tutorial", hand), ("torch", torch_value)),
                compared(hand, torch_value, "tutorial"), note)


def tutorial_example(*, define_tutorial: bool = True) -> Explanation:
    spec = NetSpec.parse(SPEC)
    s = tutorial_formulas()
    run = run_torch(spec, [(W1, B1), (W2, B2)], X, Y)
    lin1, lin2 = run.linear[1], run.linear[2]
    sig1, sig2 = (" → ".join(run.act_nodes[l]) or "(no node)" for l in (1, 2))
    after = _sgd(spec)
    numbers = Section("The numbers (chosen here; the tutorial gives none)", (
        f"x = [0.05, 0.10], W₁ = [[0.15, 0.20], [0.25, 0.30]], b₁ = [0.35, 0.35], "
        f"W₂ = [[0.40, 0.45]], b₂ = 0.60, y = 0.01, learning rate η = {ETA:g}. "
        f"Spec {SPEC}, batch m = 1, so J = (1/m)·½(ŷ − y)² is the tutorial's J = ½(ŷ − y)²."))
    fwd = Section("1. Forward propagation", "", (
        _step("z₁ = W₁x + b₁", s["z1"], run.z[1].T),
        _step("a₁ = σ(z₁) = 1/(1 + e^(−z₁))", s["a1"], run.a[1].T),
        _step("z₂ = W₂a₁ + b₂", s["z2"], run.z[2].T),
        _step("ŷ = σ(z₂)", s["yhat"], run.a[2].T),
    ))
    err = Section("2. Compute the error", "", (
        _step("J = ½(ŷ − y)²", s["J"], run.loss, nodes=(" → ".join(run.loss_nodes) + " → ∂J/∂ŷ = ŷ − y",),
              note="torch builds J from elementary ops, so these are the loss nodes it produced."),
        _step("∂J/∂ŷ = ŷ − y", s["yhat"] - Y.T, run.dJ_da[2].T, note="torch: ŷ.grad."),
    ))
    bwd = Section("3. Backpropagation", "", (
        _step("δ₂ = (ŷ − y)·ŷ(1 − ŷ)", s["d2"], run.delta[2].T,
              nodes=(f"{sig2} → ⊙ ŷ(1 − ŷ)",), note="torch: z₂.grad."),
        _step("δ₁ = (W₂)ᵀδ₂ ⊙ a₁(1 − a₁)", s["d1"], run.delta[1].T,
              nodes=(f"{lin2.node} → (W₂)ᵀδ₂ (as the row δ₂W₂)", f"{sig1} → ⊙ a₁(1 − a₁)"),
              note="torch: z₁.grad."),
        _step("∂J/∂W₂ = δ₂a₁ᵀ", s["dW2"], run.dW[2],
              nodes=(f"{lin2.node} → a₁δ₂ᵀ (gradient of W₂ᵀ)", *_transposed(lin2.to_W, "δ₂a₁ᵀ"))),
        _step("∂J/∂b₂ = δ₂", s["db2"], run.db[2].reshape(-1, 1), nodes=(f"{lin2.node} → δ₂", *lin2.to_b)),
        _step("∂J/∂W₁ = δ₁xᵀ", s["dW1"], run.dW[1],
              nodes=(f"{lin1.node} → xδ₁ᵀ (gradient of W₁ᵀ)", *_transposed(lin1.to_W, "δ₁xᵀ"))),
        _step("∂J/∂b₁ = δ₁", s["db1"], run.db[1].reshape(-1, 1), nodes=(f"{lin1.node} → δ₁", *lin1.to_b)),
    ))
    upd = Section("4. Update weights: one step of gradient descent",
                  f"η = {ETA:g}; torch: torch.optim.SGD's update (verify.core.twin.sgd_step).", (
        _step("W₂ := W₂ − η ∂J/∂W₂", s["W2_new"], after["W2"]),
        _step("b₂ := b₂ − η ∂J/∂b₂", s["b2_new"], after["b2"].reshape(-1, 1)),
        _step("W₁ := W₁ − η ∂J/∂W₁", s["W1_new"], after["W1"]),
        _step("b₁ := b₁ − η ∂J/∂b₁", s["b1_new"], after["b1"].reshape(-1, 1)),
    ))
    return Explanation(
        "The tutorial's example: a 2-2-1 sigmoid network, by hand and by autograd",
        (f"Every formula below is that of {TUTORIAL if define_tutorial else 'the tutorial'}, "
         "evaluated on column vectors exactly as written; "
         "next to it is the same tensor from torch's autograd and the autograd node that computed it.",),
        (numbers, fwd, err, bwd, upd))
