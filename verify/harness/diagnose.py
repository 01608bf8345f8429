"""Explaining a failed check to a student: the first diverging tensor, what agreed before it,
and the step and equation to look at (e.g. "delta2 is the first to diverge while z2 and a2
agree: look at the backward step of layer 2: δ² = (δ³W³) ⊙ f′(z²)")."""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from verify.byo.call import CALL, STEP
from verify.core.compare import split_name
from verify.core.stack_bounds import stack_step_of
from verify.core.verdict import counts, step_inputs

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def sup(n: int | str) -> str:
    """2 -> '²'."""
    return str(n).translate(_SUP)


def _n(l: int) -> str:
    return "n" + str(l).translate(_SUB)


def _a(l: int) -> str:
    return "x" if l == 0 else f"a{sup(l)}"


def and_join(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def stack_hint(spec: Any, name: str, lr: float = 0.1) -> tuple[list[str], str]:
    """hint for a layer stack: the layer whose step makes ``name``, and that step's equation
    (the layer class's formulas)."""
    inputs = step_inputs(spec, name)
    kind, i, param = stack_step_of(spec, name)
    n = spec.depth
    if kind == "loss":
        return inputs, f"the loss: J = {spec.loss}(out{sup(n)}, y) with reduction '{spec.reduction}'"
    if kind == "grad" and i == n:
        return inputs + ["loss"], (f"the loss's gradient: ∂J/∂out{sup(n)} of {spec.loss} "
                                   f"({LOSSES[spec.loss].grad_formula})")
    if kind == "grad" or kind == "dx":
        j = 1 if kind == "dx" else i + 1
        layer = spec.layers[j - 1]
        return inputs, (f"the backward step of layer {j} ({layer.spec()}) into its input: "
                        f"{layer.backward_formulas.get('dx', '∂J/∂x')}")
    if kind == "forward":
        layer = spec.layers[i - 1]
        return inputs, f"the forward step of layer {i} ({layer.spec()}): {layer.formula}"
    if kind == "param":
        layer = spec.layers[i - 1]
        own = param.rpartition(".")[2]
        return inputs, (f"the gradient of layer {i}'s {param} ({layer.spec()}): "
                        f"{layer.backward_formulas.get('d' + own, '∂J/∂' + own)}")
    if kind == "buffer":
        layer = spec.layers[i - 1]
        return inputs, (f"the {param} of layer {i} ({layer.spec()}) after the forward: running mean with "
                        f"momentum {getattr(layer, 'momentum', 0.1):g}, and the unbiased variance")
    if kind == "after":
        return inputs, f"the update: θ := θ − η ∂J/∂θ (η = {lr:g}) for layer {i}'s {param}"
    return [], f"{name}"


def hint(spec: Any, name: str, lr: float = 0.1) -> tuple[list[str], str]:
    """(the tensors ``name`` is computed from, where to look: the step and its equation)."""
    if hasattr(spec, "layers") and name not in (CALL, STEP) and stack_step_of(spec, name)[0]:
        return stack_hint(spec, name, lr)
    L = len(spec.widths) - 1
    quantity, l = split_name(name)
    inputs = step_inputs(spec, name)
    if quantity == "z":
        return inputs, (f"the forward step of layer {l}: z{sup(l)} = {_a(l - 1)}W{sup(l)}ᵀ"
                        + (f" + b{sup(l)}" if spec.bias else "") + f" (W{sup(l)} is ({_n(l)}, {_n(l - 1)}))")
    if quantity == "a":
        return inputs, f"the activation of layer {l}: a{sup(l)} = {spec.activations[l - 1]}(z{sup(l)})"
    if quantity == "loss":
        return inputs, (f"the loss: J = {spec.loss}(a{sup(L)}, y) with reduction "
                           f"'{spec.reduction}' (torch's 'mean' divides mse_loss and the other "
                           f"elementwise losses by m·k, cross_entropy and nll_loss by m)")
    if quantity == "delta" and l == L:
        return inputs + ["loss"], (f"the output error: δ{sup(L)} = ∂J/∂a{sup(L)} ⊙ f′(z{sup(L)}) "
                                            f"(the shortcut δ = (a - y)/m holds only for canonical pairs)")
    if quantity == "delta":
        return inputs, (f"the backward step of layer {l}: "
                                                      f"δ{sup(l)} = (δ{sup(l + 1)}W{sup(l + 1)}) ⊙ f′(z{sup(l)})")
    if quantity == "dW":
        return inputs, (f"the weight gradient of layer {l}: ∂J/∂W{sup(l)} = δ{sup(l)}ᵀ{_a(l - 1)}, "
                        f"shape ({_n(l)}, {_n(l - 1)})")
    if quantity == "db":
        return inputs, (f"the bias gradient of layer {l}: ∂J/∂b{sup(l)} = Σ over the batch of "
                                f"δ{sup(l)} (a sum, not a mean)")
    if name == "dx":
        return inputs, "the input gradient: ∂J/∂x = δ¹W¹"
    if quantity in ("W_after_step", "b_after_step"):
        p = "W" if quantity == "W_after_step" else "b"
        return inputs, f"the update: {p}{sup(l)} := {p}{sup(l)} − η ∂J/∂{p}{sup(l)} (η = {lr:g})"
    if name == CALL:
        return [], "the line above: the harness could not use what the implementation did"
    if name == STEP:
        return [], "the implementation's step(params, grads, lr)"
    return [], (f"{name} was changed in place: compute into new arrays instead "
                f"(W = W - lr*dW, not W -= lr*dW; z = z + b, not z += b on an input)")


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _value(v: float) -> str:
    """A value as a sentence names it: 'inf', '-inf', 'nan', or six significant digits."""
    return "nan" if v != v else f"{v:.6g}"


def tally(records) -> str:
    """'1 diverges, 6 inherit' (the tensors that do not agree)."""
    n = counts(records)
    parts = [f"{n['diverges']} diverge{'s' if n['diverges'] == 1 else ''}"]
    if n["inherits"]:
        parts.append(f"{n['inherits']} inherit{'s' if n['inherits'] == 1 else ''}")
    return ", ".join(parts)


def worst_sentence(r) -> str:
    """The worst element (the one furthest beyond its allowance), with its own error and
    allowance, and apart from it the tensor-wide largest difference from torch; non-finite
    values named: 'yours is inf where torch is 0.54'."""
    where = f"at index {list(r.worst_index)}: "
    h, t, ref = r.hand_value, r.torch_value, r.reference_value
    if not (np.isfinite(h) and np.isfinite(t)):
        return where + f"yours is {_value(h)} where torch is {_value(t)}"
    exact = f", exact {_fmt(ref)}" if np.isfinite(ref) and ref != t else ""
    error = abs(h - ref) if np.isfinite(ref) else abs(h - t)
    n, N = r.n_mismatched, r.n_elements
    return where + (f"yours {_fmt(h)}, torch {_fmt(t)}{exact}: off by {_fmt(error)} where {_fmt(r.allowed)} "
                    f"is allowed ({n} of {N} element{'s' if N != 1 else ''} differ{'s' if n == 1 else ''}; "
                    f"largest difference from torch in the tensor {_fmt(r.max_abs_err)})")


def kink_sentence(spec: Any, r) -> str:
    """'z¹ lies exactly on a kink of relu there: ...' for a record on a kink, else ''."""
    if not r.at_kink:
        return ""
    act = spec.activations[r.layer - 1]
    return (f"z{sup(r.layer)} lies exactly on a kink of {act} there, where f′ is a convention: torch's is "
            f"{ACTIVATIONS[act].derivative}; a different value at the kink is a convention, not an "
            f"arithmetic error, but it is not torch's")


def refereed(case) -> list:
    """The failing records the finite-difference referee judged (verify.harness.referee), the
    first diverging tensor's first."""
    first = case.first_divergence
    return sorted((r for r in case.records if r.referee and not r.passed),
                  key=lambda r: first is None or r.name != first.name)


def describe_case(case) -> str:
    """A few lines for one failing CaseResult: the root cause (the first diverging tensor),
    what agreed before it, and where to look."""
    lines = [f"minimal counterexample: {case.spec}  (seed {case.seed}, batch m = {case.batch})"]
    first = case.first_divergence
    if case.error:
        lines.append(f"  {case.error_sentence}")
    if first is None:
        return "\n".join(lines)
    compared = {r.name: r for r in case.records}
    inputs, where = hint(case.spec, first.name)
    agree = [n for n in inputs if n in compared and compared[n].passed]
    if first.problem:
        lines.append(f"  {first.name}: {first.problem}")
        if first.name != CALL:
            lines.append(f"  look at {where}")
    else:
        lines.append(f"  {first.name} is the first to diverge"
                     + (f" while {and_join(agree)} {'agrees' if len(agree) == 1 else 'agree'}" if agree else "")
                     + f": look at {where}")
        lines.append(f"  {worst_sentence(first)}")
        if first.at_kink:
            lines.append(f"  {kink_sentence(case.spec, first)}")
        if first.note:
            lines.append(f"  {first.note}")
    if case.located:
        lines.append(f"  {case.located}")
    lines += [f"  {r.referee_note}" for r in refereed(case)]
    failing = [r.name for r in case.records if not r.passed]
    if len(failing) > 1:
        lines.append(f"  {tally(case.records)}: {', '.join(failing[:12])}{' ...' if len(failing) > 12 else ''}")
    return "\n".join(lines)


def explain_failure(result, fn: Any = None, *, limit: int = 3, seen: Sequence[str] = ()) -> str:
    """The message for a failed sweep: how many cases failed, then each distinct minimal
    counterexample (the first ``limit``), smallest first, each followed by where its failure was
    seen (``seen``: one text per minimal counterexample, verify.sweep.shrink.Seen.text)."""
    if result.n_failed == 0:
        stopped = f" (the sweep stopped early: {result.stopped or 'interrupted'})" if result.partial else ""
        return f"every case agrees with torch{stopped}"
    who = fn if isinstance(fn, str) else getattr(fn, "__qualname__", "the implementation")
    cases = list(result.minimal) or [r for r in result.results if not r.passed][:1]
    n = getattr(result, "n_cases", len(result.results))
    head = (f"{who} disagrees with torch in {result.n_failed} of {n} case{'s' if n != 1 else ''} "
            f"({len(cases)} distinct failure{'s' if len(cases) != 1 else ''}).")
    rest = len(cases) - limit
    more = [f"... and {rest} more distinct failure{'s' if rest != 1 else ''} (see the report)"] if rest > 0 else []
    described = [describe_case(c) + (f"\n  {text}" if text else "")
                 for c, text in itertools.zip_longest(cases[:limit], list(seen)[:limit], fillvalue="")]
    return "\n".join([head] + described + more)
