"""The backward pass, layer L down to 1: each δ formula next to the autograd node that computes it.

For every layer: ∂J/∂a⁽ˡ⁾ (from the loss at l = L, from the layer above
otherwise), δ⁽ˡ⁾ = ∂J/∂a⁽ˡ⁾ ⊙ f′(z⁽ˡ⁾), ∂J/∂W⁽ˡ⁾ and ∂J/∂b⁽ˡ⁾; the hand value
from handimpl.backprop, torch's value of the same tensor (z.grad, a.grad,
W.grad, b.grad) and their difference.
"""
from __future__ import annotations

from handimpl import ACTIVATIONS, LOSSES
from verify.explain.graph import TorchRun, sup
from verify.explain.steps import Section, Step, compared


def derivative(name: str) -> str:
    """f′ as the activation displays it (its row Jacobian for softmax and log_softmax)."""
    return ACTIVATIONS[name].derivative


def loss_grad_formula(spec) -> str:
    text = LOSSES[spec.loss].grad_formula
    if spec.reduction == "sum":
        text += "   [reduction=sum: N = 1]"
    return text


def _act_nodes(spec, run: TorchRun, l: int) -> tuple[str, ...]:
    names = run.act_nodes[l]
    name = spec.activations[l - 1]
    if not names:
        return (f"(no node: {name} adds none, so δ{sup(l)} = ∂J/∂a{sup(l)} is z{sup(l)}.grad)",)
    return tuple(f"{n} → ⊙ {derivative(name)}" if i == 0 else n for i, n in enumerate(names))


def _delta_formula(spec, l: int) -> str:
    L = spec.depth
    elementwise = ACTIVATIONS[spec.activations[l - 1]].elementwise
    src = "∂J/∂a⁽ᴸ⁾" if l == L else f"(W{sup(l + 1)})ᵀδ{sup(l + 1)}"
    if elementwise:
        return f"δ{sup(l)} = {src} ⊙ f′(z{sup(l)})"
    return f"δ{sup(l)} = {src} · ∂a{sup(l)}/∂z{sup(l)}   (a Jacobian-vector product, per row)"


def forward_section(spec, hand: dict, run: TorchRun) -> Section:
    L = spec.depth
    steps = []
    for l in range(1, L + 1):
        a_prev, A_prev = ("x", "X") if l == 1 else (f"a{sup(l - 1)}", f"A{sup(l - 1)}")
        steps.append(Step(
            f"z{sup(l)} = W{sup(l)}{a_prev} + b{sup(l)}   (rows: Z{sup(l)} = {A_prev}W{sup(l)}ᵀ + b{sup(l)})",
            values=(("hand", hand[f"z{l}"]), ("torch", run.z[l])), diffs=compared(hand[f"z{l}"], run.z[l])))
        steps.append(Step(
            f"a{sup(l)} = {spec.activations[l - 1]}(z{sup(l)})",
            values=(("hand", hand[f"a{l}"]), ("torch", run.a[l])), diffs=compared(hand[f"a{l}"], run.a[l])))
    steps.append(Step(f"J = {spec.loss}(a{sup(L)}, y)", values=(("hand", hand["loss"]), ("torch", run.loss)),
                      diffs=compared(hand["loss"], run.loss)))
    return Section("Forward pass", "Each row of A is one example; the tutorial's column formulas, "
                   "transposed, give the row formulas torch's nn.Linear uses.", tuple(steps))


def graph_section(spec, run: TorchRun) -> Section:
    """The nodes torch built, filed by the part of the network they belong to."""
    lines = [f"loss: {' → '.join(run.loss_nodes)}"]
    for l in range(spec.depth, 0, -1):
        lin = run.linear[l]
        act = " → ".join(run.act_nodes[l]) or f"(none: {spec.activations[l - 1]})"
        parts = [f"W: {' → '.join(lin.to_W)}"] + ([f"b: {' → '.join(lin.to_b)}"] if lin.to_b else [])
        down = (f" → layer {l - 1}" if l > 1 else " → x") if lin.to_input else ""
        lines.append(f"layer {l}: {act} → {lin.node} [{'; '.join(parts)}]{down}")
    return Section("The graph torch built", "Walking J.grad_fn and its next_functions, every node filed "
                   "under the loss, a layer's activation (between a⁽ˡ⁾ and z⁽ˡ⁾) or its linear map; "
                   "AccumulateGrad nodes are matched to W⁽ˡ⁾ and b⁽ˡ⁾ by the identity of their .variable.",
                   (Step("J.grad_fn, then next_functions, layer L down to 1", nodes=tuple(lines)),))


