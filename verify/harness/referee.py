"""The finite-difference referee's verdict on one case: for each tensor it judges, whose value
the mathematics supports, yours, torch's, both or neither, with its error bar; at a kink it
says that the derivative is a convention there instead of siding with either
(verify.core.referee computes the differences; docs/verdict.md, "The referee")."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from handimpl import ACTIVATIONS
from handimpl.layers import Act as ActLayer
from handimpl.layers.pool import ONE, _flat
from handimpl.layers.windows import windows
from verify.core.compare import Comparison, split_name
from verify.core.referee import CENTRAL, COMPLEX, Estimate, Probe, estimate, judged_by_referee
from verify.core.spec import NetSpec
from verify.core.torch_ops import TORCH_ACTIVATIONS
from verify.errors import UsageError
from verify.harness.diagnose import sup
from verify.harness.trace import CaseResult, Impl, Traced, allowances, exact_trace, trace

MODES = ("fd", "fd-all")
# --referee fd-all runs the referee on every case: a small sweep only.
FD_ALL_MAX_EXAMPLES = 50
FD_ALL_MAX_WIDTH = 8
FD_ALL_MAX_BATCH = 8
MAX_ELEMENTS = 64          # elements judged per tensor (its worst and mismatched ones first)
MAX_CASE_ELEMENTS = 1024   # elements judged per case, all tensors together
# What the referee concludes about a tensor: the value it supports, or that the derivative is a
# convention there (a kink).
# convention there (a kink), or that its error bar is too wide to tell the two apart (undecided).
CONCLUSIONS = ("yours", "torch's", "both", "neither", "kink", "undecided")


def _indices(n: int, first: Sequence[int], cap: int) -> list[int]:
    """``first`` (deduplicated, in order), then the others in order, ``cap`` of them at most."""
    chosen = list(dict.fromkeys(int(i) for i in first))[:cap]
    taken = set(chosen)
    for i in range(n):
        if len(chosen) >= cap:
            break
        if i not in taken:
            chosen.append(i)
    return sorted(chosen)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def torch_kink_slope(activation: str, point: float) -> float:
    """The derivative torch's activation takes exactly at ``point`` (a kink): autograd's value."""
    z = torch.tensor([point], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(TORCH_ACTIVATIONS[activation]()(z).sum(), z)
    return float(g[0])


def pooling_ties(spec: Any, ref: dict[str, Any], x: Any) -> list[str]:
    """A sentence for each max pooling layer of a stack whose input has a window with a tied maximum:
    there a coordinate's partial derivative may exist while J is not differentiable, so where the
    gradient goes is a convention the referee's differences may not see."""
    out = []
    for i, layer in enumerate(getattr(spec, "layers", ()), 1):
        if getattr(layer, "kind", "") != "maxpool":
            continue
        inp = np.asarray(x if i == 1 else ref.get(f"out{i - 1}"), dtype=np.float64)
        win = _flat(windows(inp, layer.k, layer.s, ONE))
        n = int(((win == win.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).sum())
        if n:
            out.append(f"a max pooling tie in layer {i} ({n} window{'s' if n != 1 else ''}): where its gradient "
                       f"goes is a convention (torch's: the first maximum, row-major) that the referee's "
                       f"coordinate-wise differences may not see")
    return out


def kinks_hit(spec: Any, ref: dict[str, Any], y: Any) -> list[str]:
    """Where the case's reference lands exactly on a corner of J: each such activation input
    (a dense z⁽ˡ⁾, a stack activation layer's input) and, for l1_loss, a − y = 0; one sentence
    each, naming the value torch takes there."""
    out = []
    if isinstance(spec, NetSpec):
        inputs = [(f"z{sup(l)}", ref.get(f"z{l}"), act) for l, act in enumerate(spec.activations, 1)]
        last = ref.get(f"a{spec.depth}")
    else:
        inputs = []
        for i, layer in enumerate(spec.layers, 1):
            if isinstance(layer, ActLayer):
                inputs.append((f"the input of layer {i}" if i > 1 else "x", ref.get(f"out{i - 1}"), layer.name))
        last = ref.get(f"out{spec.depth}")
    for what, z, act in inputs:
        if z is None:
            continue
        for point in ACTIVATIONS[act].kinks:
            if act == "softplus":
                continue                    # its 'kink' is torch's switch to z, not a corner of f
            n = int(np.sum(np.asarray(z) == point))
            if n:
                out.append(f"{what} = {point:g} exactly ({act}, {n} entr{'y' if n == 1 else 'ies'}): the "
                           f"derivative is a convention here; torch uses {torch_kink_slope(act, point):g}")
    if spec.loss == "l1_loss" and last is not None and np.asarray(y).shape == np.asarray(last).shape:
        n = int(np.sum(np.asarray(last) == np.asarray(y)))
        if n:
            out.append(f"a − y = 0 exactly (l1_loss, {n} entr{'y' if n == 1 else 'ies'}): |·|′ is a convention "
                       f"here; torch uses sign(0) = 0")
    return out


def conventions_left_out(spec: Any, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """(a flat mask of the elements whose value is a convention rather than J's derivative, its
    sentence): an embedding's padding_idx row, whose gradient torch defines as 0 (the row is
    frozen) while J does depend on it."""
    mask = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=bool)
    quantity, layer = split_name(name)
    if not hasattr(spec, "layers") or layer is None or quantity not in ("dW", "W_after_step"):
        return mask, ""
    lay = spec.layers[layer - 1]
    pad = getattr(lay, "padding_idx", None)
    if getattr(lay, "kind", "") != "embedding" or pad is None or len(shape) != 2:
        return mask, ""
    mask.reshape(shape)[pad] = True
    return mask, (f"row {pad} (padding_idx) left out: its gradient is 0 by torch's convention (the row is "
                  f"frozen), not J's derivative")


def conclude(hand: np.ndarray, torch_value: np.ndarray, allow: np.ndarray, est: Estimate,
             idx: list[int]) -> tuple[str, int]:
    """The conclusion about one tensor from its judged elements (flat ``idx``), and the element it
    rests on (the first whose value is refuted, else the first corner where the two sides differ,
    else the first judged)."""
    v, err, corner = (a.reshape(-1)[idx] for a in (est.value, est.error, est.corner))
    h, t, a = hand.reshape(-1)[idx], torch_value.reshape(-1)[idx], allow.reshape(-1)[idx]
    with np.errstate(invalid="ignore"):
        hand_ok = np.abs(h - v) <= err + a
        torch_ok = np.abs(t - v) <= err + a
    smooth = ~corner & np.isfinite(v)
    differ = np.abs(h - t) > a
    refuted = smooth & ~(hand_ok & torch_ok)
    if refuted.any():
        yours, theirs = bool(hand_ok[smooth].all()), bool(torch_ok[smooth].all())
        conclusion = "both" if yours and theirs else "yours" if yours else "torch's" if theirs else "neither"
        return conclusion, idx[int(np.argmax(refuted))]
    if (corner & differ).any():
        return "kink", idx[int(np.argmax(corner & differ))]
    if (smooth & differ).any():              # both within its bar, which is wider than their difference
        return "undecided", idx[int(np.argmax(smooth & differ))]
    return "both", idx[int(np.argmax(differ))] if differ.any() else idx[0]


def note_of(name: str, conclusion: str, est: Estimate, k: int, shape: tuple[int, ...],
            hand: float, theirs: float, kinks: list[str]) -> str:
    """The referee's sentence about one tensor, at its element ``k`` (flat)."""
    index = list(np.unravel_index(k, shape)) if shape else []
    v, trunc, rnd = (float(a.reshape(-1)[k]) for a in (est.value, est.truncation, est.rounding))
    where = f"{name}{[int(i) for i in index]}"
    if conclusion == "kink":
        left, right = v - trunc, v + trunc
        named = f"; {kinks[0]}" if kinks else ""
        sides = (f"a step along each one-sided slope gives {_fmt(left)} and {_fmt(right)}" if name.endswith("_after")
                 else f"the one-sided slopes are {_fmt(left)} and {_fmt(right)}")
        return (f"referee (finite differences): {where} sits on a kink: {sides}, so the derivative is a convention "
                f"here, not a number the referee can confirm (yours {_fmt(hand)}, torch {_fmt(theirs)}){named}")
    if conclusion == "undecided":
        return (f"referee ({est.method_at(k)}) cannot tell the two values apart: {where} = {_fmt(v)} "
                f"± {trunc + rnd:.2g} (truncation {trunc:.2g}, rounding {rnd:.2g}), a bar wider than the "
                f"difference between yours {_fmt(hand)} and torch's {_fmt(theirs)}: J bends sharply (or has a "
                f"corner) within its step")
    supports = {"yours": "supports your value", "torch's": "supports torch's value",
                "both": "supports both values", "neither": "supports neither value"}[conclusion]
    return (f"referee ({est.method_at(k)}) {supports}: {where} = {_fmt(v)} ± {trunc + rnd:.2g} (truncation "
            f"{trunc:.2g}, rounding {rnd:.2g}); yours {_fmt(hand)} is off by {abs(hand - v):.3g}, torch's "
            f"{_fmt(theirs)} by {abs(theirs - v):.3g}")


def referee_run(run: Traced, records: Sequence[Comparison], *, every: bool = False) -> list[Comparison]:
    """``records`` (run's) with the referee's conclusion on each failing derivative tensor (``every``:
    on every derivative tensor); the other records unchanged."""
    chosen = [r for r in records if not r.problem and (every or not r.passed)
              and judged_by_referee(run.spec, r.name) and r.name in run.hand and r.n_elements]
    if not chosen:
        return list(records)
    ref, exact = run.refs[0], exact_trace(run)
    bounds = allowances(run, textbook=run.textbook)
    kinks = kinks_hit(run.spec, exact, run.case.y)
    ties = pooling_ties(run.spec, exact, run.case.x)
    probe = Probe(run.spec, run.case)
    budget = MAX_CASE_ELEMENTS
    out = {}
    for r in chosen:
        hand = np.asarray(run.hand[r.name], dtype=np.float64)
        theirs = np.asarray(ref[r.name], dtype=np.float64)
        r64 = np.asarray(exact[r.name], dtype=np.float64)
        allow = np.broadcast_to(np.asarray(bounds.get(r.name, 0.0), dtype=np.float64), r64.shape) \
            + r.atol + r.rtol * np.abs(r64)
        worst = int(np.ravel_multi_index(r.worst_index, r64.shape)) if r.worst_index else 0
        with np.errstate(invalid="ignore"):
            mismatched = np.flatnonzero(~(np.abs(hand - r64) <= allow)).tolist()
        cap = min(MAX_ELEMENTS, budget)
        if cap <= 0:
            break
        left_out, why = conventions_left_out(run.spec, r.name, r64.shape)
        idx = [i for i in _indices(r64.size, [worst] + mismatched, cap + int(left_out.sum())) if not left_out[i]][:cap]
        if not idx:
            out[r.name] = dataclasses.replace(r, referee_note=f"referee: nothing to judge in {r.name}: {why}")
            continue
        budget -= len(idx)
        est = estimate(probe, r.name, run.lr, idx)
        conclusion, k = conclude(hand, theirs, allow, est, idx)
        note = note_of(r.name, conclusion, est, k, r64.shape, float(hand.reshape(-1)[k]),
                       float(theirs.reshape(-1)[k]), kinks)
        if ties and conclusion != "both":
            note += f"; but {ties[0]}"
        if why:
            note += f"; {why}"
        out[r.name] = dataclasses.replace(
            r, referee=conclusion, referee_value=float(est.value.reshape(-1)[k]),
            referee_error=float(est.error.reshape(-1)[k]), referee_note=note)
    return [out.get(r.name, r) for r in records]


def referee_case(result: CaseResult, impl: Impl | None = None, *, every: bool = False,
                 time_limit: float | None = None, isolate: bool = False, strict: bool = False) -> CaseResult:
    """``result`` with the referee's conclusions on its records (referee_run): the case is run again
    (the implementation ``impl``, handimpl's if None, called as verify.check calls it) for its
    values. A case the implementation failed to run (an error, a time-out) is returned as it is."""
    if result.error or not result.records or (result.passed and not every):
        return result
    try:
        run = trace(result.spec, result.seed, result.batch, impl=impl, time_limit=time_limit,
                    isolate=isolate, strict=strict)
        if run.error:
            raise RuntimeError(f"the implementation raised {run.error} when run again")
        records = referee_run(run, result.records, every=every)
    except Exception as e:     # noqa: BLE001 - said on the record, never lost: the verdict stands without it
        first = result.first_divergence
        if first is None:
            return result
        text = f"referee could not run: {type(e).__name__}: {str(e)[:200]}"
        records = [dataclasses.replace(r, referee="", referee_note=text) if r is first else r
                   for r in result.records]
    return dataclasses.replace(result, records=tuple(records))



def summary_lines(spec: Any, records: Sequence[Comparison]) -> list[str]:
    """What the referee said of a case's records, for the terminal: how many derivative tensors it
    supports on both sides and by which method, and, plainly, what it does not judge (the forward
    tensors, the loss and the buffers: J's own evaluation, not derivatives of it). [] where it was
    not asked."""
    judged = [r for r in records if r.referee]
    if not judged:
        return []
    by_complex = sum("complex step" in r.referee_note for r in judged)
    method = (COMPLEX if by_complex == len(judged) else CENTRAL if not by_complex
              else f"{COMPLEX} for {by_complex}, {CENTRAL} for {len(judged) - by_complex}")
    lines = [f"referee ({method}): {sum(r.referee == 'both' for r in judged)} of {len(judged)} "
             f"derivative tensors judged supported on both sides"]
    unjudged = [r.name for r in records if r.quantity and not r.quantity.startswith("optimizer:")
                and not judged_by_referee(spec, r.name)]
    if unjudged:
        lines.append(f"not judged by the referee: {', '.join(unjudged)} (forward values, the loss and buffers are "
                     f"what J evaluates, not derivatives of it; torch's verdict on them stands alone)")
    return lines


def validate_mode(mode: str | None, *, examples: int, max_width: int, max_batch: int) -> None:
    """Refuse (UsageError, one line) an unknown referee, or fd-all on a sweep that is not small."""
    if mode is None:
        return
    if mode not in MODES:
        raise UsageError(f"--referee {mode}: expected one of {', '.join(MODES)}")
    if mode == "fd-all" and (examples > FD_ALL_MAX_EXAMPLES or max_width > FD_ALL_MAX_WIDTH
                             or max_batch > FD_ALL_MAX_BATCH):
        raise UsageError(f"--referee fd-all runs finite differences on every case: at most "
                         f"{FD_ALL_MAX_EXAMPLES} examples, --max-width {FD_ALL_MAX_WIDTH} and --max-batch "
                         f"{FD_ALL_MAX_BATCH} (this sweep: {examples}, {max_width}, {max_batch}); "
                         f"--referee fd judges the minimal counterexamples of any sweep")
