"""Independent implementations of the backprop contract, for the false-alarm benchmark.

Each style is a function ``backprop(spec, params, x, y)`` with the contract of
``handimpl.backprop`` (README, "Check your own backprop"). They reuse handimpl's activation
and loss objects for f(z), the vector-Jacobian product g·∂a/∂z, J and ∂J/∂a(L), so they
support every activation and loss, but do all the linear algebra and every summation in
their own way, evaluating the sums in a different order from handimpl's batch-major
matrix products (and from torch's):

``STYLES`` (correct; the harness must never flag them)
    handimpl            handimpl.backprop itself, the baseline
    column_loop         the tutorial's notation: one example at a time, column vectors, np.dot
    einsum              batch-major, every product and reduction by np.einsum
    float32_accumulate  one example at a time, every sum an explicit sequential loop
                        in the spec's dtype (float32 for float32 specs)
    pairwise            batch-major products, batch sums by pairwise halving (∂W) and in
                        reversed order (∂b)
    textbook            handimpl's batch-major pass, but every activation and loss that torch's
                        documentation writes with a formula that loses digits is evaluated as
                        that formula is written, with its own code here (α(eᶻ − 1), log(1 + eᶻ),
                        σ = (1 + tanh(z/2))/2, ...): correct, less accurate than torch; the
                        harness must pass it (imprecise), and fail it only in strict mode

``PRECISION_BUGS`` (wrong in float64 by about float32's precision; the harness must catch
them; for float32 specs each returns handimpl's correct result, and says so in
``fn.supports = {"dtypes": ["float64"]}``)
    float32_intermediate              z(1) rounded through float32
    perturbed_dW                      dW1 multiplied by (1 + 1e-6)
    float32_accumulation_in_float64   the batch sums of ∂W accumulated in float32

Every style returns every key (loss, z{l}, a{l}, delta{l}, dW{l}, db{l} with bias, dx).
``variant(fn, full=False)`` keeps only the required keys (loss, dW{l}, db{l} with bias);
the module exposes both variants of each style by name, e.g. ``einsum_full`` and
``einsum_required``, and all of them in ``VARIANTS``.

NumPy and handimpl only (no torch).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

import handimpl
from handimpl import ACTIVATIONS, LOSSES

Array = np.ndarray


# --------------------------------------------------------------------------- shared pieces

def _setup(spec: Any):
    """(L, activation objects indexed 1…L, loss object, reduction, loss options, dtype)."""
    L = len(spec.widths) - 1
    f = [None] + [ACTIVATIONS[name] for name in spec.activations]
    opts = dict(spec.loss_kwargs)
    reduction = opts.pop("reduction", "mean")
    return L, f, LOSSES[spec.loss], reduction, opts, np.dtype(spec.dtype)


def _f_col(act, z: Array) -> Array:
    """a = f(z) for one example held as a column (n, 1). softmax and log_softmax act on the
    feature axis of a row, so they see the example as the row z.T and are transposed back."""
    if act.elementwise:
        return act.f(z)
    return act.f(z.T).T


def _vjp_col(act, z: Array, a: Array, g: Array) -> Array:
    """g·∂a/∂z for one example held as columns (n, 1)."""
    if act.elementwise:
        return act.vjp(z, a, g)
    return act.vjp(z.T, a.T, g.T).T


def _result(spec: Any, L: int, J, z, a, delta, dW, db, dx) -> dict[str, Any]:
    """The contract's dict from lists indexed 1…L (batch-major (m, n_l) arrays)."""
    out: dict[str, Any] = {"loss": float(J)}
    for l in range(1, L + 1):
        out[f"z{l}"], out[f"a{l}"], out[f"delta{l}"] = z[l], a[l], delta[l]
        out[f"dW{l}"] = dW[l]
        if spec.bias:
            out[f"db{l}"] = db[l]
    out["dx"] = dx
    return out


def _stack(columns: list[Array], dtype) -> Array:
    """Per-example columns (n, 1) stacked as the rows of an (m, n) array."""
    return np.concatenate([c.T for c in columns], axis=0).astype(dtype, copy=False)


# --------------------------------------------------------------------------- the correct styles

