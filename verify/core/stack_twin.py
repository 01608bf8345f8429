"""The torch twin of a layer stack (verify.core.stack.StackSpec), built from the same layer list:
each layer's torch counterpart (Layer.torch_module) with its parameters and buffers copied
(Layer.torch_names), dropout written here with the case's shared keep-mask, a residual block
as x + Sequential(...)(x); and one traced forward/backward/step on it, under the names of
handimpl.stack's contract."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from handimpl.layers import Layer
from handimpl.stack import param_key
from verify.core.torch_ops import TORCH_LOSSES
from verify.core.twin import TORCH_DTYPES, sgd_step, torch_target


class SharedMaskDropout(nn.Module):
    """Inverted dropout with a given keep-mask, as torch.nn.functional.dropout applies its own:
    x · (mask / (1 − p)) in training mode, the identity in eval mode."""

    def __init__(self, p: float, mask: np.ndarray | None):
        super().__init__()
        self.p = p
        self.register_buffer("mask", None if mask is None else torch.from_numpy(np.asarray(mask)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.mask is None:
            return x
        return x * (self.mask.to(x.dtype) / (1 - self.p))


class ResidualBlock(nn.Module):
    """y = x + branch(x)."""

    def __init__(self, branch: nn.Sequential):
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _module(layer: Layer, in_shape: tuple, p: dict, dtype: torch.dtype) -> nn.Module:
    """``layer``'s torch counterpart holding ``p`` (numpy arrays) in ``dtype``."""
    if layer.kind == "residual":
        inner, shape = [], in_shape
        for j, sub in enumerate(layer.inner, start=1):
            prefix = f"{j}."
            inner.append(_module(sub, shape, {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)},
                                 dtype))
            shape = sub.out_shape(shape)
        return ResidualBlock(nn.Sequential(*inner))
    if layer.kind == "dropout":
        return SharedMaskDropout(layer.p, p.get("mask"))
    name, options = layer.torch_module(in_shape)
    module = getattr(nn, name)(**options)
    for ours, theirs in layer.torch_names.items():
        if ours in p:
            value = torch.from_numpy(np.array(p[ours])).to(dtype)
            target = getattr(module, theirs)
            if isinstance(target, nn.Parameter):
                target.data = value
            else:
                setattr(module, theirs, value)
    return module.to(dtype)


def torch_layer(layer: Layer, in_shape: tuple, p: dict, dtype: torch.dtype) -> nn.Module:
    """One layer's torch counterpart holding ``p`` (our names, numpy arrays) in ``dtype``: the
    reference of a user's layer functions (verify.layers)."""
    return _module(layer, in_shape, p, dtype)


def build_stack_twin(spec: Any, params: Sequence[dict], dtype: str | None = None) -> nn.Sequential:
    """The twin of ``spec`` holding ``params`` (one dict per layer) in ``dtype`` (default the spec's),
    in the spec's mode."""
    torch_dtype = TORCH_DTYPES[dtype or spec.dtype]
    shapes = spec.shapes
    model = nn.Sequential(*[_module(layer, shapes[i], dict(params[i]), torch_dtype)
                            for i, layer in enumerate(spec.layers)])
    model.train(spec.training)
    for module in model.modules():          # a dropout's shared mask stays a bool tensor
        if isinstance(module, SharedMaskDropout) and module.mask is not None:
            module.mask = module.mask.to(torch.bool)
    return model


def _named(spec: Any, model: nn.Sequential, attr: str) -> list[tuple[str, torch.Tensor]]:
    """(our trace key suffix, the torch tensor) of every parameter (attr 'params') or buffer
    ('buffers') of the stack, layer by layer: ('W1', linear.weight), ('gamma2.1', …)."""
    out = []
    for i, (layer, module) in enumerate(zip(spec.layers, model), start=1):
        pairs = [(layer, module, "")] if layer.kind != "residual" else \
            [(sub, mod, f"{j}.") for j, (sub, mod) in enumerate(zip(layer.inner, module.branch), start=1)]
        for sub, mod, prefix in pairs:
            names = (sub.param_names if attr == "params" else sub.buffers)
            for name in names:
                tensor = getattr(mod, sub.torch_names[name], None)
                if tensor is not None:
                    out.append((param_key("", prefix + name, i), tensor))
    return out


def stack_trace(spec: Any, params: Sequence[dict], x: np.ndarray, y: np.ndarray, lr: float = 0.1,
                dtype: str | None = None) -> dict[str, Any]:
    """One forward/backward on the twin, then one SGD step: loss, out{i}, grad{i} (∂J/∂out{i}),
    d{param}{i}, dx (none for token input), each buffer after the forward ({buffer}{i}), and each
    parameter after the step ({param}{i}_after). ``dtype`` overrides the spec's (the float64
    reference of a float32 case)."""
    with torch.enable_grad():
        model = build_stack_twin(spec, params, dtype)
        torch_dtype = TORCH_DTYPES[dtype or spec.dtype]
        if spec.tokens:
            X = torch.from_numpy(np.array(x))
        else:
            X = torch.from_numpy(np.array(x)).to(torch_dtype).requires_grad_(True)
        outs, h = [], X
        for module in model:
            h = module(h)
            h.retain_grad()
            outs.append(h)
        J = TORCH_LOSSES[spec.loss](outs[-1], torch_target(y, dtype or spec.dtype), **spec.loss_kwargs)
        J.backward()
    out: dict[str, Any] = {"loss": J.item()}
    for i, o in enumerate(outs, start=1):
        out[f"out{i}"] = o.detach().numpy()
        out[f"grad{i}"] = o.grad.numpy()
    named = _named(spec, model, "params")
    for key, tensor in named:
        out["d" + key] = tensor.grad.numpy().copy()
    if not spec.tokens:
        out["dx"] = X.grad.numpy()
    for key, tensor in _named(spec, model, "buffers"):
        out[key] = tensor.detach().numpy().copy()
    sgd_step([tensor for _, tensor in named], lr)
    for key, tensor in named:
        out[f"{key}_after"] = tensor.detach().numpy().copy()
    return out
