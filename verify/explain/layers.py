"""`verify explain` for layer stacks, and one layer's page on given arrays.

A stack spec (``INPUT>LAYER>…|LOSS``, verify.core.stack) runs one case through
handimpl.stack and the torch twin; the page lists the autograd nodes torch built for each
layer (each found by the tensor it produces: the node that made layer i's output is tagged in
its ``metadata`` before the walk, as verify.explain.graph does for dense nets), then walks the
backward pass layer by layer, last to first. Each layer's section runs that layer alone on the
twin's own input to it and ∂J/∂(its output), and shows its formula with the numbers:

- batch, layer and group norm: the compact form dx = (1/σ)/N·(N·dx̂ − Σdx̂ − x̂·Σ(dx̂⊙x̂)),
  dx̂ = γ·dy, term by term, against the one node torch builds (NativeBatchNormBackward0 in
  torch 2.13, whatever the installed torch names it: the node that made the output); and the
  graph form, x̂ = (x − μ)/σ written as elementary torch operations, whose three paths (direct,
  through μ, through σ²) are the compact form's three terms;
- max pooling: each window's values, its winner (the first maximum in row-major order, torch's
  CPU rule) and where its dy goes, next to torch's own index of the winner;
- convolution: dx as the full convolution of dy (dilated by the stride, padded by the kernel's
  reach) with the flipped kernel, dW as the correlation of the input with dy;
- every other layer: its formulas and the numbers, hand against torch.

``explain_layer(kind, inputs, params, dout)`` renders one layer's page on given arrays (the
minimal counterexample of `verify layers`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from handimpl.layers import Act, Context, Layer
from handimpl.layers.conv import Conv2d, correlate, flipped, full_input, kernel_gradient, placed
from handimpl.layers.norm import BatchNorm, _Norm
from handimpl.layers.pool import MaxPool2d, first_max
from handimpl.stack import stack_backprop
from verify.core.data import draw_stack_case
from verify.core.stack import StackSpec, parse_layer
from verify.core.stack_twin import SharedMaskDropout, build_stack_twin, torch_layer
from verify.core.torch_ops import TORCH_LOSSES
from verify.core.twin import torch_target
from verify.errors import SpecError
from verify.explain.graph import file_nodes, node_name
from verify.explain.steps import Explanation, Section, Step, compared, fmt_number, max_diff

DEFAULT_BATCH = 3           # with 2, batch norm's x̂ is ±1 in every channel: too special to learn from
SEED_SEARCH = 200
MAX_WINDOWS = 12            # max pooling: windows listed one by one (the rest summed up in one line)


def sup(i: int) -> str:
    return f"⁽{i}⁾"


# -- torch's side of one layer ------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LayerRun:
    """One layer run alone in torch on x with upstream gradient dy."""
    out: np.ndarray
    dx: np.ndarray | None
    grads: dict            # our parameter name -> its gradient
    nodes: tuple[str, ...]  # the nodes between the output and the input/parameters, walk order
    producer: str          # the node that made the output (found by the tensor)


def _mask(p: dict) -> dict:
    return {k: (np.asarray(v, dtype=bool) if k == "mask" else v) for k, v in p.items()}


def run_layer(layer: Layer, x: np.ndarray, p: dict, dy: np.ndarray, training: bool = True) -> LayerRun:
    """``layer`` holding ``p`` run alone in float64 torch on x, then backward with dy."""
    module = torch_layer(layer, tuple(np.shape(x)[1:]), _mask(p), torch.float64)
    module.train(training)
    for sub in module.modules():
        if isinstance(sub, SharedMaskDropout) and sub.mask is not None:
            sub.mask = sub.mask.to(torch.bool)
    tokens = np.asarray(x).dtype.kind in "iu"
    with torch.enable_grad():
        X = torch.from_numpy(np.array(x))
        if not tokens:
            X = X.to(torch.float64).requires_grad_(True)
        Y = module(X)
        label = {id(_attr(module, theirs)): ours for ours, theirs in _torch_params(layer)}
        names = []
        if Y.grad_fn is not None and Y is not X:
            names = [_label(n, label, X) for n in file_nodes(Y.grad_fn, "layer").get("layer", [])]
            Y.backward(torch.from_numpy(np.array(dy, dtype=np.float64)))
    grads = {}
    for ours, theirs in _torch_params(layer):
        t = _attr(module, theirs)
        if isinstance(t, torch.nn.Parameter) and t.grad is not None:
            grads[ours] = t.grad.numpy().copy()
    if Y is X:                                  # an identity (eval-mode dropout): dx = dy, no node
        dx = np.array(dy, dtype=np.float64)
    else:
        dx = None if tokens or X.grad is None else X.grad.numpy().copy()
    return LayerRun(Y.detach().numpy().copy(), dx, grads, tuple(names),
                    node_name(Y.grad_fn) if Y.grad_fn is not None and Y is not X else "")


def _attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part, None)
    return module


def _torch_params(layer: Layer) -> list[tuple[str, str]]:
    """(our name, the torch attribute path) of each parameter, a residual block's inner ones too."""
    if layer.kind == "residual":
        return [(f"{j}.{ours}", f"branch.{j - 1}.{theirs}") for j, sub in enumerate(layer.inner, start=1)
                for ours, theirs in _torch_params(sub)]
    return [(ours, layer.torch_names[ours]) for ours in layer.param_names]


