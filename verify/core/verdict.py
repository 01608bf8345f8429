"""The verdict on each tensor of a case: it agrees, it is imprecise, it diverges, or it inherits.

- ``agrees``: every element lies within its allowance of the reference (verify.core.compare).
- ``imprecise``: every element lies within its textbook allowance, some beyond the tight one:
  the documented formula evaluated as written (handimpl.textbook). It passes, with a note
  naming the operation that lost digits and what torch uses instead.
- ``inherits``: it differs beyond its allowance, but its own step, recomputed from the
  implementation's own inputs (verify.core.bounds.local_steps), gives what the implementation
  returned: the difference came from upstream. It still fails (``passed`` is False).
- ``diverges``: it differs and its own step does not explain it, or its inputs were not
  returned, so nothing can show that its step is right. The first diverging tensor in
  forward-then-backward order is the root cause.

A measured upstream difference never widens an allowance; it only decides between
``inherits`` and ``diverges`` for a tensor that already fails (docs/verdict.md).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.layers import Act
from handimpl.network import split_loss_kwargs
from verify.core.bounds import local_steps
from verify.core.compare import UNIT_ROUNDOFF, Comparison, split_name
from verify.core.stack import StackSpec
from verify.core.stack_bounds import stack_local_steps, stack_step_inputs, stack_step_of, textbook_of_layer

# A float64 result off relatively by this much or more, and by less than FLOAT32_LEVEL, rounds
# like float32 (its unit roundoff is 2⁻²⁴ ≈ 6e-8; one float32 rounding anywhere upstream leaves
# errors from a few 1e-9 up), not like a formula bug. Below it, the note counts ulps instead.
FLOAT32_FLOOR = 2.0**-28
FLOAT32_LEVEL = 1e-5


def refine(spec: Any, case: Any, hand: dict, ref: dict, lr: float,
           records: list[Comparison], textbook: bool = False) -> list[Comparison]:
    """``records`` of one case with each failing tensor's status settled (inherits or
    diverges), its kink flag and its note, and each imprecise one's precision note.
    ``textbook``: the records were judged with the textbook allowance, and so is each step
    recomputed for inherits."""
    failing = {r.name for r in records if not r.passed and not r.problem}
    local = stack_local_steps if isinstance(spec, StackSpec) else local_steps
    steps = local(spec, case, hand, lr, failing, textbook=textbook) if failing else {}
    agreeing = {r.name for r in records if r.passed}
    failed = {r.name for r in records if not r.passed}
    out = []
    for r in records:
        if r.status == "imprecise":
            bad = [n for n in step_inputs(spec, r.name) if n in failed]
            if not bad:
                out.append(dataclasses.replace(r, note=precision_note(spec, r)))
                continue
            # beyond its tight allowance and computed from a tensor that does not agree: the
            # difference is that tensor's, not a textbook formula's
            agreeing.discard(r.name)
            failed.add(r.name)
            out.append(dataclasses.replace(
                r, passed=False, status="inherits", n_mismatched=r.n_imprecise,
                note=f"beyond its tight allowance (within the textbook one), computed from "
                     f"{', '.join(bad)}, which does not agree"))
            continue
        if r.passed or r.problem:
            out.append(r)
            continue
        changes: dict[str, Any] = {"at_kink": at_kink(spec, ref, r, hand)}
        upstream = [n for n in step_inputs(spec, r.name) if n not in agreeing]
        if upstream and r.name in steps and _within(hand[r.name], *steps[r.name], r.rtol, r.atol):
            changes["status"] = "inherits"
        else:
            changes["note"] = convention_note(spec, case, ref, r) or precision_level_note(spec, r)
        out.append(dataclasses.replace(r, **changes))
    return out


def step_key(spec: Any, name: str) -> tuple:
    """The step that makes ``name`` and the functions it evaluates, as a failure signature keys
    it (verify.sweep.shrink.signature): the quantity; for δ whether it is the output step
    (∂J/∂a ⊙ f′) or a hidden one ((δW) ⊙ f′); and the names of its activation and loss. A
    linear step, ∂W, ∂b, ∂x and the update evaluate none: their layer, width, activation and
    loss do not change the formula to look at."""
    quantity, l = split_name(name)
    if isinstance(spec, StackSpec):
        return _stack_step_key(spec, name)
    role = () if quantity != "delta" else ("output" if l == spec.depth else "hidden",)
    return (quantity, *role, *(getattr(fn, "name", "") for _, fn, _ in _functions_of_step(spec, name)))


def _stack_step_key(spec: Any, name: str) -> tuple:
    """step_key of a stack: the step (a layer's forward, its backward into ∂J/∂out⁽ⁱ⁻¹⁾ or into a
    parameter, its buffers, the loss, the update) and the layer kind (an activation's name) it runs."""
    kind, i, param = stack_step_of(spec, name)
    n = spec.depth
    if kind == "grad":
        if i == n:
            return ("grad", "loss", spec.loss)
        kind, i = "backward", i + 1
    if kind in ("loss", "dx"):
        return (kind, spec.loss) if kind == "loss" else ("backward", _kind(spec.layers[0]))
    if kind == "":
        return (name,)
    layer = spec.layers[i - 1]
    own = param.rpartition(".")[2]
    return (kind, _kind(layer)) + ((own,) if own else ())


def _kind(layer: Any) -> str:
    return layer.name if isinstance(layer, Act) else layer.kind


def _functions_of_step(spec: Any, name: str) -> list[tuple[str, Any, str]]:
    """(who, activation or loss, part) for each function the step that makes ``name`` evaluates:
    a⁽ˡ⁾ evaluates f of layer l, δ⁽ˡ⁾ its f′ (and at the output the loss's gradient), J the loss."""
    if isinstance(spec, StackSpec):
        return _stack_functions_of_step(spec, name)
    quantity, l = split_name(name)
    loss = (f"{spec.loss}", LOSSES[spec.loss])
    if quantity == "a":
        return [(f"{spec.activations[l - 1]}, layer {l}", ACTIVATIONS[spec.activations[l - 1]], "f")]
    if quantity == "delta":
        own = [(f"{spec.activations[l - 1]}′, layer {l}", ACTIVATIONS[spec.activations[l - 1]], "df")]
        return own + ([(*loss, "grad")] if l == spec.depth else [])
    if quantity == "loss":
        return [(*loss, "value")]
    return []


def _stack_functions_of_step(spec: Any, name: str) -> list[tuple[str, Any, str]]:
    """As _functions_of_step, for a stack: an activation layer's forward evaluates f, the backward
    into its input f′ (a residual block's: those of its inner activation layers); a normalisation
    layer's forward, backward, parameter gradients and buffers all evaluate its σ² (part 'var');
    the loss its value, ∂J/∂out⁽ⁿ⁾ its gradient."""
    kind, i, _ = stack_step_of(spec, name)
    loss = (f"{spec.loss}", LOSSES[spec.loss])
    if kind == "loss":
        return [(*loss, "value")]
    if kind == "grad" and i == spec.depth:
        return [(*loss, "grad")]
    layer_index = i + 1 if kind == "grad" else (1 if kind == "dx" else i)
    layer = spec.layers[layer_index - 1] if 1 <= layer_index <= spec.depth else None
    if layer is None or kind not in ("forward", "grad", "dx", "param", "buffer"):
        return []
    part = "f" if kind == "forward" else "df"
    within = _layers_within(layer, str(layer_index))
    acts = [(f"{act.name}{'′' if part == 'df' else ''}, layer {where}", act.f, part)
            for where, act in within if isinstance(act, Act)] if kind in ("forward", "grad", "dx") else []
    return acts + [(f"{norm.kind}, layer {where}", norm, "var") for where, norm in within
                   if textbook_of_layer(norm) is not None]


def _layers_within(layer: Any, where: str) -> list[tuple[str, Any]]:
    """(position, layer) for ``layer`` itself and each layer inside it (a residual block's inner
    layer j at position 'i.j')."""
    return [(where, layer)] + [item for j, inner in enumerate(getattr(layer, "inner", ()), start=1)
                               for item in _layers_within(inner, f"{where}.{j}")]


def _all_forms(spec: Any) -> list[tuple[str, Any]]:
    """Every (who, textbook form) the case's functions declare, in order, once each."""
    if isinstance(spec, StackSpec):
        steps = [name for i in range(1, spec.depth + 1) for name in (f"out{i}", "dx" if i == 1 else f"grad{i - 1}")]
        steps.append(f"grad{spec.depth}")                        # the loss's gradient
    else:
        steps = [name for l in range(1, spec.depth + 1) for name in (f"a{l}", f"delta{l}")]
    forms = [(who, t) for step in steps + ["loss"] for who, fn, part in _functions_of_step(spec, step)
             for t in fn.textbook if t.part == part]
    return list(dict.fromkeys(forms))


def precision_note(spec: Any, r: Comparison) -> str:
    """Why an imprecise tensor passes: the textbook forms its own step evaluates (or, for a
    step that evaluates none, those of the whole case, whose digits it carries), with the digits
    lost at its worst element. (One computed from a tensor that does not agree is not imprecise:
    refine makes it inherit.)"""
    forms = [(who, t) for who, fn, part in _functions_of_step(spec, r.name) for t in fn.textbook if t.part == part]
    carried = not forms
    if carried:
        forms = _all_forms(spec)
    digits = _digits_lost(r, spec.dtype)
    said = "; ".join(f"{t.sentence(None if carried else digits)} [{who}]" for who, t in forms)
    head = (f"within the textbook allowance only ({r.n_imprecise} of {r.n_elements} "
            f"element{'s' if r.n_elements != 1 else ''})")
    if carried:
        return f"{head}, carried from upstream, where a documented formula written as is {said}"
    return f"{head}: {said}"


def _digits_lost(r: Comparison, dtype: str) -> float | None:
    """log₁₀ of the worst element's error in units of its own rounding, u·|r|."""
    err = abs(r.hand_value - r.reference_value)
    scale = UNIT_ROUNDOFF[dtype] * abs(r.reference_value)
    if not (np.isfinite(err) and np.isfinite(scale)) or err == 0:
        return None
    return float(np.log10(err / scale)) if scale > 0 else None


def convention_note(spec: Any, case: Any, ref: dict, r: Comparison) -> str:
    """Where the worst element of a failing tensor lies where torch applies a documented
    convention (a clamp, a threshold; handimpl.textbook.Convention), what torch does there."""
    stack = isinstance(spec, StackSpec)
    if r.quantity not in (("out", "grad", "loss") if stack else ("a", "delta", "loss")) or \
            (r.quantity != "loss" and not r.worst_index):
        return ""
    texts = []
    reduction, opts = split_loss_kwargs(spec)
    y = np.asarray(case.y)
    a_out = np.asarray(ref[f"out{spec.depth}" if stack else f"a{spec.depth}"], dtype=np.float64)
    for _, fn, part in _functions_of_step(spec, r.name):
        for c in getattr(fn, "conventions", ()):   # a norm layer (its textbook form) has none
            if c.part != part or (stack and part in ("f", "df")):   # a stack's: its loss's alone
                continue
            with np.errstate(all="ignore"):
                if part in ("f", "df"):
                    held = np.asarray(c.where(np.asarray(ref[f"z{r.layer}"], dtype=np.float64)))[r.worst_index]
                elif part == "value":
                    held = np.asarray(c.where(a_out, _target_rows(fn, y, a_out), **opts)).any()
                else:
                    held = np.asarray(c.where(a_out, _target_rows(fn, y, a_out), **opts))[r.worst_index]
            if bool(held):
                texts.append(c.text)
    return "; ".join(texts)


def _target_rows(loss: Any, y: np.ndarray, a: np.ndarray) -> np.ndarray:
    """y as the loss reads it elementwise (float64; class indices stay as they are)."""
    return y if y.dtype.kind in "iu" else y.astype(np.float64)


def precision_level_note(spec: Any, r: Comparison) -> str:
    """For a float64 tensor off by a little: 'float32-level ...' where the error is at float32's
    scale, else how many ulps it is off where correct code stays within how many."""
    if spec.dtype != "float64" or not r.max_rel_err < FLOAT32_LEVEL:
        return ""
    if r.max_rel_err >= FLOAT32_FLOOR:
        return float32_level_note(r)
    off, within = _ulps_off(r)
    return f"{off:.3g} ulps off where correct code stays within {within:.3g}: more than rounding, less than float32"


def step_inputs(spec: Any, name: str) -> list[str]:
    """The traced tensors the step that makes ``name`` reads (x and the parameters aside): a
    tensor inherits only where one of these does not agree."""
    if isinstance(spec, StackSpec):
        return stack_step_inputs(spec, name)
    quantity, l = split_name(name)
    L = spec.depth
    if quantity == "z":
        return [f"a{l - 1}"] if l > 1 else []
    if quantity == "a":
        return [f"z{l}"]
    if quantity == "loss":
        return [f"a{L}"]
    if quantity == "delta":
        return [f"z{l}", f"a{l}"] + ([f"delta{l + 1}"] if l < L else [])
    if quantity == "dW":
        return [f"delta{l}"] + ([f"a{l - 1}"] if l > 1 else [])
    if quantity == "db":
        return [f"delta{l}"]
    if name == "dx":
        return ["delta1"]
    if quantity in ("W_after_step", "b_after_step"):
        return [f"d{quantity[0]}{l}"]
    return []


def _within(hand: Any, value: np.ndarray, bound: np.ndarray, rtol: float, atol: float) -> bool:
    """The implementation's tensor is its step's result within that step's rounding (and the
    floor); non-finite values only where the step gives the same."""
    h = np.asarray(hand, dtype=np.float64)
    with np.errstate(all="ignore"):
        same = (h == value) | (np.isnan(h) & np.isnan(value))
        close = np.isfinite(value) & np.isfinite(bound) & (np.abs(h - value) <= bound + atol + rtol * np.abs(value))
    return bool(np.all(same | close))


def _ulps_off(r: Comparison) -> tuple[float, float]:
    """The worst element's error and its allowance in ulps of its reference value."""
    spacing = np.spacing(abs(r.reference_value)) if np.isfinite(r.reference_value) else np.nan
    if not (spacing and np.isfinite(spacing)):
        return float("nan"), float("nan")
    return abs(r.hand_value - r.reference_value) / spacing, r.allowed / spacing


def float32_level_note(r: Comparison) -> str:
    """'float32-level precision in a float64 case (N ulps where correct code stays within M)'."""
    off, within = _ulps_off(r)
    return (f"float32-level precision in a float64 case ({off:.3g} ulps off where correct code "
            f"stays within {within:.3g})")


def at_kink(spec: Any, ref: dict, r: Comparison, returned: Any = ()) -> bool:
    """Whether the reference z of the record's layer lies exactly on a kink of that layer's
    activation, where the record's worst element reads it: that element's z for a and δ, any
    example's z of that unit for ∂W and ∂b whose δ was not ``returned`` (then their difference
    may come from f′ at the kink; with δ returned, ∂W's and ∂b's steps read no f′)."""
    if isinstance(spec, StackSpec) or r.layer is None or r.quantity not in ("a", "delta", "dW", "db"):
        return False
    if r.quantity in ("dW", "db") and f"delta{r.layer}" in returned:
        return False
    kinks = ACTIVATIONS[spec.activations[r.layer - 1]].kinks
    if not kinks:
        return False
    z = np.asarray(ref[f"z{r.layer}"])
    index = r.worst_index
    if r.quantity in ("dW", "db"):
        z = z[:, index[0]] if index else z
    elif index:
        z = z[index]
    return bool(np.isin(z, kinks).any())


def root_cause(records: list[Comparison] | tuple) -> Comparison | None:
    """The first diverging tensor (records in forward-then-backward order); a failing case
    always has one, since a tensor inherits only from one that does not agree."""
    return next((r for r in records if r.status == "diverges"), None)


def counts(records: list[Comparison] | tuple) -> dict[str, int]:
    """How many tensors agree, are imprecise, inherit and diverge."""
    tally = {"agrees": 0, "imprecise": 0, "inherits": 0, "diverges": 0}
    for r in records:
        tally[r.status] += 1
    return tally
