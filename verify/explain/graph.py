"""Torch's side of an explanation: run the twin once and walk the graph autograd built.

The walk starts at J.grad_fn and follows ``next_functions``. Every node met is
filed under the part of the network it belongs to: the loss, the activation of
layer l (between a⁽ˡ⁾ and z⁽ˡ⁾), or the linear map of layer l (from z⁽ˡ⁾ back to
a⁽ˡ⁻¹⁾, W⁽ˡ⁾ and b⁽ˡ⁾). The nodes are recognised by the tensors they produce: before
the walk, the node that made each z⁽ˡ⁾ and each a⁽ˡ⁾ is tagged in its ``metadata``
(a dict autograd keeps with the node itself), so the walk does not depend on the
order of ``next_functions`` nor on the Python objects that stand for the nodes.
AccumulateGrad nodes are matched to W⁽ˡ⁾ and b⁽ˡ⁾ by the identity of their ``.variable``.
The node names are the ones torch really produced for this spec, in the order met.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from verify.core.spec import NetSpec
from verify.core.twin import forward_twin

SUP = str.maketrans("0123456789L-", "⁰¹²³⁴⁵⁶⁷⁸⁹ᴸ⁻")


def sup(l: Any) -> str:
    """'2' -> '⁽²⁾': the tutorial's layer superscript."""
    return f"⁽{str(l).translate(SUP)}⁾"


@dataclass(frozen=True, eq=False)
class LinearEdges:
    """The linear node of one layer and, for each of its inputs, the node names on the way
    to W⁽ˡ⁾, b⁽ˡ⁾ or the previous layer's output."""
    node: str
    to_W: tuple[str, ...]
    to_b: tuple[str, ...]
    to_input: bool


@dataclass(frozen=True, eq=False)
class TorchRun:
    loss: float
    z: dict            # l -> z⁽ˡ⁾
    a: dict            # l -> a⁽ˡ⁾
    delta: dict        # l -> z⁽ˡ⁾.grad
    dJ_da: dict        # l -> a⁽ˡ⁾.grad
    dW: dict
    db: dict
    dx: np.ndarray     # x.grad = δ⁽¹⁾W⁽¹⁾
    loss_nodes: tuple[str, ...]
    act_nodes: dict    # l -> tuple of node names (empty for identity)
    linear: dict       # l -> LinearEdges


def node_name(node) -> str:
    """The autograd node's class name, as the installed torch calls it (e.g. 'AddmmBackward0')."""
    return type(node).__name__


_name = node_name
_PRODUCES = "verify.produces"     # the node's metadata key: the region of the tensor it made
_SEEN = "verify.seen"


def file_nodes(root, default: Any, key: str = _PRODUCES) -> dict:
    """Every node reachable from ``root``, depth first, filed under the region of the nearest
    node above it tagged ``metadata[key] = region`` (``default`` until one is met), each node once.
    The regions come from the tensors the tagged nodes produced, so the filing does not depend on
    the order of ``next_functions`` nor on the Python objects that stand for the nodes."""
    regions: dict = {}
    walk = object()               # this walk's mark: a node may be met again through another path

    def visit(node, region):
        if node is None or node.metadata.get(_SEEN) is walk:
            return
        node.metadata[_SEEN] = walk
        region = node.metadata.get(key, region)
        regions.setdefault(region, []).append(node)
        for child, _ in node.next_functions:
            visit(child, region)

    visit(root, default)
    return regions


def _walk(J, zs, acts) -> dict:
    """File every node under ('loss',), ('act', l) or ('linear', l), depth first from J."""
    L = len(zs) - 1
    for l in range(1, L + 1):
        if acts[l].grad_fn is not None:
            acts[l].grad_fn.metadata[_PRODUCES] = ("act", l)
        zs[l].grad_fn.metadata[_PRODUCES] = ("linear", l)     # identity: a⁽ˡ⁾ is z⁽ˡ⁾, no node of its own
    return file_nodes(J.grad_fn, ("loss",))


def _edges(node, param_of: dict, layer: int) -> LinearEdges:
    """Follow each input of the linear node down to an AccumulateGrad (W or b) or out of the layer."""
    to_W: tuple = ()
    to_b: tuple = ()
    to_input = False
    for child, _ in node.next_functions:
        path, n = [], child
        while n is not None and _name(n) != "AccumulateGrad" and len(n.next_functions) == 1 \
                and _name(n) in ("TBackward0", "PermuteBackward0", "ViewBackward0"):
            path.append(_name(n))
            n = n.next_functions[0][0]
        if n is not None and _name(n) == "AccumulateGrad" and id(n.variable) in param_of:
            kind = param_of[id(n.variable)]
            path.append(f"AccumulateGrad({kind}{sup(layer)})")
            if kind == "W":
                to_W = tuple(path)
            else:
                to_b = tuple(path)
        elif child is not None:
            to_input = True
    return LinearEdges(_name(node), to_W, to_b, to_input)


def run_torch(spec: NetSpec, params, x, y) -> TorchRun:
    fwd = forward_twin(spec, params, x, y, retain_a=True)       # the twin, z⁽ˡ⁾ and a⁽ˡ⁾ kept
    J, zs, acts = fwd.J, fwd.z, [None] + fwd.a[1:]
    L = spec.depth
    regions = _walk(J, zs, acts)
    J.backward()
    linears = fwd.linears
    linear = {}
    for l, lin in enumerate(linears, start=1):
        param_of = {id(lin.weight): "W"}
        if lin.bias is not None:
            param_of[id(lin.bias)] = "b"
        linear[l] = _edges(zs[l].grad_fn, param_of, l)

    def np_(t):
        return None if t is None else t.detach().numpy().copy()

    return TorchRun(
        loss=J.item(),
        z={l: np_(zs[l]) for l in range(1, L + 1)},
        a={l: np_(acts[l]) for l in range(1, L + 1)},
        delta={l: np_(zs[l].grad) for l in range(1, L + 1)},
        dJ_da={l: np_(acts[l].grad) for l in range(1, L + 1)},
        dW={l: np_(linears[l - 1].weight.grad) for l in range(1, L + 1)},
        db={l: np_(linears[l - 1].bias.grad) for l in range(1, L + 1) if spec.bias},
        dx=np_(fwd.X.grad),
        loss_nodes=tuple(_name(n) for n in regions.get(("loss",), [])),
        act_nodes={l: tuple(_name(n) for n in regions.get(("act", l), [])) for l in range(1, L + 1)},
        linear=linear,
    )