def _label(node, label: dict, X) -> str:
    """The node's name; an AccumulateGrad's with the parameter it holds (``label``: id -> name) or x."""
    name = node_name(node)
    if name == "AccumulateGrad":
        v = getattr(node, "variable", None)
        if v is X:
            return "AccumulateGrad(x)"
        return f"AccumulateGrad({label.get(id(v), '?')})"
    return name


def hand_layer(layer: Layer, x: np.ndarray, p: dict, dy: np.ndarray, training: bool = True):
    """handimpl's forward and backward of ``layer`` alone: (out, dx, grads)."""
    ctx = Context(training=training, masks={0: _mask(p)["mask"]} if "mask" in p else {})
    out, cache = layer.forward(np.asarray(x), p, ctx)
    dx, grads = layer.backward(np.asarray(dy, dtype=out.dtype), cache)
    return out, dx, grads


# -- one layer's steps ------------------------------------------------------------------------------

def _generic_steps(layer: Layer, hand: tuple, run: LayerRun) -> list[Step]:
    out, dx, grads = hand
    steps = []
    formulas = dict(layer.backward_formulas)
    if isinstance(layer, Act):
        formulas.setdefault("dx", f"∂J/∂x = dy ⊙ f′(x), f′ = {layer.f.derivative}")
    if dx is not None and run.dx is not None:
        steps.append(Step(formulas.get("dx", "∂J/∂x"), values=(("hand", dx), ("torch", run.dx)),
                          diffs=compared(dx, run.dx), note="torch: x.grad."))
    for name, g in grads.items():
        key = "d" + name.rpartition(".")[2]
        text = formulas.get(key, f"∂J/∂{name}")
        if "." in name:
            text = f"∂J/∂{name} (inner layer {name.partition('.')[0]} of the block)"
        steps.append(Step(text, values=(("hand", g), ("torch", run.grads.get(name))),
                          diffs=compared(g, run.grads.get(name))))
    return steps