def column_loop(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """The tutorial's own notation, one example at a time on column vectors.

    Evaluation order: for each example i, a(0) = x[i] as an (n0, 1) column and
    z(l) = np.dot(W(l), a(l-1)) + b(l), a(l) = f(z(l)). ∂J/∂a(L) is taken once for the whole
    batch (the loss couples the examples through its mean), then per example
    δ(L) = vjp(z(L), a(L), ∂J/∂a(L)[i]) and δ(l) = vjp(z(l), a(l), np.dot(W(l+1)ᵀ, δ(l+1))).
    ∂W(l) is a Python-loop sum over the examples, in order, of np.outer(δ(l), a(l-1)); ∂b(l)
    the same sum of δ(l); row i of ∂J/∂x is np.dot(W(1)ᵀ, δ(1)). All in the spec's dtype.
    """
    L, f, loss, reduction, opts, dtype = _setup(spec)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]
    m = x.shape[0]

    z_cols = [[None] * m for _ in range(L + 1)]
    a_cols = [[None] * m for _ in range(L + 1)]
    for i in range(m):
        a_col = x[i][:, None]                                      # a(0) = x_i, (n0, 1)
        a_cols[0][i] = a_col
        for l in range(1, L + 1):
            z_col = np.dot(W[l], a_col)                            # z = W a
            if b[l] is not None:
                z_col = z_col + b[l][:, None]                      #     + b
            a_col = _f_col(f[l], z_col)                            # a = f(z)
            z_cols[l][i], a_cols[l][i] = z_col, a_col

    z = [None] + [_stack(z_cols[l], dtype) for l in range(1, L + 1)]
    a = [x] + [_stack(a_cols[l], dtype) for l in range(1, L + 1)]
    J = loss.value(a[L], y, reduction, **opts)
    dJ_da = loss.grad(a[L], y, reduction, **opts)                  # (m, k), couples the batch

    dW = [None] + [np.zeros(Wl.shape, dtype) for Wl in W[1:]]
    db = [None] + [np.zeros(Wl.shape[0], dtype) for Wl in W[1:]]
    delta_cols = [[None] * m for _ in range(L + 1)]
    dx_rows = []
    for i in range(m):
        g = dJ_da[i][:, None]                                      # ∂J/∂a(L) for example i
        for l in range(L, 0, -1):
            delta = _vjp_col(f[l], z_cols[l][i], a_cols[l][i], g)  # δ(l) = g ⊙ f′(z(l))
            delta_cols[l][i] = delta
            dW[l] += np.outer(delta[:, 0], a_cols[l - 1][i][:, 0])  # Σ_i δ a(l-1)ᵀ
            db[l] += delta[:, 0]                                   # Σ_i δ
            g = np.dot(W[l].T, delta)                              # W(l)ᵀ δ(l)
        dx_rows.append(g)                                          # ∂J/∂x_i = W(1)ᵀ δ(1)

    delta_all = [None] + [_stack(delta_cols[l], dtype) for l in range(1, L + 1)]
    return _result(spec, L, J, z, a, delta_all, dW, db, _stack(dx_rows, dtype))


def einsum(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """Batch-major like handimpl, but every product and every reduction is an np.einsum
    (NumPy's own summation loops, not BLAS).

    Evaluation order: Z(l) = einsum('mi,oi->mo', A(l-1), W(l)) + b(l);
    δ(l) = vjp(Z(l), A(l), einsum('mo,oi->mi', δ(l+1), W(l+1)));
    ∂W(l) = einsum('mo,mi->oi', δ(l), A(l-1)); ∂b(l) = einsum('mo->o', δ(l));
    ∂J/∂x = einsum('mo,oi->mi', δ(1), W(1)).
    """
    L, f, loss, reduction, opts, dtype = _setup(spec)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]

    z, a = [None], [x]
    for l in range(1, L + 1):
        zl = np.einsum("mi,oi->mo", a[l - 1], W[l])
        if b[l] is not None:
            zl = zl + b[l]
        z.append(zl)
        a.append(f[l].f(zl))

    J = loss.value(a[L], y, reduction, **opts)
    delta = [None] * (L + 1)
    dW = [None] * (L + 1)
    db = [None] * (L + 1)
    g = loss.grad(a[L], y, reduction, **opts)
    for l in range(L, 0, -1):
        delta[l] = f[l].vjp(z[l], a[l], g)
        dW[l] = np.einsum("mo,mi->oi", delta[l], a[l - 1])
        db[l] = np.einsum("mo->o", delta[l])
        g = np.einsum("mo,oi->mi", delta[l], W[l])
    return _result(spec, L, J, z, a, delta, dW, db, g)


