"""A priori rounding bounds: how far any correct evaluation of a traced tensor may land.

For every tensor the harness traces, ``a_priori`` computes a componentwise bound E on
|v - v*|, v* the exact result on the case's (dtype-rounded) parameters and data, v what a
correct implementation computes in the case's dtype, in any evaluation order: batch-major
products, one example at a time, einsum, sequential or pairwise sums, float32
accumulation. The bound is computed from magnitudes alone, the float64 reference's |W|,
|a|, |δ| and the terms each step sums, and carried from bound to bound through the
network; never from the differences an implementation shows (docs/verdict.md).

    step                          E of the result (γ_n = (n + 2)·u, u the unit roundoff)
    z⁽ˡ⁾ = a⁽ˡ⁻¹⁾W⁽ˡ⁾ᵀ + b⁽ˡ⁾      E_a⁽ˡ⁻¹⁾|W⁽ˡ⁾|ᵀ + γ_{n_{l-1}} ((|a⁽ˡ⁻¹⁾| + E_a)|W⁽ˡ⁾|ᵀ + |b⁽ˡ⁾|)
    a⁽ˡ⁾ = f(z⁽ˡ⁾)                f's spread over [z - E_z, z + E_z] + LIBRARY_ULPS·u·Σ|terms of f|
    J                             Σ sup|∂ℓ/∂a|·E_a / N + rounding of the terms and the sum
    ∂J/∂a⁽ᴸ⁾                      ∂ℓ/∂a's spread over a's interval + its rounding
    g = δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾               E_δ⁽ˡ⁺¹⁾|W⁽ˡ⁺¹⁾| + γ_{n_{l+1}} (|δ⁽ˡ⁺¹⁾| + E_δ)|W⁽ˡ⁺¹⁾|
    δ⁽ˡ⁾ = g ⊙ f′(z⁽ˡ⁾)           E_g·sup|f′| + |g|·(f′'s spread over z's and a's intervals)
                                  + LIBRARY_ULPS·u·|g|·Σ|terms of f′|  (a kink inside z's
                                  interval puts one end on each side: the jump is allowed)
    ∂J/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀa⁽ˡ⁻¹⁾         E_δᵀ(|a| + E_a) + |δ|ᵀE_a + γ_m (|δ| + E_δ)ᵀ(|a| + E_a)   (the
                                  product term counts where a kink makes E_δ as large as δ itself)
    ∂J/∂b⁽ˡ⁾ = Σ_rows δ⁽ˡ⁾         Σ E_δ + γ_m Σ(|δ| + E_δ)
    ∂J/∂x = δ⁽¹⁾W⁽¹⁾              E_δ⁽¹⁾|W⁽¹⁾| + γ_{n₁} (|δ⁽¹⁾| + E_δ)|W⁽¹⁾|
    W - η∂J/∂W                    η E_∂W + 3u (|W| + η(|∂J/∂W| + E_∂W))

Every rounding term is of the values an implementation holds, the reference's magnitude plus
its bound (|x| + E_x), not of the reference's alone: an allowance a correct value can meet
exactly must leave room for the rounding of that value.

The activation's and the loss's own parts (their spreads, the magnitudes of their terms,
the row-wise softmax family) are methods of those objects in handimpl (Activation.
forward_error and vjp_error, Loss.value_error and grad_error).

``local_steps`` is the same arithmetic applied to one step alone, on the implementation's
own inputs with no error carried in: the test of whether a tensor that differs only
inherits its difference (verify.core.verdict).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.activations import LIBRARY_ULPS
from handimpl.network import split_loss_kwargs
from handimpl.rounding import (
    activation_error,
    backward_error,
    bias_grad_error,
    delta_error,
    gamma,
    linear_error,
    not_exact,
    underflow,
    update_error,
    weight_grad_error,
)
from verify.core.compare import UNIT_ROUNDOFF, split_name

__all__ = ["a_priori", "activation_error", "backward_error", "bias_grad_error", "delta_error", "gamma",
           "has_textbook", "linear_error", "local_steps", "output_delta_error", "underflow", "update_error",
           "weight_grad_error"]

def _f64(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _target(y: np.ndarray) -> np.ndarray:
    return y if y.dtype == np.int64 else _f64(y)


def functions(spec: Any, textbook: bool = False) -> tuple[list, Any]:
    """The case's activations (indexed 1…L, [0] None) and its loss; with ``textbook``, each
    one's textbook view, whose error model also covers its documented formulas as written
    (handimpl.textbook: the textbook allowance, docs/verdict.md)."""
    acts = [None] + [ACTIVATIONS[name] for name in spec.activations]
    loss = LOSSES[spec.loss]
    if textbook:
        return [None] + [act.textbook_view for act in acts[1:]], loss.textbook_view
    return acts, loss


def has_textbook(spec: Any) -> bool:
    """Whether any of the case's activations or its loss declares a textbook form."""
    return bool(LOSSES[spec.loss].textbook) or any(ACTIVATIONS[name].textbook for name in spec.activations)