def _norm_steps(layer: _Norm, x: np.ndarray, p: dict, dy: np.ndarray, training: bool, run: LayerRun,
                hand: tuple) -> list[Step]:
    """The compact form term by term, and the graph form, for a normalisation in training mode
    (batch norm in eval mode: the affine map dy·γ/σ_run)."""
    g = p["gamma"].reshape(layer.affine_shape(x.shape))
    if isinstance(layer, BatchNorm) and not training:
        inv = 1 / np.sqrt(p["running_var"].reshape(g.shape) + layer.eps)
        dx = dy * g * inv
        return [Step("eval mode: x̂ = (x − μ_run)/σ_run is affine in x, so ∂J/∂x = dy·γ/σ_run",
                     nodes=(run.producer,), values=(("γ/σ_run", (g * inv).reshape(-1)), ("dy·γ/σ_run", dx),
                                                    ("torch", run.dx)), diffs=compared(dx, run.dx)),
                *_generic_steps(layer, hand, run)[1:]]
    stats = layer._stats(x)
    xg = layer.grouped(x)
    xhat, mu, var, inv = stats.forward(xg)
    N = stats.count(xg)
    dxhat = layer.grouped(dy * g)
    over = {"batchnorm": "the batch and every spatial position, per channel",
            "layernorm": "every feature of one example", "groupnorm": "the channels of one group and their positions, "
            "per example"}[layer.kind]
    steps = [Step(f"μ = (1/N)Σx,  σ² = (1/N)Σ(x − μ)² (biased),  σ = √(σ² + ε),  x̂ = (x − μ)/σ;  "
                  f"N = {N} (over {over}), ε = {layer.eps:g}",
                  values=(("μ", mu.reshape(-1)), ("σ²", var.reshape(-1)), ("σ", (1 / inv).reshape(-1)),
                          ("x̂", layer.ungrouped(xhat, x.shape))))]
    S1 = dxhat.sum(axis=stats.axes, keepdims=True)
    S2 = (dxhat * xhat).sum(axis=stats.axes, keepdims=True)
    T1 = inv * dxhat
    T2 = -inv / N * S1
    T3 = -inv / N * xhat * S2
    total = T1 + T2 + T3
    ung = layer.ungrouped

    def shown(v):
        return ung(np.broadcast_to(v, xhat.shape).copy(), x.shape)

    compact = ("dx = (γ/σ)/N·(N·dy − Σdy − x̂·Σ(dy⊙x̂))" if layer.kind == "batchnorm" else
               "dx = (1/σ)/N·(N·dx̂ − Σdx̂ − x̂·Σ(dx̂⊙x̂)),  dx̂ = γ·dy")
    own = [n for n in run.nodes if not n.startswith("AccumulateGrad")]
    computes = (f"{run.producer}: one node computes all of it" if len(own) == 1 else
                f"{' → '.join(own)}: the nodes this torch builds for it")
    steps.append(Step(f"The compact form: {compact}", nodes=(computes,),
                      values=(("dx̂ = γ·dy", ung(dxhat, x.shape)), ("Σdx̂", S1.reshape(-1)),
                              ("Σ(dx̂⊙x̂)", S2.reshape(-1))),
                      note=f"Σ runs over the N = {N} values of each statistic; with dx̂ = γ·dy this is "
                           "(1/σ)/N·(N·dx̂ − Σdx̂ − x̂·Σ(dx̂⊙x̂)), three terms:"))
    steps.append(Step("term 1, the direct path (x̂ holds x itself): dx̂/σ", values=(("term 1", shown(T1)),)))
    steps.append(Step("term 2, the path through μ: −(1/σ)/N·Σdx̂", values=(("term 2", shown(T2)),)))
    steps.append(Step("term 3, the path through σ: −(1/σ)/N·x̂·Σ(dx̂⊙x̂)", values=(("term 3", shown(T3)),)))
    steps.append(Step(f"term 1 + term 2 + term 3 = torch's dx ({' → '.join(own)})",
                      values=(("sum", shown(total)), ("torch", run.dx)), diffs=compared(shown(total), run.dx, "sum"),
                      note="torch: x.grad."))
    steps += _graph_form(layer, x, p, dy, run, (shown(T1), shown(T2), shown(T3)))
    for name, text in (("gamma", "∂J/∂γ = Σ dy ⊙ x̂"), ("beta", "∂J/∂β = Σ dy")):
        steps.append(Step(text, values=(("hand", hand[2][name]), ("torch", run.grads.get(name))),
                          diffs=compared(hand[2][name], run.grads.get(name))))
    return steps


