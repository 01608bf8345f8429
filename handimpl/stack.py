"""A stack of layers and its backward pass: each layer's forward keeps a cache, and the
backward runs the layers in reverse, each turning ∂J/∂(its output) into ∂J/∂(its input) and its
parameters' gradients (handimpl.layers). The dense network of handimpl.network is the special
case linear > activation > linear > …, written there with the tutorial's names.

The contract (docs/byo.md), for a stack spec (verify.core.stack.StackSpec) of n layers:

    stack_backprop(spec, params, x, y) -> dict
    # spec: .layers (Layer objects), .loss, .loss_kwargs (incl. 'reduction'), .training, .dtype
    # params: one dict per layer: its parameters and buffers by name (W, b, gamma, beta,
    #         running_mean, ...; a residual block's inner layer j as 'j.W'), and for a dropout
    #         layer in training mode its keep-mask 'mask' (True: kept), the case's, to be used as is
    # returns: loss (float), out{i} (layer i's output), grad{i} (∂J/∂out{i}), d{name}{i} for each
    #          parameter (a residual block's inner 'j.W': dW{i}.{j}), dx (None for token input), and
    #          {buffer}{i} for each buffer after the forward (batch norm's running statistics)

Required: loss and every parameter gradient; the rest is compared when present.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .layers import Context
from .losses import LOSSES
from .network import split_loss_kwargs

Array = np.ndarray


def param_key(prefix: str, name: str, i: int) -> str:
    """The trace key of parameter ``name`` of layer i: ('d', 'W', 3) -> 'dW3'; a residual block's
    inner 'j.W' -> 'dW3.j'."""
    j, dot, own = name.rpartition(".")
    return f"{prefix}{own}{i}.{j}" if dot else f"{prefix}{name}{i}"


def context(spec: Any, params: list[dict]) -> Context:
    """The forward's Context: the spec's mode and each dropout layer's keep-mask from params."""
    masks = {i: p["mask"] for i, p in enumerate(params, start=1) if "mask" in p}
    return Context(training=bool(spec.training), masks=masks)


def stack_forward(spec: Any, params: list[dict], x: Array) -> tuple[list, list]:
    """(outputs indexed 0…n with outputs[0] = x, caches indexed 1…n)."""
    ctx = context(spec, params)
    outs: list = [x]
    caches: list = [None]
    for i, (layer, p) in enumerate(zip(spec.layers, params), start=1):
        y, cache = layer.forward(outs[-1], p, ctx.at(i))          # out⁽ⁱ⁾ = layer_i(out⁽ⁱ⁻¹⁾)
        outs.append(y)
        caches.append(cache)
    return outs, caches


def stack_backprop(spec: Any, params: list[dict], x: Array, y: Array) -> dict[str, Any]:
    """One forward and backward pass of the stack (the module docstring's contract)."""
    n = len(spec.layers)
    loss = LOSSES[spec.loss]
    reduction, opts = split_loss_kwargs(spec)
    outs, caches = stack_forward(spec, params, x)
    out: dict[str, Any] = {"loss": float(loss.value(outs[n], y, reduction, **opts))}
    g = loss.grad(outs[n], y, reduction, **opts)                  # ∂J/∂out⁽ⁿ⁾
    for i in range(n, 0, -1):
        out[f"grad{i}"] = g
        layer = spec.layers[i - 1]
        g, grads = layer.backward(g, caches[i])                   # ∂J/∂out⁽ⁱ⁻¹⁾, ∂J/∂θ⁽ⁱ⁾
        out.update({param_key("d", name, i): v for name, v in grads.items()})
    if g is not None:                                             # (token input has no ∂J/∂x)
        out["dx"] = g
    for i, layer in enumerate(spec.layers, start=1):
        out[f"out{i}"] = outs[i]
        out.update({param_key("", name, i): v for name, v in layer.updated(params[i - 1], caches[i]).items()})
    return out
