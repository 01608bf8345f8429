"""A network spec (dense NetSpec or layer StackSpec) seen as training sees it: its trainable
parameters by flat name ('W1', 'b1', 'gamma2', 'W3.1'), its buffers (running statistics),
one forward/backward on each side, and the a priori bounds of that pass (verify.core.bounds).

The flat names are the trace keys of handimpl.stack.param_key, so the gradient of parameter
``name`` is the trace's ``'d' + name`` on both sides, dense and stack alike."""
from __future__ import annotations

from typing import Any

import numpy as np

import handimpl
from handimpl.stack import param_key, stack_backprop
from verify.core.bounds import a_priori
from verify.core.data import Case, draw_case, draw_stack_case
from verify.core.stack import StackSpec
from verify.core.stack_bounds import stack_a_priori
from verify.core.stack_twin import stack_trace
from verify.core.twin import torch_trace

Flat = dict[str, np.ndarray]


def is_stack(spec: Any) -> bool:
    return isinstance(spec, StackSpec)


def draw(spec: Any, seed: int, batch: int) -> Case:
    """The fixed data of a training run: the case ``seed`` draws (parameters, x, y)."""
    return draw_stack_case(spec, seed, batch) if is_stack(spec) else draw_case(spec, seed, batch)


def _slots(spec: Any, buffers: bool) -> list[tuple[str, int, str]]:
    """(flat name, layer index from 0, the key in that layer's dict) of every stack parameter
    (or buffer), layer by layer."""
    out = []
    for i, layer in enumerate(spec.layers, start=1):
        names = getattr(layer, "buffer_names", layer.buffers) if buffers else layer.param_names
        out += [(param_key("", name, i), i - 1, name) for name in names]
    return out


def param_names(spec: Any) -> list[str]:
    if is_stack(spec):
        return [flat for flat, _, _ in _slots(spec, False)]
    return [f"{k}{l}" for l in range(1, spec.depth + 1) for k in (("W", "b") if spec.bias else ("W",))]


def buffer_names(spec: Any) -> list[str]:
    """The running statistics carried from step to step (training mode only: eval keeps them)."""
    return [flat for flat, _, _ in _slots(spec, True)] if is_stack(spec) and spec.training else []


def flat_params(spec: Any, params: Any) -> Flat:
    if is_stack(spec):
        return {flat: params[i][key] for flat, i, key in _slots(spec, False)}
    out: Flat = {}
    for l, (W, b) in enumerate(params, start=1):
        out[f"W{l}"] = W
        if b is not None:
            out[f"b{l}"] = b
    return out


def rebuilt(spec: Any, params: Any, flat: Flat, buffers: Flat | None = None) -> Any:
    """``params`` (the structure backprop takes) with the values of ``flat`` and ``buffers``."""
    if not is_stack(spec):
        return [(flat[f"W{l}"], flat.get(f"b{l}")) for l in range(1, len(params) + 1)]
    out = [dict(p) for p in params]
    for flat_name, i, key in _slots(spec, False):
        out[i][key] = flat[flat_name]
    for flat_name, i, key in _slots(spec, True):
        if buffers and flat_name in buffers:
            out[i][key] = buffers[flat_name]
    return out


def hand_pass(spec: Any, params: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """handimpl's forward/backward (trusted: the harness's own code)."""
    return stack_backprop(spec, params, x, y) if is_stack(spec) else handimpl.backprop(spec, params, x, y)


def torch_pass(spec: Any, params: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The twin's forward/backward on ``params`` (its one-step SGD at lr 0 leaves them as they are)."""
    return stack_trace(spec, params, x, y, lr=0.0) if is_stack(spec) else torch_trace(spec, params, x, y, lr=0.0)


def pass_bounds(spec: Any, params: Any, x: np.ndarray, y: np.ndarray, ref: dict) -> dict[str, np.ndarray]:
    """The a priori bound E of every traced tensor of the pass on ``params`` (docs/verdict.md),
    from the magnitudes of the torch trace ``ref``."""
    case = Case(params, x, y, 1.0, 0.0)
    return stack_a_priori(spec, case, ref, 0.0) if is_stack(spec) else a_priori(spec, case, ref, 0.0)


def buffers_of(spec: Any, trace: dict) -> Flat:
    return {name: trace[name] for name in buffer_names(spec) if name in trace}