def _graph_form(layer: _Norm, x, p, dy, run: LayerRun, terms: tuple) -> list[Step]:
    """x̂ = (x − μ)/σ as elementary torch operations: the nodes autograd builds, ∂J/∂μ and ∂J/∂σ²
    as it computes them, each path's share of dx, and the total against the single node's."""
    with torch.enable_grad():
        X = torch.from_numpy(np.array(x, dtype=np.float64)).requires_grad_(True)
        G = torch.from_numpy(np.array(p["gamma"], dtype=np.float64)).reshape(layer.affine_shape(x.shape))
        B = torch.from_numpy(np.array(p["beta"], dtype=np.float64)).reshape(layer.affine_shape(x.shape))
        Xg = X.reshape(layer.grouped(np.empty(x.shape)).shape)
        axes = layer._stats(x).axes
        mu = Xg.mean(dim=axes, keepdim=True)                  # μ
        mu.retain_grad()
        xc = Xg - mu                                          # x − μ
        var = (xc * xc).mean(dim=axes, keepdim=True)          # σ²
        var.retain_grad()
        sigma = torch.sqrt(var + layer.eps)                   # σ
        xhat = xc / sigma                                     # x̂
        xhat.retain_grad()
        Y = G * xhat.reshape(x.shape) + B
        nodes = [_label(n, {}, X) for n in file_nodes(Y.grad_fn, "graph").get("graph", [])]
        Y.backward(torch.from_numpy(np.array(dy, dtype=np.float64)))
    N = int(np.prod([Xg.shape[a] for a in axes]))
    s = sigma.detach().numpy()
    xcn = xc.detach().numpy()
    dxhat = xhat.grad.numpy()
    dmu, dvar = mu.grad.numpy(), var.grad.numpy()
    shape = x.shape
    direct = (dxhat / s).reshape(shape)
    via_mu = np.broadcast_to(dmu / N, xcn.shape).reshape(shape)
    via_var = (2 * xcn / N * dvar).reshape(shape)
    graph_dx = X.grad.numpy()
    uniq = list(dict.fromkeys(nodes))
    return [
        Step("The graph form: μ = mean(x), x − μ, σ² = mean((x − μ)²), σ = √(σ² + ε), x̂ = (x − μ)/σ, "
             "y = γx̂ + β, written as elementary torch operations",
             nodes=(" → ".join(uniq),),
             values=(("∂J/∂x̂", dxhat.reshape(shape)),
                     ("∂J/∂μ", dmu.reshape(-1)), ("∂J/∂σ²", dvar.reshape(-1))),
             note="the nodes autograd builds for the elementary form, from the output down (each kind once); "
                  "∂J/∂μ and ∂J/∂σ² are what it computes at μ and σ² (their .grad)."),
        Step("direct path: ∂J/∂x̂/σ  (= term 1)", values=(("direct", direct),),
             diffs=(("max |direct − term 1|", max_diff(direct, terms[0])),)),
        Step("through μ: ∂J/∂μ/N, to every x of the statistic  (= term 2)", values=(("via μ", via_mu),),
             diffs=(("max |via μ − term 2|", max_diff(via_mu, terms[1])),),
             note="∂J/∂μ = −Σ∂J/∂x̂/σ − (2/N)Σ(x − μ)·∂J/∂σ²; the second part is 0 up to rounding, since Σ(x − μ) = 0."),
        Step("through σ²: ∂J/∂σ²·2(x − μ)/N  (= term 3)", values=(("via σ²", via_var),),
             diffs=(("max |via σ² − term 3|", max_diff(via_var, terms[2])),),
             note="∂J/∂σ² = Σ∂J/∂x̂·(x − μ)·(−½)(σ² + ε)^(−3/2)."),
        Step("the graph form's dx (x.grad of the elementary graph) = the single node's dx",
             values=(("graph form", graph_dx), ("torch node", run.dx)),
             diffs=compared(graph_dx, run.dx, "graph form")),
    ]


