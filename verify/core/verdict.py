"""The verdict on each tensor of a case: it agrees, it diverges, or it inherits.

- ``agrees``: every element lies within its allowance of the reference (verify.core.compare).
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

from handimpl import ACTIVATIONS
from verify.core.bounds import local_steps
from verify.core.compare import Comparison, split_name

# A float64 result off by less than this, relative to torch's, but beyond its allowance
# rounds like float32 (2⁻²⁴ ≈ 6e-8 per operation), not like a formula bug.
FLOAT32_LEVEL = 1e-5


def refine(spec: Any, case: Any, hand: dict, ref: dict, lr: float,
           records: list[Comparison]) -> list[Comparison]:
    """``records`` of one case with each failing tensor's status settled (inherits or
    diverges), its kink flag and its note."""
    failing = {r.name for r in records if not r.passed and not r.problem}
    steps = local_steps(spec, case, hand, lr, failing) if failing else {}
    agreeing = {r.name for r in records if r.passed}
    out = []
    for r in records:
        if r.passed or r.problem:
            out.append(r)
            continue
        changes: dict[str, Any] = {"at_kink": at_kink(spec, ref, r)}
        upstream = [n for n in step_inputs(spec, r.name) if n not in agreeing]
        if upstream and r.name in steps and _within(hand[r.name], *steps[r.name], r.rtol, r.atol):
            changes["status"] = "inherits"
        elif spec.dtype == "float64" and r.max_rel_err < FLOAT32_LEVEL:
            changes["note"] = float32_level_note(r)
        out.append(dataclasses.replace(r, **changes))
    return out


def step_inputs(spec: Any, name: str) -> list[str]:
    """The traced tensors the step that makes ``name`` reads (x and the parameters aside): a
    tensor inherits only where one of these does not agree."""
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


def float32_level_note(r: Comparison) -> str:
    """'float32-level precision in a float64 case (N ulps where correct code stays within M)'."""
    spacing = np.spacing(abs(r.reference_value)) if np.isfinite(r.reference_value) else np.nan
    off = abs(r.hand_value - r.reference_value) / spacing if spacing and np.isfinite(spacing) else float("nan")
    within = r.allowed / spacing if spacing and np.isfinite(spacing) else float("nan")
    return (f"float32-level precision in a float64 case ({off:.3g} ulps off where correct code "
            f"stays within {within:.3g})")


def at_kink(spec: Any, ref: dict, r: Comparison) -> bool:
    """Whether the reference z of the record's layer lies exactly on a kink of that layer's
    activation, where the record's worst element reads it: that element's z for z, a and δ,
    any example's z of that unit for ∂W and ∂b."""
    if r.layer is None or r.quantity not in ("z", "a", "delta", "dW", "db"):
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
    """How many tensors agree, inherit and diverge."""
    tally = {"agrees": 0, "inherits": 0, "diverges": 0}
    for r in records:
        tally[r.status] += 1
    return tally
