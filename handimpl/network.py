"""The multilayer perceptron and its backward pass: the δ recursion, line for line.

The tutorial writes one example as a column vector, z⁽ˡ⁾ = W⁽ˡ⁾a⁽ˡ⁻¹⁾ + b⁽ˡ⁾.
Here a batch of m examples is stacked as the rows of A⁽ˡ⁻¹⁾ (m, n_{l-1}), so
the same equation applied to every row i reads

    Z⁽ˡ⁾[i] = (W⁽ˡ⁾ A⁽ˡ⁻¹⁾[i]ᵀ)ᵀ + b⁽ˡ⁾ = A⁽ˡ⁻¹⁾[i] W⁽ˡ⁾ᵀ + b⁽ˡ⁾,   i.e.   Z⁽ˡ⁾ = A⁽ˡ⁻¹⁾W⁽ˡ⁾ᵀ + b⁽ˡ⁾,

with W⁽ˡ⁾ of shape (n_l, n_{l-1}), exactly torch.nn.Linear.weight. Transposing
the tutorial's backward equations the same way gives the lines of ``backprop``:
δ⁽ˡ⁾ is (m, n_l) and its row i is the tutorial's δ⁽ˡ⁾ for example i (already
carrying the loss's 1/m), so summing the per-example δ⁽ˡ⁾a⁽ˡ⁻¹⁾ᵀ over the batch
is the single product δ⁽ˡ⁾ᵀA⁽ˡ⁻¹⁾.

Layers are numbered as in the tutorial, l = 1…L, with a⁽⁰⁾ = x. Lists below are
indexed the same way (index 0 of ``W``, ``b``, ``z`` is unused).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .activations import ACTIVATIONS
from .losses import LOSSES

Array = np.ndarray
Params = Sequence[tuple[Array, "Array | None"]]


def _check_inputs(spec: Any, params: Params, x: Array) -> np.dtype:
    dtype = np.dtype(spec.dtype)
    L = len(spec.widths) - 1
    if len(params) != L or len(spec.activations) != L:
        raise ValueError(f"spec has {L} layers but {len(params)} parameter pairs "
                         f"and {len(spec.activations)} activations")
    if x.dtype != dtype:
        raise TypeError(f"x is {x.dtype}, the spec asks for {dtype}")
    for l, (W, b) in enumerate(params, start=1):
        want = (spec.widths[l], spec.widths[l - 1])
        if W.shape != want or W.dtype != dtype:
            raise ValueError(f"W{l} is {W.shape} {W.dtype}, expected {want} {dtype}")
        if (b is None) == bool(spec.bias):
            raise ValueError(f"b{l} is {'missing' if b is None else 'present'} but bias={spec.bias}")
    return dtype


def split_loss_kwargs(spec: Any) -> tuple[str, dict]:
    """(reduction, the loss's own options) from spec.loss_kwargs."""
    opts = dict(spec.loss_kwargs)
    return opts.pop("reduction", "mean"), opts


def forward(spec: Any, params: Params, x: Array) -> tuple[list, list]:
    """z⁽ˡ⁾ = a⁽ˡ⁻¹⁾W⁽ˡ⁾ᵀ + b⁽ˡ⁾ and a⁽ˡ⁾ = f⁽ˡ⁾(z⁽ˡ⁾) for l = 1…L. Returns (zs, activations),
    both indexed 0…L (zs[0] is None, activations[0] is x)."""
    _check_inputs(spec, params, x)
    zs: list = [None]
    activations: list = [x]
    for (W, b), name in zip(params, spec.activations):
        z = activations[-1] @ W.T                                  # z⁽ˡ⁾ = a⁽ˡ⁻¹⁾W⁽ˡ⁾ᵀ
        if b is not None:
            z = z + b                                              #       + b⁽ˡ⁾
        zs.append(z)
        activations.append(ACTIVATIONS[name].f(z))                 # a⁽ˡ⁾ = f(z⁽ˡ⁾)
    return zs, activations


def backprop(spec: Any, params: Params, x: Array, y: Array) -> dict[str, Any]:
    """One forward and backward pass.

    Parameters
    ----------
    spec : object with ``widths`` (n₀…n_L), ``activations`` (L names),
        ``loss`` (name), ``loss_kwargs`` (dict, may hold 'reduction'),
        ``bias`` (bool) and ``dtype`` ('float32' | 'float64').
    params : list of L pairs (W⁽ˡ⁾ (n_l, n_{l-1}), b⁽ˡ⁾ (n_l,) or None).
    x : (m, n₀) array; y : the loss's target.

    Returns
    -------
    dict with ``loss`` (float) and, for l = 1…L, ``z{l}``, ``a{l}``,
    ``delta{l}`` = ∂J/∂z⁽ˡ⁾ (m, n_l), ``dW{l}``, ``db{l}`` (with bias), and ``dx``.
    """
    L = len(spec.widths) - 1
    f = [None] + [ACTIVATIONS[name] for name in spec.activations]
    loss = LOSSES[spec.loss]
    reduction, opts = split_loss_kwargs(spec)
    W = [None] + [Wl for Wl, _ in params]
    zs, a = forward(spec, params, x)

    J = loss.value(a[L], y, reduction, **opts)
    delta = [None] * (L + 1)
    nabla_w = [None] * (L + 1)
    nabla_b = [None] * (L + 1)
    dJ_da = loss.grad(a[L], y, reduction, **opts)                  # ∂J/∂a⁽ᴸ⁾
    delta[L] = f[L].vjp(zs[L], a[L], dJ_da)                        # δ⁽ᴸ⁾ = ∂J/∂a⁽ᴸ⁾ ⊙ f′(z⁽ᴸ⁾)
    for l in range(L, 0, -1):
        if l < L:
            delta[l] = f[l].vjp(zs[l], a[l], delta[l + 1] @ W[l + 1])  # δ⁽ˡ⁾ = (δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾) ⊙ f′(z⁽ˡ⁾)
        nabla_w[l] = delta[l].T @ a[l - 1]                         # ∂J/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀa⁽ˡ⁻¹⁾
        nabla_b[l] = delta[l].sum(axis=0)                          # ∂J/∂b⁽ˡ⁾ = Σ_rows δ⁽ˡ⁾
    dx = delta[1] @ W[1]                                           # ∂J/∂x = δ⁽¹⁾W⁽¹⁾

    out: dict[str, Any] = {"loss": float(J)}
    for l in range(1, L + 1):
        out[f"z{l}"], out[f"a{l}"], out[f"delta{l}"] = zs[l], a[l], delta[l]
        out[f"dW{l}"] = nabla_w[l]
        if spec.bias:
            out[f"db{l}"] = nabla_b[l]
    out["dx"] = dx
    return out


def sgd_step(params: Params, grads: dict[str, Any], lr: float) -> list:
    """The tutorial's step 4: W := W - η ∂J/∂W, b := b - η ∂J/∂b (new arrays, params untouched)."""
    new = []
    for l, (W, b) in enumerate(params, start=1):
        W_new = W - lr * grads[f"dW{l}"]                           # W⁽ˡ⁾ := W⁽ˡ⁾ - η ∂J/∂W⁽ˡ⁾
        b_new = None if b is None else b - lr * grads[f"db{l}"]    # b⁽ˡ⁾ := b⁽ˡ⁾ - η ∂J/∂b⁽ˡ⁾
        new.append((W_new, b_new))
    return new