def _maxpool_steps(layer: MaxPool2d, x: np.ndarray, dy: np.ndarray, run: LayerRun, hand: tuple) -> list[Step]:
    """Each window's values, its winner and where its dy goes, next to torch's index of the winner."""
    win = layer.window_values(x)                                   # (m, C, Ho, Wo, k)
    first = first_max(win)
    with torch.no_grad():
        _, index = torch.nn.functional.max_pool2d(torch.from_numpy(np.array(x, dtype=np.float64)), layer.k,
                                                  layer.s, layer.p, layer.d, return_indices=True)
    index = index.numpy()                                          # torch's winner: h·W + w in x
    m, C, Ho, Wo, k = win.shape
    W = x.shape[3]
    lines, agree, ties = [], 0, 0
    total = m * C * Ho * Wo
    for n, c, a, b in np.ndindex(m, C, Ho, Wo):
        j = int(first[n, c, a, b])
        i0, j0 = divmod(j, layer.k[1])
        h = a * layer.s[0] - layer.p[0] + i0 * layer.d[0]
        w = b * layer.s[1] - layer.p[1] + j0 * layer.d[1]
        t = divmod(int(index[n, c, a, b]), W)
        agree += (h, w) == t
        vals = win[n, c, a, b]
        tie = int((vals == vals[j]).sum()) > 1
        ties += tie
        if len(lines) < MAX_WINDOWS or (tie and len(lines) < 2 * MAX_WINDOWS):
            shown = " ".join("−∞" if v == -np.inf else fmt_number(v) for v in vals)
            lines.append(f"window [{n},{c},{a},{b}]: ({shown}) → winner entry {j} = x[{n},{c},{h},{w}] = "
                         f"{fmt_number(vals[j])}{' (a tie: the first maximum wins)' if tie else ''}; "
                         f"dy = {fmt_number(dy[n, c, a, b])} goes there; torch's index: x[{n},{c},{t[0]},{t[1]}]")
    if total > len(lines):
        lines.append(f"… {total - len(lines)} more windows")
    pad = (f"; x̄ pads x with −∞ by {layer.p[0]}x{layer.p[1]}, so padding never wins" if layer.p != (0, 0) else "")
    steps = [Step(f"routing: each window's dy goes to its winner, the first maximal entry in row-major order "
                  f"(kernel {layer.k[0]}x{layer.k[1]}, stride {layer.s[0]}x{layer.s[1]}, dilation "
                  f"{layer.d[0]}x{layer.d[1]}{pad})", nodes=(f"{run.producer}: saves each window's winner",),
                  lines=tuple(lines),
                  note=f"{agree} of {total} windows: torch's winner (max_pool2d's return_indices) is the one shown; "
                       f"{ties} window{'s' if ties != 1 else ''} with a tied maximum. torch's CPU kernel "
                       "(cpu_max_pool) keeps a value only if (val > maxval) || isnan(val), a strict comparison, "
                       "so the first of equal maxima wins.")]
    steps.append(Step("∂J/∂x_e = Σ_{windows w won by e} dy_w   (an entry that wins overlapping windows gets the sum)",
                      nodes=(f"{run.producer} → scatters dy to the saved indices",),
                      values=(("hand", hand[1]), ("torch", run.dx)), diffs=compared(hand[1], run.dx),
                      note="torch: x.grad."))
    return steps