def float32_accumulate(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """One example at a time, every sum an explicit sequential accumulation in the spec's
    dtype: float32 for a float32 spec (so its roundoff grows like n·u, not a blocked BLAS
    sum's), float64 for a float64 spec (a style, not a bug).

    Evaluation order, for each example i (a 1-d vector per layer):
    z = b.copy() (zeros without bias), then z += W[:, j]·a[j] for j = 0, 1, … in order;
    a = f(z). Backward: g = ∂J/∂a(L)[i] (taken once for the batch), δ = vjp(z, a, g),
    then the next g = 0 and g += W[o, :]·δ[o] for o = 0, 1, … in order (also for ∂J/∂x).
    ∂W and ∂b: dW += outer(δ, a(l-1)) and db += δ, example after example, in order.
    """
    L, f, loss, reduction, opts, dtype = _setup(spec)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]
    m = x.shape[0]

    z_rows = [[None] * m for _ in range(L + 1)]
    a_rows = [[None] * m for _ in range(L + 1)]
    for i in range(m):
        a_vec = x[i].astype(dtype, copy=True)
        a_rows[0][i] = a_vec
        for l in range(1, L + 1):
            n_out, n_in = W[l].shape
            z_vec = b[l].astype(dtype, copy=True) if b[l] is not None else np.zeros(n_out, dtype)
            for j in range(n_in):
                z_vec += W[l][:, j] * a_vec[j]                     # sequential over inputs
            a_vec = f[l].f(z_vec[None, :])[0]
            z_rows[l][i], a_rows[l][i] = z_vec, a_vec

    z = [None] + [np.stack(z_rows[l]).astype(dtype, copy=False) for l in range(1, L + 1)]
    a = [x] + [np.stack(a_rows[l]).astype(dtype, copy=False) for l in range(1, L + 1)]
    J = loss.value(a[L], y, reduction, **opts)
    dJ_da = loss.grad(a[L], y, reduction, **opts)

    dW = [None] + [np.zeros(Wl.shape, dtype) for Wl in W[1:]]
    db = [None] + [np.zeros(Wl.shape[0], dtype) for Wl in W[1:]]
    delta_rows = [[None] * m for _ in range(L + 1)]
    dx_rows = []
    for i in range(m):
        g = dJ_da[i]
        for l in range(L, 0, -1):
            d = f[l].vjp(z_rows[l][i][None, :], a_rows[l][i][None, :], g[None, :])[0]
            delta_rows[l][i] = d
            dW[l] += np.outer(d, a_rows[l - 1][i]).astype(dtype, copy=False)  # sequential over i
            db[l] += d
            n_out, n_in = W[l].shape
            g = np.zeros(n_in, dtype)
            for o in range(n_out):
                g += W[l][o, :] * d[o]                             # sequential over outputs
        dx_rows.append(g)

    delta = [None] + [np.stack(delta_rows[l]).astype(dtype, copy=False) for l in range(1, L + 1)]
    return _result(spec, L, J, z, a, delta, dW, db, np.stack(dx_rows).astype(dtype, copy=False))


def _pairwise_sum(terms: Array) -> Array:
    """Σ over axis 0 by recursive halving: (first half) + (second half)."""
    n = terms.shape[0]
    if n == 0:
        return np.zeros(terms.shape[1:], terms.dtype)
    if n == 1:
        return terms[0].copy()
    h = n // 2
    return _pairwise_sum(terms[:h]) + _pairwise_sum(terms[h:])


