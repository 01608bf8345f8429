"""A priori bounds for a layer stack (verify.core.stack.StackSpec), from each layer's own error
model (handimpl.layers: Layer.forward_error, backward_error, buffer_errors), carried through
the stack as verify.core.bounds carries the dense network's: forward from x (exact) to the
loss, then backward from ∂J/∂out⁽ⁿ⁾ to ∂J/∂x, then the SGD step (docs/verdict.md).

``stack_local_steps`` is the same arithmetic for one step alone, on the implementation's own
inputs: the test of inherits against diverges (verify.core.verdict).
"""
from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np

from handimpl import LOSSES
from handimpl.layers import Act, Layer, Residual
from handimpl.network import split_loss_kwargs
from handimpl.rounding import underflow, update_error
from handimpl.stack import context, param_key
from verify.core.bounds import _all_usable, _f64, _target
from verify.core.compare import UNIT_ROUNDOFF


def textbook_of_layer(layer: Layer) -> Layer | None:
    """The layer's own textbook view, where it declares textbook forms (``textbook``: batch, layer
    and group norm's σ² as mean(x²) − μ², handimpl.layers.norm): the layer with its error model
    widened to them (``textbook_view``; infinite where that form may reach σ² + ε ≤ 0, which the
    verdict reads as no allowance beyond the tight one); None where it declares none. The one
    place both verdicts take a layer's textbook allowance from (the stack's here, `verify layers`'
    in verify.layers.families)."""
    return layer.textbook_view if getattr(layer, "textbook", ()) else None


def _textbook(layer: Layer) -> Layer:
    """An activation layer judged by its activation's textbook view, a residual block by its inner
    layers' (recursively), a layer that declares textbook forms (a normalisation) by its own
    textbook view; other layers as they are."""
    if isinstance(layer, Act) and layer.f.textbook:
        view = copy.copy(layer)
        view.f = layer.f.textbook_view
        return view
    if isinstance(layer, Residual) and any(_has_textbook(inner) for inner in layer.inner):
        view = copy.copy(layer)
        view.inner = tuple(_textbook(inner) for inner in layer.inner)
        return view
    own = textbook_of_layer(layer)
    return layer if own is None else own


def _has_textbook(layer: Layer) -> bool:
    """Whether the layer, or a layer inside it (a residual block's), evaluates a textbook form."""
    if isinstance(layer, Act):
        return bool(layer.f.textbook)
    return textbook_of_layer(layer) is not None or any(_has_textbook(inner) for inner in getattr(layer, "inner", ()))


def functions(spec: Any, textbook: bool = False) -> tuple[list[Layer], Any]:
    layers = list(spec.layers)
    loss = LOSSES[spec.loss]
    if textbook:
        return [_textbook(layer) for layer in layers], loss.textbook_view
    return layers, loss


def has_textbook(spec: Any) -> bool:
    return bool(LOSSES[spec.loss].textbook) or any(_has_textbook(layer) for layer in spec.layers)


def _params64(params: list[dict]) -> list[dict]:
    """Each layer's parameters and buffers in float64 (masks stay as they are)."""
    return [{k: (v if k == "mask" else _f64(v)) for k, v in p.items()} for p in params]


def _setup(spec: Any, case: Any, textbook: bool) -> tuple:
    """What stack_a_priori and stack_local_steps both start from: (u, tiny, the layers and the
    loss (textbook views with ``textbook``), n, reduction, the loss's options, the Context, the
    float64 parameters, the target)."""
    layers, loss = functions(spec, textbook)
    reduction, opts = split_loss_kwargs(spec)
    return (UNIT_ROUNDOFF[spec.dtype], underflow(spec.dtype), layers, loss, len(layers), reduction, opts,
            context(spec, case.params), _params64(case.params), _target(case.y))


def stack_a_priori(spec: Any, case: Any, ref: dict, lr: float, textbook: bool = False) -> dict[str, np.ndarray]:
    """E for every traced tensor of a stack, from the float64 reference trace ``ref``'s magnitudes."""
    u, tiny, layers, loss, n, reduction, opts, ctx, P, y = _setup(spec, case, textbook)
    X = [case.x if spec.tokens else _f64(case.x)] + [_f64(ref[f"out{i}"]) for i in range(1, n + 1)]
    out: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        E: list = [np.zeros(np.shape(case.x))]
        for i, layer in enumerate(layers, start=1):
            E.append(layer.forward_error(X[i - 1], E[i - 1], P[i - 1], u, tiny, ctx.at(i)))
            out[f"out{i}"] = E[i]
            if spec.training:
                out.update({param_key("", name, i): Eb
                            for name, Eb in layer.buffer_errors(X[i - 1], E[i - 1], P[i - 1], u).items()})
        out["loss"] = loss.value_error(X[n], y, E[n], u, reduction, **opts)
        Eg = loss.grad_error(X[n], y, E[n], u, reduction, **opts) + tiny
        for i in range(n, 0, -1):
            out[f"grad{i}"] = Eg
            layer = layers[i - 1]
            Eg, E_params = layer.backward_error(X[i - 1], E[i - 1], P[i - 1], _f64(ref[f"grad{i}"]), Eg, u, tiny,
                                                ctx.at(i))
            for name, Ep in E_params.items():
                key = param_key("", name, i)
                out["d" + key] = Ep
                out[f"{key}_after"] = update_error(np.abs(P[i - 1][name]), Ep, lr, np.abs(_f64(ref["d" + key])), u)
        if not spec.tokens:
            out["dx"] = Eg
    return _all_usable(out)


# -- one step alone, on the implementation's own inputs ------------------------------------------

_KEY = re.compile(r"(?P<prefix>d?)(?P<name>[A-Za-z_]+?)(?P<i>[0-9]+)(?:\.(?P<j>[0-9]+))?(?P<after>_after)?")


