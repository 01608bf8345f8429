"""Canonical pairs: why δ⁽ᴸ⁾ collapses to (a − y)/m, and why it does not for other pairs.

The general chain rule at the output is the product δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ ⊙ f′(z⁽ᴸ⁾).
For a canonical pair (sigmoid + binary_cross_entropy, identity +
cross_entropy, log_softmax + nll_loss, identity + mse/quadratic) the
denominator of ∂J/∂a is exactly f′, they cancel, and the seed's shortcut
δ⁽ᴸ⁾ = (a − y)/m is exact. For any other pair the shortcut drops f′(z⁽ᴸ⁾) and
is wrong; this module measures by how much.
"""
from __future__ import annotations

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.losses import class_rows
from handimpl.network import split_loss_kwargs

from .explain_graph import TorchRun
from .explain_steps import Section, Step, compared, max_diff

CANCELLATIONS = {
    ("sigmoid", "binary_cross_entropy"): (
        "∂J/∂a = (a − y)/(a(1 − a))/(m·k) and σ′(z) = a(1 − a): the product is "
        "(a − y)/(a(1 − a)) · a(1 − a)/(m·k) = (a − y)/(m·k). The a(1 − a) cancels."),
    ("identity", "cross_entropy"): (
        "cross_entropy is log_softmax followed by nll_loss (torch builds LogSoftmaxBackward0 and "
        "NllLossBackward0 for it). nll_loss gives −t/m; log_softmax's backward g − softmax(z)·Σⱼgⱼ "
        "turns it into −t/m + softmax(z)·(Σⱼtⱼ)/m = (softmax(z) − t)/m since Σⱼtⱼ = 1. "
        "With a = softmax(z) this is the seed's (a − y)/m; identity's f′ = 1 adds nothing."),
    ("log_softmax", "nll_loss"): (
        "nll_loss gives ∂J/∂a = −onehot(y)/m; the log_softmax Jacobian-vector product "
        "g − e^a·Σⱼgⱼ turns it into −onehot(y)/m + e^a/m = (softmax(z) − onehot(y))/m, "
        "the seed's (a − y)/m with a read as probabilities e^a."),
    ("identity", "mse_loss"): (
        "identity has f′ = 1, so δ⁽ᴸ⁾ = ∂J/∂a = 2(a − y)/(m·k): the seed's (a − y) up to "
        "mse_loss's factor 2/(m·k)."),
    ("identity", "quadratic"): (
        "identity has f′ = 1, so δ⁽ᴸ⁾ = ∂J/∂a = (a − y)/m: exactly the seed's δ = a − y, averaged."),
    ("identity", "binary_cross_entropy_with_logits"): (
        "the loss takes logits: ∂J/∂a = (σ(a) − y)/(m·k) and f′ = 1, the seed's (a − y) with a = σ(z)."),
}


def shortcut(spec, z, a, y) -> tuple[np.ndarray, str]:
    """The shortcut someone would write for this loss: its own (a − y)/N form when it has one,
    else the seed's δ⁽ᴸ⁾ = (a − y)/m."""
    loss = LOSSES[spec.loss]
    reduction, opts = split_loss_kwargs(spec)
    try:
        return loss.shortcut(z, a, y, reduction, **opts), f"{spec.loss}'s own shortcut"
    except NotImplementedError:
        m = a.shape[0] if reduction == "mean" else 1
        return (a - class_rows(y, a.shape[1], a.dtype)) / m, "the seed's δ⁽ᴸ⁾ = (a − y)/m"


def shortcut_section(spec, hand: dict, run: TorchRun, y) -> Section:
    L, act, loss = spec.depth, spec.activations[-1], spec.loss
    z, a = hand[f"z{L}"], hand[f"a{L}"]
    g, general = hand["dJ_da"], hand[f"delta{L}"]     # handimpl's δ⁽ᴸ⁾ is the general product
    short, which = shortcut(spec, z, a, y)
    torch_delta = run.delta[L]
    canonical = act in LOSSES[loss].canonical
    steps = [
        Step("general: δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ ⊙ f′(z⁽ᴸ⁾)" if ACTIVATIONS[act].elementwise
             else "general: δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ · ∂a⁽ᴸ⁾/∂z⁽ᴸ⁾ (row-wise Jacobian)",
             values=(("∂J/∂a⁽ᴸ⁾", g), ("δ⁽ᴸ⁾", general), ("torch", torch_delta)),
             diffs=compared(general, torch_delta, "general")),
        Step(f"shortcut: δ⁽ᴸ⁾ = (a − y)/N   ({which})",
             values=(("shortcut", short), ("torch", torch_delta)),
             diffs=compared(short, torch_delta, "shortcut") +
             (("max |shortcut − general|", max_diff(short, general)),)),
    ]
    if canonical:
        heading = f"Why δ⁽ᴸ⁾ collapses to (a − y)/m: {act} + {loss} is a canonical pair"
        text = CANCELLATIONS.get((act, loss), LOSSES[loss].__doc__.strip().splitlines()[-1].strip())
        steps.append(Step("the cancellation", note=text + " The numbers agree: the shortcut equals "
                          "the general product and torch's z⁽ᴸ⁾.grad."))
    else:
        heading = f"{act} + {loss} is not a canonical pair: the shortcut would be wrong"
        d = max_diff(short, torch_delta)
        scale = float(np.max(np.abs(torch_delta))) or 1.0
        f_prime = derivative_factor(act)
        own = which.startswith(loss)
        why = (f"the shortcut keeps ∂J/∂a⁽ᴸ⁾ but drops the factor f′ ({f_prime}), which does not cancel "
               f"against anything in {loss}'s gradient." if own else
               f"(a − y)/m is what ∂J/∂a⁽ᴸ⁾ ⊙ f′ collapses to only for canonical pairs; here the factor "
               f"f′ ({f_prime}) meets {loss}'s gradient and nothing cancels.")
        steps.append(Step(
            "what goes wrong",
            note=f"{why} Here the shortcut is off by up to {d:.3g} ({d / scale:.0%} of the largest |δ⁽ᴸ⁾|); "
                 f"a network trained with it follows the wrong gradient."))
    return Section(heading, "", tuple(steps))


def derivative_factor(act: str) -> str:
    from .explain_backward import derivative
    return derivative(act)
