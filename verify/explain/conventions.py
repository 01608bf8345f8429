"""Where the tutorial's conventions and torch's differ, each shown in numbers on this case.

- the batch mean: J averages over m examples, so every δ⁽ˡ⁾ row carries 1/m
  (mse_loss and the other elementwise losses divide by m·k instead);
- the tutorial's ½ in J = ½(ŷ − y)²: quadratic's gradient is (a − y)/m, mse_loss's 2(a − y)/(m·k);
- column vectors vs rows: the tutorial's z = W a + b is row i of Z = A Wᵀ + b,
  and its per-example δaᵀ summed over the batch is δᵀA;
- the subgradient at a kink: which value of f′ torch takes where f has a corner.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

import handimpl
from handimpl import ACTIVATIONS, LOSSES
from verify.core.twin import TORCH_ACTIVATIONS
from verify.explain.steps import Section, Step, max_diff

# Each activation's kinks, as the activation declares them; softplus's is where torch switches to
# z (f and f′ jump by about e^{-20}), not a point where a subgradient is chosen.
KINKS = {name: tuple(act.kinks) for name, act in ACTIVATIONS.items() if act.kinks and name != "softplus"}


def batch_mean_step(spec, params, x, y, hand) -> Step:
    summed = handimpl.backprop(replace(spec, reduction="sum"), params, x, y)
    L = spec.depth
    N = LOSSES[spec.loss].count(hand[f"a{L}"], "mean") if spec.reduction == "mean" else 1
    what = "m" if N in (1, x.shape[0]) else "m·k"
    return Step(f"batch mean: J = (1/N)Σ ℓ with N = {what} = {N} here",
                values=(("∂J/∂W⁽¹⁾ (mean)", hand["dW1"]), ("∂J/∂W⁽¹⁾ (sum) / N", summed["dW1"] / N)),
                diffs=(("max |mean − sum/N|", max_diff(hand["dW1"], summed["dW1"] / N)),),
                note="reduction='mean' divides every δ row by N; 'sum' does not. The tutorial's per-example "
                     "δ (its loss not averaged) is N times a row of this δ. mse_loss, binary_cross_entropy "
                     "and the other elementwise losses divide by m·k (every element), cross_entropy and nll_loss by m.")


def half_step(spec, y, hand) -> Step:
    L = spec.depth
    a = hand[f"a{L}"]
    y, which = (y, "this case's y") if y.shape == a.shape and y.dtype == a.dtype else (np.zeros_like(a), "y = 0")
    m, k = a.shape
    q = LOSSES["quadratic"].grad(a, y, "mean")
    mse = LOSSES["mse_loss"].grad(a, y, "mean")
    return Step("the tutorial's ½: quadratic ∂J/∂a = (a − y)/N with N = m, mse_loss ∂J/∂a = 2(a − y)/N "
                "with N = m·k",
                values=(("quadratic", q), ("mse_loss · k/2", mse * k / 2)),
                diffs=(("max |quadratic − mse_loss·k/2|", max_diff(q, mse * k / 2)),),
                note=f"on this a⁽ᴸ⁾ with {which} (k = {k}): the tutorial's J = ½(ŷ − y)² has no 2 in "
                     f"its gradient, torch's mse_loss = mean((a − y)²) has one, and averages over k "
                     f"outputs too. Same direction, gradients differ by the factor 2/k.")


def columns_step(spec, params, x, hand) -> Step:
    W, b = params[0]
    i = x.shape[0] - 1                                         # the last example (the first may be zeroed)
    x0 = x[i].reshape(-1, 1)                                   # the tutorial's column a⁽⁰⁾ for example i
    z_col = W @ x0 + (0 if b is None else b.reshape(-1, 1))    # z = W a + b
    outer = sum(hand["delta1"][i].reshape(-1, 1) @ x[i].reshape(1, -1) for i in range(x.shape[0]))
    return Step(f"columns vs rows: z⁽¹⁾ = W⁽¹⁾x + b⁽¹⁾ (column) is row {i + 1} of Z⁽¹⁾ = X W⁽¹⁾ᵀ + b⁽¹⁾",
                values=((f"W x_{i + 1} + b (column)", z_col), (f"row {i + 1} of X Wᵀ + b", hand["z1"][i:i + 1].T),
                        ("Σᵢ δᵢxᵢᵀ", outer), ("δᵀX", hand["dW1"])),
                diffs=(("max |column − row|", max_diff(z_col, hand["z1"][i:i + 1].T)),
                       ("max |Σᵢ δᵢxᵢᵀ − δᵀX|", max_diff(outer, hand["dW1"]))),
                note="torch stores one example per row, so every tutorial formula appears transposed: "
                     "(W a)ᵀ = aᵀWᵀ, δ⁽ˡ⁾ = (W⁽ˡ⁺¹⁾)ᵀδ⁽ˡ⁺¹⁾ becomes δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾, and the tutorial's "
                     "δaᵀ for one example becomes δᵀA, the sum over the batch in one product.")


def kink_steps(spec, hand) -> list[Step]:
    names = [n for n in dict.fromkeys(spec.activations) if n in KINKS] or ["relu"]
    steps = []
    for name in names:
        points = np.array(KINKS[name], dtype=np.float64).reshape(1, -1)
        act = ACTIVATIONS[name]
        ours = act.df(points, act.f(points))
        zt = torch.tensor(points, requires_grad=True)
        TORCH_ACTIVATIONS[name]()(zt).sum().backward()
        at_kink = sum(int(np.sum(hand[f"z{l}"] == p)) for l in range(1, spec.depth + 1)
                      if spec.activations[l - 1] == name for p in KINKS[name])
        used = "" if name in spec.activations else " (not in this spec; relu shown as the example)"
        steps.append(Step(f"subgradient at a kink: {name}′ at z = {', '.join(f'{p:g}' for p in KINKS[name])}",
                          values=(("hand f′", ours), ("torch", zt.grad.numpy())),
                          diffs=(("max |hand − torch|", max_diff(ours, zt.grad.numpy())),),
                          note=f"f is not differentiable there; any value between the one-sided slopes is "
                               f"a subgradient and torch picks the one shown, so handimpl does too. "
                               f"{at_kink} entries of z land exactly on a kink in this case{used}."))
    return steps


def conventions_section(spec, params, x, y, hand) -> Section:
    steps = [batch_mean_step(spec, params, x, y, hand), half_step(spec, y, hand),
             columns_step(spec, params, x, hand), *kink_steps(spec, hand)]
    return Section("Conventions: where the tutorial and torch differ", "", tuple(steps))