def _conv_steps(layer: Conv2d, x: np.ndarray, p: dict, dy: np.ndarray, run: LayerRun, hand: tuple) -> list[Step]:
    """dx as a full convolution with the flipped kernel, dW as a correlation of x̄ with dy."""
    W = layer._as2d(np.asarray(p["W"], dtype=np.float64))
    x2, dy2 = layer._as2d(np.asarray(x, dtype=np.float64)), layer._as2d(np.asarray(dy, dtype=np.float64))
    xp = np.pad(x2, ((0, 0), (0, 0), (layer.p[0],) * 2, (layer.p[1],) * 2))
    spread = full_input(dy2, layer.k, layer.s, layer.d)
    K = flipped(W)
    core = correlate(spread, K, (1, 1), layer.d)
    dx = layer._from2d(placed(core, xp.shape, layer.p)).reshape(np.shape(x))
    dW = kernel_gradient(xp, dy2, layer.k, layer.s, layer.d).reshape(np.shape(p["W"]))   # x̄ ⋆ dy
    s, d = layer._hyper(layer.s), layer._hyper(layer.d)
    steps = [
        Step("dy dilated by the stride (s − 1 zeros between entries) and padded by the kernel's reach d(k − 1)",
             values=(("dy", dy), ("spread", layer._from2d(spread))), note=f"stride {s}, dilation {d}."),
        Step("the kernel flipped: rot180(W), C_in and C_out swapped",
             values=(("W", p["W"]), ("flipped", layer._from2d(K)))),
        Step("∂J/∂x̄ = spread ⋆ rot180(W), a full convolution of dy with W; ∂J/∂x = ∂J/∂x̄ without its padding",
             nodes=(f"{run.producer} → grad_input",),
             values=(("full conv", dx), ("torch", run.dx)), diffs=compared(dx, run.dx, "full conv"),
             note="torch: x.grad."),
        Step("∂J/∂W[o,c,i,j] = Σ_{n,a,b} x̄[n,c,a·s+i·d,b·s+j·d]·dy[n,o,a,b]: the input correlated with dy",
             nodes=(f"{run.producer} → grad_weight",),
             values=(("x̄ ⋆ dy", dW), ("torch", run.grads.get("W"))), diffs=compared(dW, run.grads.get("W"), "x̄ ⋆ dy"),
             note="dy is the kernel here, read with the layer's stride as its dilation."),
    ]
    if layer.bias:
        db = dy2.sum(axis=(0, 2, 3))
        steps.append(Step("∂J/∂b[o] = Σ_{n,a,b} dy[n,o,a,b]", nodes=(f"{run.producer} → grad_bias",),
                          values=(("Σ dy", db), ("torch", run.grads.get("b"))), diffs=compared(db, run.grads.get("b"),
                                                                                             "Σ dy")))
    return steps


def layer_steps(layer: Layer, x: np.ndarray, p: dict, dy: np.ndarray, training: bool = True,
                nodes: tuple[str, ...] | None = None) -> tuple[list[Step], LayerRun]:
    """One layer's steps on x, p, dy: forward, the nodes torch built (``nodes``, those a stack's
    walk found, else the layer's own), then the backward's terms with numbers."""
    run = run_layer(layer, x, p, dy, training)
    hand = hand_layer(layer, x, p, dy, training)
    name = layer.name if isinstance(layer, Act) else layer.kind
    found = nodes if nodes is not None else run.nodes
    steps = [Step(f"forward: {layer.formula or name}", values=(("hand", hand[0]), ("torch", run.out)),
                  diffs=compared(hand[0], run.out)),
             Step("the nodes torch built for it, found by the tensor it produces (output first)",
                  nodes=tuple(found) or ("(none: the layer returns its input as it is)",))]
    if isinstance(layer, _Norm):
        steps += _norm_steps(layer, np.asarray(x, dtype=np.float64), p, np.asarray(dy, dtype=np.float64), training,
                             run, hand)
    elif isinstance(layer, MaxPool2d):
        steps += _maxpool_steps(layer, np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64), run, hand)
    elif isinstance(layer, Conv2d):
        steps += _conv_steps(layer, x, p, dy, run, hand)
    elif layer.kind == "dropout" and not training:
        steps.append(Step("eval mode: y = x, so ∂J/∂x = dy", values=(("hand", hand[1]), ("torch", run.dx)),
                          diffs=compared(hand[1], run.dx)))
    else:
        steps += _generic_steps(layer, hand, run)
    return steps, run


# -- a whole stack ------------------------------------------------------------------------------------

def followable_stack_seed(spec: StackSpec, batch: int) -> int:
    """The first data seed from 0 up whose case has x at scale 1 and no planted zeros."""
    for seed in range(SEED_SEARCH):
        case = draw_stack_case(spec, seed, batch)
        if case.scale == 1 and not case.zero_fraction:
            return seed
    return 0


