"""The rounding error model of each elementary step, shared by the dense network's bounds
(verify.core.bounds) and the layer classes' error models (handimpl.layers): how far a correct
evaluation of the step in a dtype of unit roundoff u may land from the exact result, computed
in float64 from the magnitudes of its inputs and their own bounds (docs/verdict.md). Every
rounding term is of the values an implementation holds (|x| + E_x)."""
from __future__ import annotations

from typing import Any

import numpy as np

STEP_ULPS = 3          # W - η·∂J/∂W: one product, one difference, one rounding of η


def underflow(dtype: str) -> float:
    """What one elementwise step may lose outright near the bottom of the dtype's range: 2⁸
    times its smallest normal number. Results below it may come out 0 or subnormal (z·σ(z)
    at z = -89 in float32 is 0 when e^{89} overflows first, where the exact value is 4e-37)."""
    return float(np.finfo(dtype).tiny) * 2.0**8


def gamma(n: Any, u: float) -> Any:
    """γ_n with room for the bias's addition and the final rounding: (n + 2)·u."""
    return (n + 2) * u


# Products of fewer multiply-adds than this are computed even where E is all 0: on small arrays the
# test costs as much as the product.
SKIP_ZERO_PRODUCTS = 2**16


def spread_product(E: np.ndarray, M: np.ndarray, error_left: bool = True) -> np.ndarray:
    """E @ M (``error_left``) or M @ E, E an error bound and M a magnitude (both >= 0): exact
    zeros, without the product, where E is all 0 (a step's inputs held exactly: the network's x,
    or every input of local_steps) and M finite, which is what the product gives there (each
    term 0·M is +0 and so is their sum; a non-finite M gives NaN, so it is multiplied as is).
    On a big layer this is a whole matrix product saved for nothing."""
    if E.ndim != 2 or M.ndim != 2 or E.size * M.shape[1 if error_left else 0] < SKIP_ZERO_PRODUCTS \
            or E.any() or not np.isfinite(M).all():
        return E @ M if error_left else M @ E
    shape = (E.shape[0], M.shape[1]) if error_left else (M.shape[0], E.shape[1])
    return np.zeros(shape, dtype=np.result_type(E, M))


# Arrays from this many elements have a step's expression evaluated in place (_in_place); on
# smaller ones the fresh temporaries cost nothing and the calls with out= cost more.
IN_PLACE = 2**15


def _in_place(first: Any, *values: Any) -> bool:
    """Whether every value is a float64 array of one shape, of IN_PLACE elements or more, so
    that a step's expression may be evaluated in place (out=), in a buffer or two instead of a
    fresh array per operation, with the same roundings in the same order as written: each
    operation is one IEEE operation on each element either way, and a sum or product of two
    terms is the same whichever is written first. Anything else (a scalar, another dtype, whose
    promotion an in-place step would change, a broadcast, a small array) takes the expression
    as written."""
    return type(first) is np.ndarray and first.size >= IN_PLACE and first.dtype == np.float64 and all(
        type(v) is np.ndarray and v.dtype == np.float64 and v.shape == first.shape for v in values)


# -- the steps: E of each step's result from its inputs' magnitudes and errors -----------------
# a_priori carries errors through all of them; local_steps calls each with its inputs exact.

def linear_error(absA: np.ndarray, Ea: np.ndarray, absW: np.ndarray, absb: Any, u: float,
                 tiny: float) -> np.ndarray:
    """z = aWᵀ + b: E_a|W|ᵀ + γ_n((|a| + E_a)|W|ᵀ + |b|) (the rounding is of the a an
    implementation holds), and n underflows where the terms are not all 0."""
    n = absW.shape[1]
    spread = spread_product(Ea, absW.T)
    terms = absA @ absW.T + absb
    if terms.size < IN_PLACE or not _in_place(spread, terms):
        return spread + gamma(n, u) * (terms + spread) + n * tiny * (terms > 0)
    out = np.add(terms, spread)                     # the same expression, one buffer for its steps
    out *= gamma(n, u)
    out += spread
    return np.add(out, n * tiny, out=out, where=terms > 0)


def activation_error(act: Any, z: np.ndarray, a: np.ndarray, Ez: np.ndarray, u: float,
                     tiny: float, ends: Any = None, moving: np.ndarray | None = None) -> np.ndarray:
    """a = f(z): the activation's own forward_error, and one underflow (an exact 0 in gives an
    exact f(0) out). ``ends`` (act.ends) and ``moving`` (not_exact), where given, are those of
    this z and Ez, computed once for the layer's forward and backward bounds."""
    moving = not_exact(act, z, Ez) if moving is None else moving
    return act.forward_error(z, a, Ez, u, ends) + tiny * moving


