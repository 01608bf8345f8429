"""Canonical pairs: why δ⁽ᴸ⁾ collapses to (a − y)/N, and why it does not for other pairs.

The general chain rule at the output is the product δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ ⊙ f′(z⁽ᴸ⁾).
For a canonical pair (sigmoid + binary_cross_entropy, identity +
cross_entropy, log_softmax + nll_loss, identity + mse/quadratic) the
denominator of ∂J/∂a is exactly f′, they cancel, and the tutorial's shortcut
δ⁽ᴸ⁾ = (a − y)/N is exact (N: the divisor of the loss's mean, verify.explain.page.divisor_text;
mse_loss's own shortcut is 2(a − y)/N). For any other pair the shortcut drops f′(z⁽ᴸ⁾) and
is wrong; this module measures by how much.
"""
from __future__ import annotations

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.losses import class_rows
from handimpl.network import split_loss_kwargs
from verify.explain.backward import derivative
from verify.explain.graph import TorchRun
from verify.explain.steps import Section, Step, compared, max_diff

# The tutorial's δ⁽ᴸ⁾, what someone would write for a loss without a shortcut of its own.
TUTORIAL_SHORTCUT = "(a − y)/N"


def shortcut(spec, z, a, y) -> tuple[np.ndarray, str, str]:
    """The shortcut someone would write for this loss, (value, formula, whose): its own form
    when it has one (its shortcut_formula), else the tutorial's δ⁽ᴸ⁾ = (a − y)/N."""
    loss = LOSSES[spec.loss]
    reduction, opts = split_loss_kwargs(spec)
    try:
        value = loss.shortcut(z, a, y, reduction, **opts)
        return value, loss.shortcut_formula, f"{spec.loss}'s own shortcut"
    except NotImplementedError:
        n = loss.count(a, reduction)
        return (a - class_rows(y, a.shape[1], a.dtype)) / n, TUTORIAL_SHORTCUT, "the tutorial's shortcut"


def shortcut_section(spec, hand: dict, run: TorchRun, y) -> Section:
    L, act, loss = spec.depth, spec.activations[-1], spec.loss
    z, a = hand[f"z{L}"], hand[f"a{L}"]
    g, general = hand["dJ_da"], hand[f"delta{L}"]     # handimpl's δ⁽ᴸ⁾ is the general product
    short, formula, which = shortcut(spec, z, a, y)
    torch_delta = run.delta[L]
    canonical = act in LOSSES[loss].canonical
    if formula.startswith("2"):
        label = (f"shortcut: δ⁽ᴸ⁾ = {formula}   ({which}: the factor 2 comes from "
                 f"∂(a − y)²/∂a = 2(a − y); {TUTORIAL_SHORTCUT} is half of it)")
        shown = ((TUTORIAL_SHORTCUT, short / 2), (formula, short), ("torch", torch_delta))
    else:
        label = f"shortcut: δ⁽ᴸ⁾ = {formula}   ({which})"
        shown = (("shortcut", short), ("torch", torch_delta))
    steps = [
        Step("general: δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ ⊙ f′(z⁽ᴸ⁾)" if ACTIVATIONS[act].elementwise
             else "general: δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ · ∂a⁽ᴸ⁾/∂z⁽ᴸ⁾ (row-wise Jacobian)",
             values=(("∂J/∂a⁽ᴸ⁾", g), ("δ⁽ᴸ⁾", general), ("torch", torch_delta)),
             diffs=compared(general, torch_delta, "general")),
        Step(label, values=shown,
             diffs=compared(short, torch_delta, "shortcut") +
             (("max |shortcut − general|", max_diff(short, general)),)),
    ]
    if canonical:
        heading = f"Why δ⁽ᴸ⁾ collapses to {formula}: {act} + {loss} is a canonical pair"
        text = LOSSES[loss].cancellations[act]
        steps.append(Step("the cancellation", note=text + " The numbers agree: the shortcut equals "
                          "the general product and torch's z⁽ᴸ⁾.grad."))
    else:
        heading = f"{act} + {loss} is not a canonical pair: the shortcut would be wrong"
        d = max_diff(short, torch_delta)
        scale = float(np.max(np.abs(torch_delta))) or 1.0
        f_prime = derivative(act)
        own = which.startswith(loss)
        why = (f"the shortcut keeps ∂J/∂a⁽ᴸ⁾ but drops the factor f′ ({f_prime}), which does not cancel "
               f"against anything in {loss}'s gradient." if own else
               f"{TUTORIAL_SHORTCUT} is what ∂J/∂a⁽ᴸ⁾ ⊙ f′ collapses to only for canonical pairs; here "
               f"the factor f′ ({f_prime}) meets {loss}'s gradient and nothing cancels.")
        steps.append(Step(
            "what goes wrong",
            note=f"{why} Here the shortcut is off by up to {d:.3g} ({d / scale:.0%} of the largest |δ⁽ᴸ⁾|); "
                 f"a network trained with it follows the wrong gradient."))
    return Section(heading, "", tuple(steps))