def a_priori(spec: Any, case: Any, ref: dict, lr: float, textbook: bool = False) -> dict[str, np.ndarray]:
    """E for every traced tensor, from the float64 reference trace ``ref``'s magnitudes; with
    ``textbook``, the textbook allowance: the same bounds for evaluations that may also take
    each function's documented formula as written (``functions``)."""
    u, tiny = UNIT_ROUNDOFF[spec.dtype], underflow(spec.dtype)
    L = spec.depth
    W = [None] + [_f64(Wl) for Wl, _ in case.params]
    absW = [None] + [np.abs(Wl) for Wl in W[1:]]
    absb = [None] + [0.0 if b is None else np.abs(_f64(b)) for _, b in case.params]
    Z = [None] + [_f64(ref[f"z{l}"]) for l in range(1, L + 1)]
    A = [_f64(case.x)] + [_f64(ref[f"a{l}"]) for l in range(1, L + 1)]
    absA = [np.abs(a) for a in A]
    D = [None] + [_f64(ref[f"delta{l}"]) for l in range(1, L + 1)]
    absD = [None] + [np.abs(d) for d in D[1:]]
    acts, loss = functions(spec, textbook)
    reduction, opts = split_loss_kwargs(spec)
    y = _target(case.y)
    out: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        Ea: list = [np.zeros_like(A[0])]
        Ez: list = [None]
        ends: list = [None]          # f at z and at the ends of z's interval, for both passes
        moving: list = [None]
        for l in range(1, L + 1):
            Ez.append(linear_error(absA[l - 1], Ea[l - 1], absW[l], absb[l], u, tiny))
            ends.append(acts[l].ends(Z[l], Ez[l]) if acts[l].elementwise else None)
            moving.append(not_exact(acts[l], Z[l], Ez[l]))
            Ea.append(activation_error(acts[l], Z[l], A[l], Ez[l], u, tiny, ends[l], moving[l]))
            out[f"z{l}"], out[f"a{l}"] = Ez[l], Ea[l]
        out["loss"] = loss.value_error(A[L], y, Ea[L], u, reduction, **opts)
        g = loss.grad(A[L], y, reduction, **opts)
        Ed: list = [None] * (L + 2)
        for l in range(L, 0, -1):
            if l == L and acts[l].elementwise and loss.elementwise:
                Ed[l] = output_delta_error(acts[l], loss, Z[l], A[l], y, Ez[l], Ea[l], u, reduction, opts,
                                           ends[l], g) + (1 + np.abs(g)) * tiny * moving[l]
            else:
                if l == L:
                    Eg = loss.grad_error(A[L], y, Ea[L], u, reduction, **opts) + tiny
                else:
                    g = D[l + 1] @ W[l + 1]
                    Eg = backward_error(absD[l + 1], Ed[l + 1], absW[l + 1], u, tiny)
                Ed[l] = delta_error(acts[l], Z[l], A[l], g, Ez[l], Ea[l], Eg, u, tiny, ends[l], moving[l])
            out[f"delta{l}"] = Ed[l]
            out[f"dW{l}"] = weight_grad_error(absD[l], Ed[l], absA[l - 1], Ea[l - 1], u, tiny)
            out[f"W{l}_after"] = update_error(absW[l], out[f"dW{l}"], lr, np.abs(_f64(ref[f"dW{l}"])), u)
            if spec.bias:
                out[f"db{l}"] = bias_grad_error(absD[l], Ed[l], u, tiny)
                out[f"b{l}_after"] = update_error(absb[l], out[f"db{l}"], lr, np.abs(_f64(ref[f"db{l}"])), u)
        out["dx"] = backward_error(absD[1], Ed[1], absW[1], u, tiny)
    return _all_usable(out)


# Widest z interval, relative to |z| + 1, over which reading the composition ∂J/∂a(f(z))·f′(z)
# at its ends and kinks is taken as its largest move (it is not where the composition turns
# inside); wider ones are also bounded factor by factor (docs/verdict.md).
COMPOSITION_WIDTH = 1e-4