def backward_error(absD: np.ndarray, Ed: np.ndarray, absW: np.ndarray, u: float, tiny: float) -> np.ndarray:
    """δW (the g of the layer below, and ∂J/∂x): E_δ|W| + γ_n(|δ| + E_δ)|W|, n the rows of W."""
    n = absW.shape[0]
    spread = spread_product(Ed, absW)
    out = absD @ absW
    if out.size < IN_PLACE or not _in_place(spread, out):
        return spread + gamma(n, u) * (out + spread) + n * tiny
    out += spread                                   # the same expression, in place
    out *= gamma(n, u)
    out += spread
    out += n * tiny
    return out


def delta_error(act: Any, z: np.ndarray, a: np.ndarray, g: np.ndarray, Ez: np.ndarray, Ea: np.ndarray,
                Eg: np.ndarray, u: float, tiny: float, ends: Any = None,
                moving: np.ndarray | None = None) -> np.ndarray:
    """δ = g ⊙ f′(z): the activation's own vjp_error, and an underflow of f′ (times |g|);
    ``ends`` and ``moving`` as for activation_error."""
    moving = not_exact(act, z, Ez) if moving is None else moving
    return act.vjp_error(z, a, g, Ez, Ea, Eg, u, ends) + (1 + np.abs(g)) * tiny * moving


def weight_grad_error(absD: np.ndarray, Ed: np.ndarray, absA: np.ndarray, Ea: np.ndarray, u: float,
                      tiny: float) -> np.ndarray:
    """∂J/∂W = δᵀa: E_δᵀ(|a| + E_a) + |δ|ᵀE_a + γ_m(|δ| + E_δ)ᵀ(|a| + E_a) (the product term
    counts where a kink makes E_δ as large as δ itself; the rounding is of what is held)."""
    m = absD.shape[0]
    spread = spread_product(Ed.T, absA + Ea)
    other = spread_product(Ea, absD.T, error_left=False)
    out = absD.T @ absA
    if out.size < IN_PLACE or not _in_place(spread, other, out):
        spread = spread + other
        return spread + gamma(m, u) * (out + spread) + m * tiny
    spread += other                                 # the same expression, in place
    out += spread
    out *= gamma(m, u)
    out += spread
    out += m * tiny
    return out


def bias_grad_error(absD: np.ndarray, Ed: np.ndarray, u: float, tiny: float) -> np.ndarray:
    """∂J/∂b = Σ_rows δ: Σ E_δ + γ_m Σ(|δ| + E_δ)."""
    m = absD.shape[0]
    spread = Ed.sum(axis=0)
    return spread + gamma(m, u) * (absD.sum(axis=0) + spread) + m * tiny


def accumulation_error(spread: np.ndarray, held: np.ndarray, count: np.ndarray, u: float) -> np.ndarray:
    """A scatter-add (x[i] += v for each term routed to i, from 0): the terms' own errors summed
    (``spread``), and γ_count of the sum of their held magnitudes (``held``, Σ(|v| + E_v)) where
    ``count`` > 1 terms meet: one term added to 0 is exact."""
    return spread + np.where(count > 1, gamma(count, u) * held, 0.0)


def update_error(absP: Any, Egrad: Any, lr: float, abs_grad: np.ndarray, u: float) -> np.ndarray:
    """p - η·grad: η·E_grad + 3u(|p| + η(|grad| + E_grad)): the rounding is of the gradient an
    implementation holds, which at a kink may be a whole jump away from the reference's."""
    if abs_grad.size < IN_PLACE or not _in_place(abs_grad, absP, Egrad):
        return lr * Egrad + STEP_ULPS * u * (absP + lr * (abs_grad + Egrad))
    out = np.add(abs_grad, Egrad)                   # the same expression, two buffers for its steps
    out *= lr
    out += absP
    out *= STEP_ULPS * u
    first = np.multiply(Egrad, lr)
    out += first
    return out


def not_exact(act: Any, z: np.ndarray, Ez: np.ndarray) -> np.ndarray:
    """Where z is not an exact 0 in every evaluation (a row-wise activation: anywhere in the row)."""
    moving = (z != 0) | (Ez > 0)
    return moving if act.elementwise else np.broadcast_to(moving.any(axis=1, keepdims=True), z.shape)
