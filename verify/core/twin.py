"""The torch twin: the same network as nn.Sequential, its trace, and the way back.

``build_twin`` copies the NumPy parameters into nn.Linear layers (never
re-draws them); ``torch_trace`` runs one forward/backward pass and one SGD step
and names every tensor as handimpl.backprop does; ``from_torch`` turns an
existing nn.Sequential of Linear + supported activations into a spec and
parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from verify.core.spec import NetSpec
from verify.core.torch_ops import TORCH_ACTIVATIONS, TORCH_LOSSES, activation_name
from verify.errors import SpecError

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# A network's parameters as handimpl takes them: [(W1, b1), ..., (WL, bL)], b None without bias.
Params = list[tuple[np.ndarray[Any, Any], "np.ndarray[Any, Any] | None"]]


class CopiedLinear(nn.Linear):  # type: ignore[misc]  # (mypy reads torch as Any: pyproject.toml)
    """nn.Linear whose parameters are copied in, never drawn: its reset_parameters does nothing
    (the twin's weights come from handimpl's NumPy draw; drawing torch's first is wasted work)."""

    def reset_parameters(self) -> None:
        pass


def build_twin(spec: NetSpec, params: Sequence[tuple[Any, Any]], dtype: str | None = None) -> nn.Sequential:
    """nn.Sequential(Linear, act, Linear, act, ...) holding copies of ``params``."""
    dtype = dtype or spec.dtype
    layers: list[nn.Module] = []
    for l, name in enumerate(spec.activations, start=1):
        layers += [CopiedLinear(spec.widths[l - 1], spec.widths[l], bias=spec.bias,
                                dtype=TORCH_DTYPES[dtype]),
                   TORCH_ACTIVATIONS[name]()]
    return reload_twin(nn.Sequential(*layers), params, dtype)


def reload_twin(model: nn.Sequential, params: Sequence[tuple[Any, Any]], dtype: str) -> nn.Sequential:
    """The twin's Linear layers given fresh copies of ``params`` in ``dtype`` and no gradients:
    how build_twin fills a new twin, and how a float32 case's twin runs again as its float64
    reference without being built twice."""
    np_dtype = np.dtype(dtype)
    for linear, (W, b) in zip(list(model)[0::2], params):
        for param, value in ((linear.weight, W), (linear.bias, b)):
            if param is not None:
                param.data = torch.from_numpy(np.array(value, dtype=np_dtype))
                param.grad = None
    return model


def torch_target(y: np.ndarray[Any, Any], dtype: str) -> torch.Tensor:
    """y as a tensor: class indices stay int64, everything else takes the float dtype."""
    t = torch.from_numpy(np.array(y))
    return t if t.dtype == torch.int64 else t.to(TORCH_DTYPES[dtype])


@dataclass(frozen=True, eq=False)
class TwinForward:
    """One forward pass of the twin, kept for backward: X (requires grad), z⁽ˡ⁾ and a⁽ˡ⁾
    (index 0 unused; z⁽ˡ⁾ retains its grad, δ⁽ˡ⁾), the loss J and the Linear layers."""
    model: nn.Sequential
    X: torch.Tensor
    z: list[Any]
    a: list[Any]
    J: torch.Tensor

    @property
    def linears(self) -> list[Any]:
        return list(self.model)[0::2]


def forward_twin(spec: NetSpec, params: Sequence[tuple[Any, Any]], x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
                 dtype: str | None = None, retain_a: bool = False,
                 model: nn.Sequential | None = None) -> TwinForward:
    """Build the twin (or take ``model``, a twin of ``spec`` holding ``params`` in ``dtype``) and
    run z⁽ˡ⁾ = Linear(a⁽ˡ⁻¹⁾), a⁽ˡ⁾ = act(z⁽ˡ⁾), then J; nothing backward yet. Runs with
    autograd on whatever the caller's grad mode (a user's torch.set_grad_enabled(False), say)."""
    with torch.enable_grad():
        return _forward_twin(spec, params, x, y, dtype, retain_a, model)


def _forward_twin(spec: NetSpec, params: Sequence[tuple[Any, Any]], x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
                  dtype: str | None, retain_a: bool, model: nn.Sequential | None) -> TwinForward:
    model = build_twin(spec, params, dtype) if model is None else model
    layers = list(model)
    X = torch.from_numpy(np.array(x)).to(TORCH_DTYPES[dtype or spec.dtype]).requires_grad_(True)
    zs: list[Any] = [None]
    acts: list[Any] = [X]
    for linear, act in zip(layers[0::2], layers[1::2]):
        z = linear(acts[-1])
        z.retain_grad()                      # δ⁽ˡ⁾ = ∂J/∂z⁽ˡ⁾ is z.grad
        a = act(z)
        if retain_a:
            a.retain_grad()
        zs.append(z)
        acts.append(a)
    J = TORCH_LOSSES[spec.loss](acts[-1], torch_target(y, dtype or spec.dtype), **spec.loss_kwargs)
    return TwinForward(model, X, zs, acts, J)


def sgd_step(parameters: Any, lr: float) -> None:
    """One plain SGD step on ``parameters`` (an iterable, e.g. model.parameters()), exactly as
    torch.optim.SGD(parameters, lr=lr).step() takes it: without momentum, weight decay or
    maximize, its _multi_tensor_sgd is ``torch._foreach_add_(params, grads, alpha=-lr)`` and
    its _single_tensor_sgd ``param.add_(grad, alpha=-lr)`` for each (torch/optim/sgd.py); the
    first, one call for all the tensors, is taken. The optimizer itself is not called because
    its first use imports torch._dynamo, which takes longer than a whole default sweep;
    tests/test_spec.py checks the two agree bit for bit, with foreach and without."""
    params = list(parameters)
    with torch.no_grad():
        torch._foreach_add_(params, [param.grad for param in params], alpha=-lr)


def torch_trace(spec: NetSpec, params: Sequence[tuple[Any, Any]], x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
                lr: float = 0.1, dtype: str | None = None, model: nn.Sequential | None = None
                ) -> dict[str, Any]:
    """One forward/backward on the twin: loss, z{l}, a{l}, delta{l} (= z{l}.grad), dW{l},
    db{l}, dx, and W{l}_after/b{l}_after one SGD step (torch.optim.SGD's, see sgd_step) with
    learning rate lr.
    ``dtype`` overrides the spec's (the float64 reference of a float32 case); ``model``, a twin
    of ``spec`` holding ``params`` in that dtype (see reload_twin), is used instead of a new one."""
    run = forward_twin(spec, params, x, y, dtype, model=model)
    run.J.backward()
    out: dict[str, Any] = {"loss": run.J.item()}
    weights = [linear.weight for linear in run.linears]
    biases = [linear.bias for linear in run.linears] if spec.bias else []
    for l, (z, a, W) in enumerate(zip(run.z[1:], run.a[1:], weights), start=1):
        out[f"z{l}"], out[f"a{l}"] = z.detach().numpy(), a.detach().numpy()
        out[f"delta{l}"] = z.grad.numpy()
        out[f"dW{l}"] = W.grad.numpy().copy()
    for l, b in enumerate(biases, start=1):
        out[f"db{l}"] = b.grad.numpy().copy()
    out["dx"] = run.X.grad.numpy()
    sgd_step(weights + biases, lr)
    for l, W in enumerate(weights, start=1):
        out[f"W{l}_after"] = W.detach().numpy().copy()
    for l, b in enumerate(biases, start=1):
        out[f"b{l}_after"] = b.detach().numpy().copy()
    return out


def from_torch(module: nn.Module, loss: str = "mse_loss", **options: Any) -> tuple[NetSpec, Params]:
    """(NetSpec, params) for an nn.Sequential of nn.Linear layers, each optionally followed
    by one supported activation module with default settings. ``options`` are the spec's
    (reduction, init, target and the loss's own options)."""
    modules = list(module.children()) if isinstance(module, nn.Sequential) else [module]
    widths: list[int] = []
    acts: list[str] = []
    params: Params = []
    biases: set[bool] = set()
    dtypes: set[torch.dtype] = set()
    for i, m in enumerate(modules):
        if isinstance(m, nn.Linear):
            if widths and widths[-1] != m.in_features:
                raise SpecError(f"layer {i}: Linear takes {m.in_features} features after {widths[-1]}")
            widths = widths or [m.in_features]
            widths.append(m.out_features)
            acts.append("identity")
            biases.add(m.bias is not None)
            dtypes.add(m.weight.dtype)
            b = None if m.bias is None else m.bias.detach().numpy().copy()
            params.append((m.weight.detach().numpy().copy(), b))
            continue
        name = activation_name(m)
        if name is None or not acts or acts[-1] != "identity" or \
                not isinstance(modules[i - 1], nn.Linear):
            supported = ", ".join(TORCH_ACTIVATIONS)
            raise SpecError(f"layer {i}: {m!r} is not supported here; expected nn.Linear, each "
                            f"optionally followed by one of (default settings): {supported}")
        acts[-1] = name
    if not params:
        raise SpecError("no nn.Linear layer found")
    if len(biases) > 1:
        raise SpecError("some Linear layers have a bias and some do not")
    dtype = {torch.float32: "float32", torch.float64: "float64"}.get(dtypes.pop()) if len(dtypes) == 1 else None
    if dtype is None:
        raise SpecError("parameters must all be float32 or all float64")
    reduction = options.pop("reduction", "mean")
    init = options.pop("init", "default")
    target = options.pop("target", "index")
    spec = NetSpec(tuple(widths), tuple(acts), loss, tuple(options.items()), reduction=reduction,
                   bias=biases.pop(), dtype=dtype, init=init, target=target)
    return spec, params
