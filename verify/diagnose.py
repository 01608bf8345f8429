"""Explaining a failed check to a student: the first diverging tensor, what agreed before it,
and the step and equation to look at (e.g. "delta2 is the first to diverge while z2 and a2
agree: look at the backward step of layer 2: δ² = (δ³W³) ⊙ f′(z²)")."""
from __future__ import annotations

from typing import Any

from .compare import split_name
from .impl import CALL, STEP

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _s(n: int | str) -> str:
    return str(n).translate(_SUP)


def _n(l: int) -> str:
    return "n" + str(l).translate(_SUB)


def _a(l: int) -> str:
    return "x" if l == 0 else f"a{_s(l)}"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def hint(spec: Any, name: str, lr: float = 0.1) -> tuple[list[str], str]:
    """(the tensors ``name`` is computed from, where to look: the step and its equation)."""
    L = len(spec.widths) - 1
    quantity, l = split_name(name)
    if quantity == "z":
        inputs = [f"a{l - 1}"] if l > 1 else []
        return inputs, (f"the forward step of layer {l}: z{_s(l)} = {_a(l - 1)}W{_s(l)}ᵀ"
                        + (f" + b{_s(l)}" if spec.bias else "") + f" (W{_s(l)} is ({_n(l)}, {_n(l - 1)}))")
    if quantity == "a":
        return [f"z{l}"], f"the activation of layer {l}: a{_s(l)} = {spec.activations[l - 1]}(z{_s(l)})"
    if quantity == "loss":
        return [f"a{L}"], (f"the loss: J = {spec.loss}(a{_s(L)}, y) with reduction "
                           f"'{spec.reduction}' (torch's 'mean' divides mse_loss and the other "
                           f"elementwise losses by m·k, cross_entropy and nll_loss by m)")
    if quantity == "delta" and l == L:
        return [f"z{L}", f"a{L}", "loss"], (f"the output error: δ{_s(L)} = ∂J/∂a{_s(L)} ⊙ f′(z{_s(L)}) "
                                            f"(the shortcut δ = (a - y)/m holds only for canonical pairs)")
    if quantity == "delta":
        return [f"z{l}", f"a{l}", f"delta{l + 1}"], (f"the backward step of layer {l}: "
                                                      f"δ{_s(l)} = (δ{_s(l + 1)}W{_s(l + 1)}) ⊙ f′(z{_s(l)})")
    if quantity == "dW":
        return [f"delta{l}"] + ([f"a{l - 1}"] if l > 1 else []), \
            f"the weight gradient of layer {l}: ∂J/∂W{_s(l)} = δ{_s(l)}ᵀ{_a(l - 1)}, shape ({_n(l)}, {_n(l - 1)})"
    if quantity == "db":
        return [f"delta{l}"], f"the bias gradient of layer {l}: ∂J/∂b{_s(l)} = Σ over the batch of δ{_s(l)} (a sum, not a mean)"
    if name == "dx":
        return ["delta1"], "the input gradient: ∂J/∂x = δ¹W¹"
    if quantity in ("W_after_step", "b_after_step"):
        p = "W" if quantity == "W_after_step" else "b"
        return [f"d{p}{l}"], f"the update: {p}{_s(l)} := {p}{_s(l)} − η ∂J/∂{p}{_s(l)} (η = {lr:g})"
    if name == CALL:
        return [], "the line above: the harness could not use what the implementation did"
    if name == STEP:
        return [], "the implementation's step(params, grads, lr)"
    return [], (f"{name} was changed in place: compute into new arrays instead "
                f"(W = W - lr*dW, not W -= lr*dW; z = z + b, not z += b on an input)")


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def describe_case(case) -> str:
    """A few lines for one failing CaseResult: the first diverging tensor, and where to look."""
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
                     + (f" while {_and(agree)} agree{'s' if len(agree) == 1 else ''}" if agree else "")
                     + f": look at {where}")
        lines.append(f"  at index {list(first.worst_index)}: yours {_fmt(first.hand_value)}, "
                     f"torch {_fmt(first.torch_value)} ({first.n_mismatched} of {first.n_elements} "
                     f"element{'s' if first.n_elements != 1 else ''} "
                     f"differ{'s' if first.n_mismatched == 1 else ''}, max abs error {_fmt(first.max_abs_err)})")
    failing = [r.name for r in case.records if not r.passed]
    if len(failing) > 1:
        lines.append(f"  failing: {', '.join(failing[:12])}{' ...' if len(failing) > 12 else ''}")
    return "\n".join(lines)


def explain_failure(result, fn: Any = None, *, limit: int = 3) -> str:
    """The message for a failed sweep: how many cases failed, then each distinct minimal
    counterexample (the first ``limit``), smallest first."""
    if result.n_failed == 0:
        stopped = f" (the sweep stopped early: {result.stopped or 'interrupted'})" if result.partial else ""
        return f"every case agrees with torch{stopped}"
    who = fn if isinstance(fn, str) else getattr(fn, "__qualname__", "the implementation")
    cases = list(result.minimal) or [r for r in result.results if not r.passed][:1]
    n = len(result.results)
    head = (f"{who} disagrees with torch in {result.n_failed} of {n} case{'s' if n != 1 else ''} "
            f"({len(cases)} distinct failure{'s' if len(cases) != 1 else ''}).")
    rest = len(cases) - limit
    more = [f"... and {rest} more distinct failure{'s' if rest != 1 else ''} (see the report)"] if rest > 0 else []
    return "\n".join([head] + [describe_case(c) for c in cases[:limit]] + more)