def pairwise(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """Batch-major matrix products as handimpl's, but the sums over the batch in other orders.

    Evaluation order: Z(l) = A(l-1) @ W(l)ᵀ + b(l); δ(l) = vjp(Z(l), A(l), δ(l+1) @ W(l+1));
    ∂W(l) = the per-example outer products δ(l)[i] a(l-1)[i]ᵀ summed by recursive pairwise
    halving over i; ∂b(l) = np.add.reduce of δ(l) with its rows reversed (last example first);
    ∂J/∂x = δ(1) @ W(1).
    """
    L, f, loss, reduction, opts, dtype = _setup(spec)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]

    z, a = [None], [x]
    for l in range(1, L + 1):
        zl = a[l - 1] @ W[l].T
        if b[l] is not None:
            zl = zl + b[l]
        z.append(zl)
        a.append(f[l].f(zl))

    J = loss.value(a[L], y, reduction, **opts)
    delta = [None] * (L + 1)
    dW = [None] * (L + 1)
    db = [None] * (L + 1)
    g = loss.grad(a[L], y, reduction, **opts)
    for l in range(L, 0, -1):
        delta[l] = f[l].vjp(z[l], a[l], g)
        outer = delta[l][:, :, None] * a[l - 1][:, None, :]        # (m, n_l, n_{l-1})
        dW[l] = _pairwise_sum(outer)
        db[l] = np.add.reduce(delta[l][::-1], axis=0)
        g = delta[l] @ W[l]
    return _result(spec, L, J, z, a, delta, dW, db, g)


# -- the textbook style: torch's documented formulas, as written (not handimpl's textbook data) --