def layer_steps(spec, params, hand: dict, run: TorchRun, l: int) -> list[Step]:
    L = spec.depth
    steps = []
    if l == L:
        dJ_da = hand.get("dJ_da")
        steps.append(Step(loss_grad_formula(spec),
                          nodes=tuple(f"{n}" for n in run.loss_nodes[:-1]) +
                          (f"{run.loss_nodes[-1]} → ∂J/∂a⁽ᴸ⁾",) if run.loss_nodes else (),
                          values=(("hand", dJ_da), ("torch", run.dJ_da[l])), diffs=compared(dJ_da, run.dJ_da[l]),
                          note="torch: a⁽ᴸ⁾.grad, the gradient the loss nodes hand to the activation."))
    else:
        W_next = params[l][0]
        up = hand[f"delta{l + 1}"] @ W_next
        lin = run.linear[l + 1]
        steps.append(Step(f"∂J/∂a{sup(l)} = (W{sup(l + 1)})ᵀδ{sup(l + 1)}   (rows: δ{sup(l + 1)}W{sup(l + 1)})",
                          nodes=(f"{lin.node} → δ{sup(l + 1)}W{sup(l + 1)} towards layer {l}",),
                          values=(("hand", up), ("torch", run.dJ_da[l])), diffs=compared(up, run.dJ_da[l]),
                          note=f"torch: a{sup(l)}.grad, what {lin.node} of layer {l + 1} passes down."))
    steps.append(Step(_delta_formula(spec, l), nodes=_act_nodes(spec, run, l),
                      values=(("hand", hand[f"delta{l}"]), ("torch", run.delta[l])),
                      diffs=compared(hand[f"delta{l}"], run.delta[l]), note=f"torch: z{sup(l)}.grad."))
    lin = run.linear[l]
    a_prev = "x" if l == 1 else f"a{sup(l - 1)}"
    w_nodes = (f"{lin.node} → {a_prev}ᵀδ{sup(l)}, the gradient of W{sup(l)}ᵀ (summed over the batch)",) + \
        tuple(f"{n} → δ{sup(l)}ᵀ{a_prev}" if n.startswith("T") else n for n in lin.to_W)
    steps.append(Step(f"∂J/∂W{sup(l)} = δ{sup(l)}{a_prev}ᵀ   (rows: δ{sup(l)}ᵀA{sup(l - 1)} = Σᵢ δᵢ{a_prev}ᵢᵀ)",
                      nodes=w_nodes, values=(("hand", hand[f"dW{l}"]), ("torch", run.dW[l])),
                      diffs=compared(hand[f"dW{l}"], run.dW[l])))
    if spec.bias:
        steps.append(Step(f"∂J/∂b{sup(l)} = δ{sup(l)}   (rows: Σᵢ δ{sup(l)}ᵢ)",
                          nodes=(f"{lin.node} → Σᵢ δ{sup(l)}ᵢ",) + lin.to_b,
                          values=(("hand", hand[f"db{l}"]), ("torch", run.db[l])),
                          diffs=compared(hand[f"db{l}"], run.db[l])))
    if l == 1:
        steps.append(Step("∂J/∂x = (W⁽¹⁾)ᵀδ⁽¹⁾   (rows: δ⁽¹⁾W⁽¹⁾)",
                          nodes=(f"{lin.node} → δ⁽¹⁾W⁽¹⁾ towards x",),
                          values=(("hand", hand["dx"]), ("torch", run.dx)), diffs=compared(hand["dx"], run.dx),
                          note="torch: x.grad. The same product that passes δ down to every other layer, "
                               "one step further: to the input."))
    return steps


def backward_sections(spec, params, hand: dict, run: TorchRun) -> list[Section]:
    sections = []
    for l in range(spec.depth, 0, -1):
        act = spec.activations[l - 1]
        head = f"Layer {l} of {spec.depth} ({act}, {spec.widths[l - 1]} → {spec.widths[l]})"
        sections.append(Section(head, "", tuple(layer_steps(spec, params, hand, run, l))))
    return sections