def stack_step_of(spec: Any, name: str) -> tuple[str, int, str]:
    """(what the step is, its layer i (0: the loss), the parameter or buffer name it concerns):
    ('forward', i, ''), ('loss', 0, ''), ('grad', i, '') for ∂J/∂out⁽ⁱ⁾ (made by layer i + 1's
    backward, or the loss's for i = n), ('param', i, name), ('buffer', i, name), ('after', i,
    name), ('dx', 1, '')."""
    n = len(spec.layers)
    if name == "loss":
        return "loss", 0, ""
    if name == "dx":
        return "dx", 1, ""
    m = _KEY.fullmatch(name)
    if m is None:
        return "", 0, ""
    i = int(m["i"])
    if not 1 <= i <= n:
        return "", 0, ""
    own = f"{m['j']}.{m['name']}" if m["j"] else m["name"]
    if m["after"]:
        return "after", i, own
    if m["prefix"] == "" and m["name"] == "out" and not m["j"]:
        return "forward", i, ""
    if m["prefix"] == "" and m["name"] == "grad" and not m["j"]:
        return "grad", i, ""
    layer = spec.layers[i - 1]
    params = getattr(layer, "param_names", layer.params)
    buffers = getattr(layer, "buffer_names", layer.buffers)
    if m["prefix"] == "d" and own in params:
        return "param", i, own
    if m["prefix"] == "" and own in buffers:
        return "buffer", i, own
    return "", 0, ""


def stack_step_inputs(spec: Any, name: str) -> list[str]:
    """The traced tensors the step that makes ``name`` reads (x and the parameters aside)."""
    kind, i, own = stack_step_of(spec, name)
    n = len(spec.layers)
    before = [f"out{i - 1}"] if i > 1 else []
    if kind in ("forward", "buffer"):
        return before
    if kind == "loss":
        return [f"out{n}"]
    if kind == "grad":
        return [f"out{n}"] if i == n else [f"grad{i + 1}", f"out{i}"]
    if kind in ("param", "dx"):
        return [f"grad{i}"] + before
    if kind == "after":
        return [param_key("d", own, i)]
    return []


def stack_local_steps(spec: Any, case: Any, hand: dict, lr: float, names: set[str],
                      textbook: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each tensor in ``names``: its step recomputed in float64 from the implementation's own
    inputs, and how far a correct evaluation of that step alone may land. A tensor whose inputs
    the implementation did not return (or returned unusable) is left out."""
    u, tiny, layers, loss, n, reduction, opts, ctx, P, y = _setup(spec, case, textbook)
    m = case.x.shape[0]
    shapes = spec.shapes

    def own(key: str, shape: tuple) -> np.ndarray | None:
        if key == "out0":
            return case.x if spec.tokens else _f64(case.x)
        v = hand.get(key)
        if not isinstance(v, np.ndarray) or v.shape != shape or v.dtype.kind != "f":
            return None
        return v.astype(np.float64)

    def layer_input(i: int):
        return own(f"out{i - 1}", (m, *shapes[i - 1]))

    def backward(i: int):
        """(dx, grads, bound of dx, bounds of grads) of layer i on own input and own ∂J/∂out⁽ⁱ⁾."""
        x, dy = layer_input(i), own(f"grad{i}", (m, *shapes[i]))
        if x is None or dy is None:
            return None
        layer, c = layers[i - 1], ctx.at(i)
        _, cache = layer.forward(x, P[i - 1], c)
        dx, grads = layer.backward(dy, cache)
        zero = np.zeros(np.shape(x))
        Edx, Egrads = layer.backward_error(x, zero, P[i - 1], dy, np.zeros_like(dy), u, tiny, c)
        return dx, grads, Edx, Egrads

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with np.errstate(all="ignore"):
        for name in names:
            kind, i, param = stack_step_of(spec, name)
            step = None
            if kind == "forward" and (x := layer_input(i)) is not None:
                layer, c = layers[i - 1], ctx.at(i)
                step = layer.forward(x, P[i - 1], c)[0], layer.forward_error(x, np.zeros(np.shape(x)), P[i - 1],
                                                                             u, tiny, c)
            elif kind in ("loss", "grad") and (i == n or kind == "loss"):
                a = own(f"out{n}", (m, *shapes[n]))
                if a is not None:
                    zero = np.zeros_like(a)
                    step = (np.asarray(loss.value(a, y, reduction, **opts)),
                            loss.value_error(a, y, zero, u, reduction, **opts)) if kind == "loss" else \
                        (loss.grad(a, y, reduction, **opts), loss.grad_error(a, y, zero, u, reduction, **opts) + tiny)
            elif kind == "grad" and (b := backward(i + 1)) is not None:
                step = b[0], b[2]
            elif kind == "dx" and not spec.tokens and (b := backward(1)) is not None:
                step = b[0], b[2]
            elif kind == "param" and (b := backward(i)) is not None and param in b[1]:
                step = b[1][param], b[3][param]
            elif kind == "buffer" and (x := layer_input(i)) is not None:
                layer, c = layers[i - 1], ctx.at(i)
                _, cache = layer.forward(x, P[i - 1], c)
                step = layer.updated(P[i - 1], cache)[param], \
                    layer.buffer_errors(x, np.zeros(np.shape(x)), P[i - 1], u).get(param, 0.0)
            elif kind == "after":
                grad = hand.get(param_key("d", param, i))
                before = P[i - 1].get(param)
                if isinstance(grad, np.ndarray) and before is not None and grad.shape == before.shape:
                    step = before - lr * grad.astype(np.float64), update_error(np.abs(before), 0.0, lr,
                                                                               np.abs(grad.astype(np.float64)), u)
            if step is not None:
                out[name] = step
    return out