def _exp(v: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.exp(v)


def _tb_sigmoid(z: Array) -> Array:
    return (1 + np.tanh(z / 2)) / 2                                # σ(z) = (1 + tanh(z/2))/2


def _tb_log1pexp(v: Array) -> Array:
    """log(1 + eᵛ) as written, eᵛ kept below overflow by splitting off max(v, 0)."""
    top = np.maximum(v, 0)
    return top + np.log(_exp(-top) + _exp(v - top))


class _ELUText:
    """λ·z for z > 0, λα(e^{z/c} − 1) for z ≤ 0 (torch's ELU, SELU and CELU pages)."""
    def __init__(self, lam: float, alpha: float, c: float):
        self.lam, self.alpha, self.c = lam, alpha, c

    def f(self, z):
        return np.where(z > 0, self.lam * z, self.lam * self.alpha * (_exp(np.minimum(z, 0) / self.c) - 1))

    def vjp(self, z, a, g):
        return g * np.where(z > 0, self.lam, self.lam * self.alpha / self.c * _exp(np.minimum(z, 0) / self.c))


class _Formula:
    def __init__(self, f, df):
        self.f, self._df = f, df

    def vjp(self, z, a, g):
        return g * self._df(z, a)


_SELU = (1.0507009873554804934193349852946, 1.6732632423543772848170429916717)
TEXTBOOK_ACTIVATIONS: dict[str, Any] = {
    "elu": _ELUText(1.0, 1.0, 1.0), "selu": _ELUText(*_SELU, 1.0), "celu": _ELUText(1.0, 1.0, 1.0),
    "sigmoid": _Formula(_tb_sigmoid, lambda z, a: a * (1 - a)),
    "tanh": _Formula(lambda z: np.sign(z) * (1 - _exp(-2 * np.abs(z))) / (1 + _exp(-2 * np.abs(z))),
                     lambda z, a: 1 - a * a),                      # (eᶻ − e⁻ᶻ)/(eᶻ + e⁻ᶻ)
    "softplus": _Formula(lambda z: np.where(z > 20, z, np.log(1 + _exp(np.minimum(z, 20)))),
                         lambda z, a: np.where(z > 20, 1, _tb_sigmoid(z))),
    "logsigmoid": _Formula(lambda z: -_tb_log1pexp(-z),           # log(1/(1 + e⁻ᶻ))
                           lambda z, a: 1 - 1 / (1 + _exp(-z))),   # 1 − σ(z)
    "mish": _Formula(lambda z: z * np.tanh(_tb_log1pexp(z)),
                     lambda z, a: np.tanh(_tb_log1pexp(z)) + z * _tb_sigmoid(z) * (1 - np.tanh(_tb_log1pexp(z)) ** 2)),
}


class _BCEText:
    """binary_cross_entropy's ∂ℓ/∂a = −y/a + (1 − y)/(1 − a), the documented ℓ differentiated term by
    term, with torch's clamp of the denominator at ε = 1e-12 where a(1 − a) falls below it."""
    def __init__(self):
        self.loss = LOSSES["binary_cross_entropy"]

    def value(self, a, y, reduction, **opts):
        return self.loss.value(a, y, reduction, **opts)

    def grad(self, a, y, reduction, **opts):
        with np.errstate(all="ignore"):
            g = np.where((1 - a) * a > 1e-12, -y / a + (1 - y) / (1 - a), (a - y) / 1e-12)
        return (g / self.loss.count(a, reduction)).astype(a.dtype)


class _LogTermText:
    """A loss whose ℓ is written with log(1 + ·) where torch uses log1p; its gradient is handimpl's."""
    def __init__(self, name: str, terms):
        self.loss, self.terms = LOSSES[name], terms

    def value(self, a, y, reduction, **opts):
        return np.asarray(self.terms(a, y).sum() / self.loss.count(a, reduction), dtype=a.dtype)

    def grad(self, a, y, reduction, **opts):
        return self.loss.grad(a, y, reduction, **opts)


TEXTBOOK_LOSSES: dict[str, Any] = {
    "binary_cross_entropy": _BCEText(),
    "binary_cross_entropy_with_logits": _LogTermText(
        "binary_cross_entropy_with_logits", lambda a, y: np.maximum(a, 0) - a * y + np.log(1 + _exp(-np.abs(a)))),
    "soft_margin_loss": _LogTermText("soft_margin_loss", lambda a, y: np.log(1 + _exp(-y * a))),
}


def textbook(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """handimpl's batch-major pass with TEXTBOOK_ACTIVATIONS and TEXTBOOK_LOSSES in place of
    handimpl's functions where they have an entry (every activation and loss whose documented
    formula loses digits). All in the spec's dtype."""
    L, f, loss, reduction, opts, dtype = _setup(spec)
    f = [None] + [TEXTBOOK_ACTIVATIONS.get(name, act) for name, act in zip(spec.activations, f[1:])]
    loss = TEXTBOOK_LOSSES.get(spec.loss, loss)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]
    z, a = [None], [x]
    for l in range(1, L + 1):
        zl = a[l - 1] @ W[l].T + (0 if b[l] is None else b[l])
        z.append(zl.astype(dtype, copy=False))
        a.append(np.asarray(f[l].f(z[l])).astype(dtype, copy=False))
    J = loss.value(a[L], y, reduction, **opts)
    delta, dW, db = [None] * (L + 1), [None] * (L + 1), [None] * (L + 1)
    g = loss.grad(a[L], y, reduction, **opts)
    for l in range(L, 0, -1):
        delta[l] = np.asarray(f[l].vjp(z[l], a[l], g)).astype(dtype, copy=False)
        dW[l] = delta[l].T @ a[l - 1]
        db[l] = delta[l].sum(axis=0)
        g = delta[l] @ W[l]
    return _result(spec, L, J, z, a, delta, dW, db, g)


STYLES: dict[str, Callable] = {
    "handimpl": handimpl.backprop,
    "column_loop": column_loop,
    "einsum": einsum,
    "float32_accumulate": float32_accumulate,
    "pairwise": pairwise,
    "textbook": textbook,
}


# --------------------------------------------------------------------------- variants

def _required(spec: Any, out: dict) -> dict:
    L = len(spec.widths) - 1
    keys = ["loss"] + [f"dW{l}" for l in range(1, L + 1)]
    if spec.bias:
        keys += [f"db{l}" for l in range(1, L + 1)]
    return {k: out[k] for k in keys}


def variant(fn: Callable, *, full: bool, name: str | None = None) -> Callable:
    """``fn`` returning every key (full=True) or only the required ones (loss, dW{l}, db{l}
    with bias). ``name`` becomes the wrapper's __name__/__qualname__ (so that a wrapper bound to
    that module-level name pickles); ``fn.supports`` is carried over."""
    @functools.wraps(fn)
    def wrapped(spec, params, x, y):
        out = fn(spec, params, x, y)
        return dict(out) if full else _required(spec, out)

    if name is not None:
        wrapped.__name__ = wrapped.__qualname__ = name
        wrapped.__module__ = __name__
    if hasattr(fn, "supports"):
        wrapped.supports = dict(fn.supports)
    return wrapped


handimpl_full = variant(handimpl.backprop, full=True, name="handimpl_full")
handimpl_required = variant(handimpl.backprop, full=False, name="handimpl_required")
column_loop_full = variant(column_loop, full=True, name="column_loop_full")
column_loop_required = variant(column_loop, full=False, name="column_loop_required")
einsum_full = variant(einsum, full=True, name="einsum_full")
einsum_required = variant(einsum, full=False, name="einsum_required")
float32_accumulate_full = variant(float32_accumulate, full=True, name="float32_accumulate_full")
float32_accumulate_required = variant(float32_accumulate, full=False,
                                      name="float32_accumulate_required")
pairwise_full = variant(pairwise, full=True, name="pairwise_full")
pairwise_required = variant(pairwise, full=False, name="pairwise_required")
textbook_full = variant(textbook, full=True, name="textbook_full")
textbook_required = variant(textbook, full=False, name="textbook_required")

VARIANTS: dict[str, Callable] = {
    f"{style}_{kind}": globals()[f"{style}_{kind}"]
    for style in STYLES for kind in ("full", "required")
}


# --------------------------------------------------------------------------- precision bugs

FLOAT64_ONLY = {"dtypes": ["float64"]}


def float32_intermediate(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """BUG (float64 specs): z(1), the first layer's pre-activation (the first hidden layer
    when L ≥ 2), is rounded through float32 in the middle of an otherwise correct float64
    pass: z = z.astype(np.float32).astype(np.float64); a(1) and everything after it are
    computed from the rounded z. For float32 specs: handimpl's correct result."""
    if np.dtype(spec.dtype) != np.float64:
        return handimpl.backprop(spec, params, x, y)
    L, f, loss, reduction, opts, dtype = _setup(spec)
    W = [None] + [Wl for Wl, _ in params]
    b = [None] + [bl for _, bl in params]

    z, a = [None], [x]
    for l in range(1, L + 1):
        zl = a[l - 1] @ W[l].T
        if b[l] is not None:
            zl = zl + b[l]
        if l == 1:
            zl = zl.astype(np.float32).astype(np.float64)          # the bug
        z.append(zl)
        a.append(f[l].f(zl))

    J = loss.value(a[L], y, reduction, **opts)
    delta = [None] * (L + 1)
    dW = [None] * (L + 1)
    db = [None] * (L + 1)
    g = loss.grad(a[L], y, reduction, **opts)
    for l in range(L, 0, -1):
        delta[l] = f[l].vjp(z[l], a[l], g)
        dW[l] = delta[l].T @ a[l - 1]
        db[l] = delta[l].sum(axis=0)
        g = delta[l] @ W[l]
    return _result(spec, L, J, z, a, delta, dW, db, g)


def perturbed_dW(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """BUG (float64 specs): handimpl's result with dW1 multiplied by (1 + 1e-6), a relative
    perturbation of 1e-6 (ten times float64's rtol). For float32 specs: handimpl's result."""
    out = handimpl.backprop(spec, params, x, y)
    if np.dtype(spec.dtype) == np.float64:
        out["dW1"] = out["dW1"] * (1 + 1e-6)
    return out


def float32_accumulation_in_float64(spec: Any, params, x: Array, y: Array) -> dict[str, Any]:
    """BUG (float64 specs): handimpl's float64 pass, except that each ∂W(l) is summed over the
    batch in a float32 accumulator (each per-example outer product δ(l)[i] a(l-1)[i]ᵀ rounded
    to float32 and added in float32, example after example) and cast back to float64.
    For float32 specs: handimpl's result."""
    out = handimpl.backprop(spec, params, x, y)
    if np.dtype(spec.dtype) != np.float64:
        return out
    L = len(spec.widths) - 1
    for l in range(1, L + 1):
        delta = out[f"delta{l}"]
        a_prev = x if l == 1 else out[f"a{l - 1}"]
        acc = np.zeros(out[f"dW{l}"].shape, np.float32)
        for i in range(delta.shape[0]):
            acc += np.outer(delta[i], a_prev[i]).astype(np.float32)
        out[f"dW{l}"] = acc.astype(np.float64)
    return out


for _bug in (float32_intermediate, perturbed_dW, float32_accumulation_in_float64):
    _bug.supports = dict(FLOAT64_ONLY)

PRECISION_BUGS: dict[str, Callable] = {
    "float32_intermediate": float32_intermediate,
    "perturbed_dW": perturbed_dW,
    "float32_accumulation_in_float64": float32_accumulation_in_float64,
}

__all__ = ["STYLES", "PRECISION_BUGS", "VARIANTS", "variant",
           *(name for name in STYLES if name != "handimpl"), *VARIANTS, *PRECISION_BUGS]