def output_delta_error(act: Any, loss: Any, z: np.ndarray, a: np.ndarray, y: np.ndarray, Ez: np.ndarray,
                       Ea: np.ndarray, u: float, reduction: str, opts: dict, ends: Any,
                       g: np.ndarray) -> np.ndarray:
    """E of δ⁽ᴸ⁾ = ∂J/∂a ⊙ f′(z) for an elementwise activation and loss, where each element
    depends on its own z alone: the composition read at the ends of z's interval (a = f(z)
    with it) and of a's (for derivatives taken from the output), plus a kink inside, plus the
    rounding of ∂J/∂a and of f′. Bounding the two factors apart would multiply a clamped
    gradient read at one end (1e12 for binary_cross_entropy at a = 1) by f′ read at the other,
    so that is done only where z's interval is wider than COMPOSITION_WIDTH, where the
    composition may turn inside it: there the larger of the two is taken. ``ends`` is
    act.ends(z, Ez) and ``g`` the ∂J/∂a at a."""
    lo, hi = act.range
    low, high = loss.domain(**opts)
    lo, hi = max(lo, low), min(hi, high)

    def held(aa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """a value of a, clipped to where both f and the loss are defined, and ∂J/∂a there."""
        aa = aa if (lo, hi) == (-np.inf, np.inf) else np.clip(aa, lo, hi)
        return aa, loss.grad(aa, y, reduction, **opts)

    at_a = [held(aa) for aa in (a, a - Ea, a + Ea)]     # a and the two ends of its interval
    here = act.vjp(z, *at_a[0])
    fprime = act.df(z, a)
    zero = np.zeros_like(a)
    g_rounding = loss.grad_error(a, y, zero, u, reduction, **opts)
    # the ∂J/∂a an implementation holds: read anywhere in a's interval, then rounded
    held_g = functools.reduce(np.maximum, [np.abs(gg) for _, gg in at_a]) + g_rounding
    v, fv = ends
    moved = [np.abs(act.vjp(zz, *held(ff)) - here) for zz, ff in zip(v[1:], fv[1:])]  # f at the ends of
    moved += [np.abs(act.vjp(z, *aa_gg) - here) for aa_gg in at_a[1:]]               # z's interval, then a's
    moved.append(held_g * act.kink_jumps(z, Ez, fprime))   # the jump scales with the g it multiplies
    moved = functools.reduce(np.maximum, moved)
    abs_fprime = np.abs(fprime)
    rounding = abs_fprime * g_rounding + held_g * (
        LIBRARY_ULPS * u * act.df_terms(z, a) + act.reference_df_bar(z, abs_fprime))
    E = np.where((Ez > 0) | (Ea > 0), moved, 0.0) + rounding
    wide = Ez > COMPOSITION_WIDTH * (np.abs(z) + 1)
    if wide.any():
        apart = act.vjp_error(z, a, g, Ez, Ea, loss.grad_error(a, y, Ea, u, reduction, **opts), u, ends=ends)
        E = np.where(wide, np.maximum(E, apart), E)
    return E


def _usable(E: Any) -> np.ndarray:
    """A bound that came out non-finite (an overflowing reference, 0·∞) bounds nothing: such
    elements are allowed no difference beyond the floor (non-finite values must match). The
    choice is strict: it can only fail a correct result there, never pass a wrong one."""
    E = _f64(E)
    return np.where(np.isfinite(E), E, 0.0)


BIG_CASE = 2**16        # traced values from which a case's bounds are checked array by array


def _all_usable(bounds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """_usable of each of a case's bounds (float64 arrays): almost always all of them are finite,
    which one check over their concatenation shows (a small case's), or the sum of each (a big
    one's: finite exactly when every term is, but for an overflow, which the elementwise test then
    settles, and nothing copied), and then each is usable as it is."""
    values = bounds.values()
    if sum(getattr(E, "size", 1) for E in values) < BIG_CASE:
        finite = np.isfinite(np.concatenate(list(values), axis=None)).all()
    else:
        finite = all(np.isfinite(np.add.reduce(E, axis=None)) or np.isfinite(E).all() for E in values)
    if finite:
        return bounds
    return {name: _usable(E) for name, E in bounds.items()}


# -- one step alone, on the implementation's own inputs ------------------------------------

Step = tuple[np.ndarray, np.ndarray]          # (the step's float64 result, its rounding bound)


def local_steps(spec: Any, case: Any, hand: dict, lr: float, names: set[str],
                textbook: bool = False) -> dict[str, Step]:
    """For each tensor in ``names``: its step recomputed in float64 from the implementation's
    own inputs, and how far a correct evaluation of that step alone may land (``textbook``: as
    for a_priori). A tensor whose inputs the implementation did not return (or returned
    unusable) is left out."""
    u, tiny = UNIT_ROUNDOFF[spec.dtype], underflow(spec.dtype)
    L, n = spec.depth, spec.widths
    acts, loss = functions(spec, textbook)
    reduction, opts = split_loss_kwargs(spec)
    y = _target(case.y)
    W = [None] + [_f64(Wl) for Wl, _ in case.params]
    b = [None] + [None if bl is None else _f64(bl) for _, bl in case.params]
    m = case.x.shape[0]
    shapes = {f"a{l}": (m, n[l]) for l in range(1, L + 1)}
    shapes.update({f"z{l}": (m, n[l]) for l in range(1, L + 1)})
    shapes.update({f"delta{l}": (m, n[l]) for l in range(1, L + 1)})
    shapes.update({f"dW{l}": (n[l], n[l - 1]) for l in range(1, L + 1)})
    shapes.update({f"db{l}": (n[l],) for l in range(1, L + 1)})

    def own(name: str) -> np.ndarray | None:
        if name == "a0":
            return _f64(case.x)
        v = hand.get(name)
        if not isinstance(v, np.ndarray) or v.shape != shapes[name] or v.dtype.kind != "f":
            return None
        return v.astype(np.float64)

    def linear(l: int) -> Step | None:
        a = own(f"a{l - 1}")
        if a is None:
            return None
        absb = 0.0 if b[l] is None else np.abs(b[l])
        return (a @ W[l].T + (0.0 if b[l] is None else b[l]),
                linear_error(np.abs(a), np.zeros_like(a), np.abs(W[l]), absb, u, tiny))

    def activation(l: int) -> Step | None:
        z = own(f"z{l}")
        if z is None:
            return None
        f = acts[l]
        a = f.f(z)
        return a, activation_error(f, z, a, np.zeros_like(z), u, tiny)

    def loss_value() -> Step | None:
        a = own(f"a{L}")
        if a is None:
            return None
        return (np.asarray(loss.value(a, y, reduction, **opts)),
                loss.value_error(a, y, np.zeros_like(a), u, reduction, **opts))

    def delta(l: int) -> Step | None:
        z, a = own(f"z{l}"), own(f"a{l}")
        if z is None or a is None:
            return None
        if l == L:
            g = loss.grad(a, y, reduction, **opts)
            Eg = loss.grad_error(a, y, np.zeros_like(a), u, reduction, **opts) + tiny
        else:
            d = own(f"delta{l + 1}")
            if d is None:
                return None
            g = d @ W[l + 1]
            Eg = backward_error(np.abs(d), np.zeros_like(d), np.abs(W[l + 1]), u, tiny)
        f = acts[l]
        zero = np.zeros_like(z)
        return f.vjp(z, a, g), delta_error(f, z, a, g, zero, zero, Eg, u, tiny)

    def weight_grad(l: int) -> Step | None:
        d, a = own(f"delta{l}"), own(f"a{l - 1}")
        if d is None or a is None:
            return None
        return d.T @ a, weight_grad_error(np.abs(d), np.zeros_like(d), np.abs(a), np.zeros_like(a), u, tiny)

    def input_grad() -> Step | None:
        d = own("delta1")
        if d is None:
            return None
        return d @ W[1], backward_error(np.abs(d), np.zeros_like(d), np.abs(W[1]), u, tiny)

    def bias_grad(l: int) -> Step | None:
        d = own(f"delta{l}")
        return None if d is None else (d.sum(axis=0), bias_grad_error(np.abs(d), np.zeros_like(d), u, tiny))

    def update(p: str, l: int) -> Step | None:
        grad = own(f"d{p}{l}")
        if grad is None:
            return None
        before = W[l] if p == "W" else b[l]
        return before - lr * grad, update_error(np.abs(before), 0.0, lr, np.abs(grad), u)

    out: dict[str, Step] = {}
    with np.errstate(all="ignore"):
        for name in names:
            quantity, l = split_name(name)
            if quantity == "z":
                step = linear(l)
            elif quantity == "a":
                step = activation(l)
            elif name == "loss":
                step = loss_value()
            elif quantity == "delta":
                step = delta(l)
            elif quantity == "dW":
                step = weight_grad(l)
            elif quantity == "db":
                step = bias_grad(l)
            elif name == "dx":
                step = input_grad()
            elif quantity in ("W_after_step", "b_after_step"):
                step = update(quantity[0], l)
            else:
                step = None
            if step is not None:
                out[name] = step
    return out