def _stack_torch(spec: StackSpec, params: list, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The twin's forward and backward in float64: each layer's input, output and ∂J/∂output, and
    the nodes filed by the layer whose output they lead to (found by the tensors they produce)."""
    model = build_stack_twin(spec, params, "float64")
    with torch.enable_grad():
        X = torch.from_numpy(np.array(x))
        if not spec.tokens:
            X = X.to(torch.float64).requires_grad_(True)
        outs = [X]
        for module in model:
            h = module(outs[-1])
            if h.requires_grad:
                h.retain_grad()
            outs.append(h)
        J = TORCH_LOSSES[spec.loss](outs[-1], torch_target(y, "float64"), **spec.loss_kwargs)
        for i, o in enumerate(outs[1:], start=1):
            if o.grad_fn is not None and o is not outs[i - 1]:    # an identity (eval-mode dropout) makes no node
                o.grad_fn.metadata["verify.produces"] = i
        params_of = {id(_attr(module, theirs)): f"{ours}{sup(i)}"
                     for i, (layer, module) in enumerate(zip(spec.layers, model), start=1)
                     for ours, theirs in _torch_params(layer)}
        regions = file_nodes(J.grad_fn, "loss", key="verify.produces")
        J.backward()
    return {"loss": J.item(), "outs": [o.detach().numpy().copy() for o in outs],
            "grads": [None] + [o.grad.numpy().copy() for o in outs[1:]],
            "dx": None if spec.tokens else X.grad.numpy().copy(),
            "nodes": {k: tuple(_label(n, params_of, X) for n in v) for k, v in regions.items()}}


def explain_stack(spec: StackSpec | str, seed: int | None = None, batch: int = DEFAULT_BATCH) -> Explanation:
    """The page of one stack case: the graph torch built, then each layer last to first."""
    spec = StackSpec.coerce(spec)
    batch = max(batch, spec.min_batch)
    chosen = seed is None
    seed = followable_stack_seed(spec, batch) if chosen else seed
    case = draw_stack_case(spec, seed, batch)
    params = [dict(p) for p in case.params]
    if spec.dtype != "float64":
        params = [{k: (v.astype(np.float64) if k != "mask" else v) for k, v in p.items()} for p in params]
    x = case.x if spec.tokens else case.x.astype(np.float64)
    f64 = dataclasses.replace(spec, dtype="float64")
    hand = stack_backprop(f64, params, x, case.y)
    tr = _stack_torch(f64, params, x, case.y)
    shapes = spec.shapes
    why = " (the first seed with x at scale 1 and no planted zeros; --seed picks another)" if chosen else ""
    intro = (f"Spec {spec}, seed {seed}{why}, batch m = {batch}, {spec.mode} mode"
             + (", computed in float64 (the case's float32 values, read exactly)" if spec.dtype != "float64" else "")
             + ". Layers are numbered 1…n, out⁽⁰⁾ = x; dy = ∂J/∂out⁽ⁱ⁾, the gradient arriving at layer i's output.",
             "Each layer's section runs that layer alone, in torch and in handimpl, on the twin's own input to it "
             "and its dy, so that each number can be followed by hand; 'hand' is handimpl.layers, 'torch' autograd.")
    lines = [f"loss ({spec.loss}): {' → '.join(tr['nodes'].get('loss', ())) or '(none)'}"]
    for i in range(spec.depth, 0, -1):
        found = tr["nodes"].get(i, ())
        lines.append(f"layer {i} ({spec.layers[i - 1].spec()}): {' → '.join(found) or '(no node of its own)'}")
    sections = [Section("The graph torch built",
                        "Walking J.grad_fn and its next_functions, each node filed under the layer whose output "
                        "it leads to: the node that made each layer's output is tagged in its metadata before "
                        "the walk, so the filing does not depend on the order of next_functions nor on the "
                        "torch version's node names.",
                        (Step("J.grad_fn, then next_functions, layer n down to 1", nodes=tuple(lines)),))]
    diffs = [(f"∂J/∂out{sup(i)}: max |hand − torch|", max_diff(hand[f"grad{i}"], tr["grads"][i]))
             for i in range(spec.depth, 0, -1)]
    if tr["dx"] is not None:
        diffs.append(("∂J/∂x: max |hand − torch|", max_diff(hand["dx"], tr["dx"])))
    end = (Step(f"J = {spec.loss}(out⁽{spec.depth}⁾, y), then ∂J/∂out⁽ⁱ⁾ from i = {spec.depth} down to ∂J/∂x",
                values=(("hand J", hand["loss"]), ("torch J", tr["loss"])),
                diffs=(("J: max |hand − torch|", max_diff(hand["loss"], tr["loss"])), *diffs)),)
    sections.append(Section("The stack end to end", "handimpl.stack_backprop against the twin, each tensor's "
                            "largest difference.", end))
    for i in range(spec.depth, 0, -1):
        layer = spec.layers[i - 1]
        xin, dy = tr["outs"][i - 1], tr["grads"][i]
        steps, _ = layer_steps(layer, xin, params[i - 1], dy, spec.training, tr["nodes"].get(i, ()))
        head = (f"Layer {i} of {spec.depth}: {layer.spec()} "
                f"({'×'.join(map(str, shapes[i - 1]))} → {'×'.join(map(str, shapes[i]))})")
        sections.append(Section(head, "", tuple(steps)))
    return Explanation(f"Backprop through the layers of {spec}", intro, tuple(sections))


# -- one layer on given arrays ------------------------------------------------------------------------

def shown_spec(layer: Layer) -> str:
    """layer.spec() with its numbers at 12 digits (momentum=0.1, not 0.09999999999999998)."""
    return re.sub(r"\d+\.\d{13,}", lambda m: f"{float(m.group()):.12g}", layer.spec())


def as_layer(kind: Layer | str) -> Layer:
    """A Layer, or one written in the stack grammar ('batchnorm', 'conv2d:2,k3,p1', 'maxpool:2,s1')."""
    if isinstance(kind, Layer):
        return kind
    if not isinstance(kind, str):
        raise SpecError(f"kind must be a layer spec like 'batchnorm' or 'maxpool:2', not {type(kind).__name__}")
    return parse_layer(kind)


def explain_layer(kind: Layer | str, inputs: Any, params: dict | None = None, dout: Any = None, *,
                  training: bool = True, format: str | None = None, title: str = "",
                  intro: tuple[str, ...] = ()) -> Explanation | str:
    """One layer's page on given arrays: ``inputs`` x (m, *shape), ``params`` the layer's by our
    names (W, b, gamma, beta, running_mean, running_var; a dropout's keep-mask 'mask'), ``dout``
    ∂J/∂output (default ones). Returns the Explanation, or with ``format`` ('text', 'md', 'html')
    the rendered page."""
    from verify.explain.render import RENDERERS
    layer = as_layer(kind)
    x = np.asarray(inputs)
    if x.dtype.kind not in "iu":
        x = x.astype(np.float64)
    p = {k: (np.asarray(v) if k == "mask" else np.asarray(v, dtype=np.float64)) for k, v in (params or {}).items()}
    try:
        out_shape = layer.out_shape(tuple(x.shape[1:]))
    except ValueError as e:
        raise SpecError(f"{layer.spec()}: {e}") from None
    missing = [k for k in layer.param_names if k not in p and "." not in k]
    if missing:
        raise SpecError(f"{layer.spec()}: params lack {', '.join(missing)}")
    dy = np.ones((x.shape[0], *out_shape)) if dout is None else np.asarray(dout, dtype=np.float64)
    steps, _ = layer_steps(layer, x, p, dy, training)
    name = shown_spec(layer)
    mode = f", {'training' if training else 'eval'} mode" if layer.kind in ("batchnorm", "dropout") else ""
    head = f"{name} ({'×'.join(map(str, x.shape))} → {'×'.join(map(str, dy.shape))}{mode})"
    ex = Explanation(title or f"Backprop through {name}",
                     intro or (f"One {name} layer on the given x and dy = ∂J/∂out; 'hand' is "
                               "handimpl.layers, 'torch' autograd (float64).",),
                     (Section(head, "", tuple(steps)),))
    return ex if format is None else RENDERERS[format](ex)
