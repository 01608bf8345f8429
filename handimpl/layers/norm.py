"""Normalisation layers: batch norm (1-d and 2-d), layer norm and group norm.

All three normalise x over a set of axes, x̂ = (x − μ)/σ with μ the mean and σ² + ε... the
*biased* variance (as torch), then scale and shift per channel (or per feature): y = γx̂ + β.
They differ only in the axes the statistics run over:

    batchnorm   over the batch and every spatial axis, per channel: (m, C[, L | H, W]) -> axes 0, 2, …
    layernorm   over every per-example axis, per example
    groupnorm   over the C/G channels of each group and every spatial axis, per example and group

Backward, with N the number of values each statistic averages and dx̂ = γ·dy (the compact form):

    ∂J/∂x = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂))
          = (γ/σ)/N·(N·dy − Σdy − x̂·Σ(dy ⊙ x̂))       (the three terms: the direct path, the path
                                                       through μ, the path through σ)
    ∂J/∂γ = Σ dy ⊙ x̂,   ∂J/∂β = Σ dy                  (over every axis but the channel's)

Batch norm in eval mode normalises with its running statistics instead: x̂ = (x − μ_run)/σ_run,
an affine map whose backward is ∂J/∂x = dy·γ/σ_run. In training mode it updates them as torch
does: μ_run := (1 − momentum)·μ_run + momentum·μ and σ²_run := (1 − momentum)·σ²_run +
momentum·σ²·N/(N − 1), the *unbiased* variance.

Error model (docs/verdict.md): each statistic is a sum of N terms; σ divides, so the bound carries
the amplification 1/σ (and 1/σ² through σ's own error), read at σ's lowest value
σ_lo = √(max(σ² + ε − E_{σ²}, 0)) so that a tiny batch variance never false-alarms (ε keeps it
away from 0); x − μ cancels, so its rounding is of |x| + |μ|, which also covers torch's fused
evaluation x·(γ/σ) + (β − μγ/σ).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..rounding import gamma
from ..textbook import Textbook
from .base import Layer


def _computational_variance(x, axes):
    """σ² = mean(x²) − μ², the computational formula as written (in x's dtype)."""
    mu = x.mean(axis=axes, keepdims=True)
    return (x * x).mean(axis=axes, keepdims=True) - mu * mu


def _computational_terms(x, axes):
    """Σ|terms| of mean(x²) − μ²: mean(x²) + μ² (float64)."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=axes, keepdims=True)
    return (x * x).mean(axis=axes, keepdims=True) + mu * mu


# The variance written as the textbook's computational formula: correct, and it cancels where
# |μ| ≫ σ (the textbook allowance of the verdict, docs/verdict.md; handimpl.textbook).
VARIANCE = Textbook("var", "σ² = mean(x²) − μ²", "mean(x²) − μ²", "mean((x − μ)²), the two-pass form",
                    _computational_variance, _computational_terms)


class _Statistics:
    """μ, the biased σ², x̂ and 1/σ of x over ``axes``, and their a priori error model."""

    def __init__(self, axes: tuple[int, ...], eps: float):
        self.axes, self.eps = axes, eps

    def count(self, x) -> int:
        return int(np.prod([x.shape[a] for a in self.axes]))

    def mean(self, v):
        return v.mean(axis=self.axes, keepdims=True)

    def forward(self, x):
        mu = self.mean(x)                                     # μ = (1/N) Σ x
        d = x - mu                                            # x − μ
        var = self.mean(d * d)                                # σ² = (1/N) Σ (x − μ)²  (biased)
        inv = 1 / np.sqrt(var + self.eps)                     # 1/σ = 1/√(σ² + ε)
        return d * inv, mu, var, inv                          # x̂ = (x − μ)/σ

    def backward(self, dxhat, xhat, inv):
        """∂J/∂x from ∂J/∂x̂: (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂))."""
        return inv * (dxhat                                   # the direct path
                      - self.mean(dxhat)                      # through μ
                      - xhat * self.mean(dxhat * xhat))       # through σ

    # -- the error model, in float64 ---------------------------------------------------------------
    def forward_error(self, x, Ex, u, textbook=False):
        """(x̂, E_x̂, 1/σ, E of 1/σ, 1/σ_lo, μ, E_μ, σ², E_σ²) for x off by up to Ex. ``textbook``: σ²
        may also be evaluated as mean(x²) − μ² (VARIANCE); where that form may reach σ² + ε ≤ 0 the
        bounds are infinite (nothing bounds 1/σ there: the caller falls back to the tight ones)."""
        N = self.count(x)
        gN = gamma(N, u)
        held = np.abs(x) + Ex
        mu = self.mean(x)
        E_mu = self.mean(Ex) + gN * self.mean(held)
        d = x - mu
        E_d = Ex + E_mu + u * (held + np.abs(mu) + E_mu)
        var = self.mean(d * d)
        E_var = self.mean(2 * np.abs(d) * E_d + E_d * E_d) + gamma(N + 2, u) * self.mean((np.abs(d) + E_d) ** 2)
        if textbook:
            # mean(x²) − μ² on held values: the moves of mean(x²) and of μ², then the rounding of
            # the N-term mean of squares, of μ² and of the difference, at the scale of their terms
            held_mu = np.abs(mu) + E_mu
            E_var = np.maximum(E_var, self.mean(2 * np.abs(x) * Ex + Ex * Ex) + 2 * np.abs(mu) * E_mu + E_mu * E_mu
                               + gamma(N + 3, u) * (self.mean(held * held) + held_mu * held_mu))
        s = var + self.eps
        E_s = E_var + 2 * u * s
        sigma = np.sqrt(s)
        if textbook:
            # mean(x²) − μ² is no sum of squares: it may fall below 0, and only s − E_s bounds σ below
            sigma_lo = np.sqrt(np.maximum(s - E_s, 0.0))
        else:
            # any evaluation's σ² is a sum of squares, so σ ≥ √ε (rounded): 1/σ never exceeds 1/√ε
            sigma_lo = np.sqrt(np.maximum(s - E_s, self.eps * (1 - 4 * u)))
        E_sigma = E_s / (sigma + sigma_lo) + u * sigma
        inv = 1 / sigma
        inv_hi = 1 / sigma_lo
        E_inv = np.minimum(E_sigma * inv * inv_hi, inv_hi) + 2 * u * inv
        xhat = d * inv
        E_xhat = E_d * inv_hi + np.abs(d) * E_inv + 2 * u * (np.abs(xhat) + (held + np.abs(mu)) * inv_hi)
        if not textbook:
            # and Σx̂² = Nσ²/(σ² + ε) ≤ N: any two-pass evaluation's x̂ lies within √N (rounded) of 0
            E_xhat = np.minimum(E_xhat, np.abs(xhat) + math.sqrt(N) * (1 + 4 * N * u))
        out = (xhat, E_xhat, inv, E_inv, inv_hi, mu, E_mu, var, E_var)
        unbounded = textbook and not np.all(np.isfinite(inv_hi))
        if unbounded:
            # where mean(x²) − μ² may reach σ² + ε ≤ 0 this layer gets no textbook allowance: the
            # two-pass bound there (a textbook σ² is judged by it), so that the textbook forms of the
            # other layers (an activation after it, say) keep theirs instead of inheriting infinity
            tight = self.forward_error(x, Ex, u)
            out = tuple(np.where(np.isfinite(inv_hi), t, a) for t, a in zip(out, tight))
        return out

    def backward_error(self, dxhat, E_dxhat, xhat, E_xhat, inv, E_inv, inv_hi, u):
        """E of ∂J/∂x = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂)), each term's rounding on held values
        (the graph form's terms have the same magnitudes)."""
        N = self.count(dxhat)
        gN = gamma(N + 2, u)
        held_g, held_xhat = np.abs(dxhat) + E_dxhat, np.abs(xhat) + E_xhat
        B = self.mean(dxhat)
        E_B = self.mean(E_dxhat) + gN * self.mean(held_g)
        P = self.mean(dxhat * xhat)
        E_P = self.mean(E_dxhat * held_xhat + np.abs(dxhat) * E_xhat) + gN * self.mean(held_g * held_xhat)
        C = xhat * P
        E_C = E_xhat * (np.abs(P) + E_P) + np.abs(xhat) * E_P
        inner = dxhat - B - C
        E_inner = E_dxhat + E_B + E_C + gN * (held_g + np.abs(B) + E_B + np.abs(C) + E_C)
        return inv_hi * E_inner + np.abs(inner) * E_inv + 3 * u * inv_hi * (np.abs(inner) + E_inner)


def _sum_error(terms, E_terms, axes, u):
    """E of Σ over ``axes`` of terms held within E_terms: ΣE + γ_N Σ(|t| + E)."""
    N = int(np.prod([terms.shape[a] for a in axes]))
    return E_terms.sum(axis=axes) + gamma(N, u) * (np.abs(terms) + E_terms).sum(axis=axes)


class _Norm(Layer):
    """What the three normalisations share: the affine γx̂ + β, per channel (batch norm, group
    norm) or per feature (layer norm), and its backward."""
    params = ("gamma", "beta")
    torch_names = {"gamma": "weight", "beta": "bias"}
    formula = "y = γ·(x − μ)/√(σ² + ε) + β"
    backward_formulas = {
        "dx": "∂J/∂x = (γ/σ)/N·(N·dy − Σdy − x̂·Σ(dy ⊙ x̂))",
        "dgamma": "∂J/∂γ = Σ dy ⊙ x̂", "dbeta": "∂J/∂β = Σ dy"}
    default_eps = 1e-5
    textbook = (VARIANCE,)
    evaluates_textbook = False              # True on textbook_view: σ² may be mean(x²) − μ²

    def __init__(self, eps: float = 1e-5):
        self.eps = float(eps)
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps={eps!r}: must be a positive number")

    # -- per kind ---------------------------------------------------------------------------------
    def stat_axes(self, ndim: int) -> tuple[int, ...]:
        raise NotImplementedError

    def affine_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """γ's and β's shape broadcast against x (m, ...)."""
        raise NotImplementedError

    def param_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def grouped(self, x):
        """x as the statistics see it (group norm reshapes its channels into groups)."""
        return x

    def ungrouped(self, v, shape):
        return v.reshape(shape)

    def _stats(self, x) -> _Statistics:
        return _Statistics(self.stat_axes(self.grouped(x).ndim), self.eps)

    def _affine_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes ∂J/∂γ and ∂J/∂β sum over."""
        return (0,) + tuple(range(2, ndim))

    # -- the layer ---------------------------------------------------------------------------------
    def param_shapes(self, in_shape):
        shape = self.param_shape(in_shape)
        return {name: shape for name in (*self.params, *self.buffers)}

    def init(self, in_shape, rng, dtype):
        """γ ~ U(0.5, 1.5) and β ~ U(−0.5, 0.5), not torch's 1 and 0, so that a forgotten γ or β shows."""
        shape = self.param_shape(in_shape)
        return {"gamma": rng.uniform(0.5, 1.5, shape).astype(dtype),
                "beta": rng.uniform(-0.5, 0.5, shape).astype(dtype)}

    def _g(self, p, x):
        return p["gamma"].reshape(self.affine_shape(x.shape)), p["beta"].reshape(self.affine_shape(x.shape))

    def forward(self, x, p, ctx):
        g, b = self._g(p, x)
        stats = self._stats(x)
        xhat, mu, var, inv = stats.forward(self.grouped(x))
        xhat = self.ungrouped(xhat, x.shape)
        return g * xhat + b, (stats, xhat, inv, g, x.shape, mu, var)      # y = γx̂ + β

    def backward(self, dy, cache):
        stats, xhat, inv, g, shape, _, _ = cache
        axes = self._affine_axes(dy.ndim)
        grads = {"gamma": (dy * xhat).sum(axis=axes),                        # ∂J/∂γ = Σ dy ⊙ x̂
                 "beta": dy.sum(axis=axes)}                                  # ∂J/∂β = Σ dy
        dxhat = self.grouped(dy * g)                                          # dx̂ = γ·dy
        dx = stats.backward(dxhat, self.grouped(xhat), inv)
        return self.ungrouped(dx, shape), grads

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        g, b = (np.abs(v) for v in self._g(p, x))
        xhat, E_xhat = self._xhat_error(x, Ex, u)[:2]
        return g * E_xhat + 4 * u * (g * (np.abs(xhat) + E_xhat) + b) + tiny

    @property
    def textbook_view(self) -> "_Norm":
        """This layer with its error model widened to VARIANCE (the textbook allowance); its
        forward and backward unchanged. Where that form may reach σ² + ε ≤ 0 its bounds are
        infinite: use the tight ones there."""
        view = copy.copy(self)
        view.evaluates_textbook = True
        return view

    def _xhat_error(self, x, Ex, u):
        stats = self._stats(x)
        out = stats.forward_error(self.grouped(x), self.grouped(Ex), u, self.evaluates_textbook)
        return (self.ungrouped(out[0], x.shape), self.ungrouped(out[1], x.shape), stats, *out[2:])

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        g = np.abs(self._g(p, x)[0])
        xhat, E_xhat, stats, inv, E_inv, inv_hi = self._xhat_error(x, Ex, u)[:6]
        axes = self._affine_axes(dy.ndim)
        shape = p["gamma"].shape
        E_gamma = _sum_error(dy * xhat, Edy * (np.abs(xhat) + E_xhat) + np.abs(dy) * E_xhat, axes, u)
        E_beta = _sum_error(dy, Edy, axes, u)
        dxhat, E_dxhat = dy * g, Edy * g + u * (np.abs(dy) + Edy) * g
        Edx = stats.backward_error(self.grouped(dxhat), self.grouped(E_dxhat), self.grouped(xhat),
                                   self.grouped(E_xhat), inv, E_inv, inv_hi, u)
        return self.ungrouped(Edx, x.shape) + tiny, {"gamma": E_gamma.reshape(shape), "beta": E_beta.reshape(shape)}

    def options(self):
        return {} if self.eps == self.default_eps else {"eps": self.eps}

    def _spec_options(self, extra: dict) -> str:
        opts = {**self.options(), **extra}
        return ",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items())


class BatchNorm(_Norm):
    """Batch norm over (m, C), (m, C, L) (torch.nn.BatchNorm1d) or (m, C, H, W) (BatchNorm2d):
    statistics per channel over the batch and the spatial axes; training mode or eval mode (the
    stack's mode), with running statistics (module docstring)."""
    kind = "batchnorm"
    buffers = ("running_mean", "running_var")
    torch_names = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
    min_batch = 2
    default_momentum = 0.1

    def __init__(self, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(eps)
        self.momentum = float(momentum)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum={momentum!r}: must lie in [0, 1]")

    def stat_axes(self, ndim):
        return (0,) + tuple(range(2, ndim))

    def affine_shape(self, x_shape):
        return (1, x_shape[1]) + (1,) * (len(x_shape) - 2)

    def param_shape(self, in_shape):
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(f"batchnorm takes (C,), (C, L) or (C, H, W) per example, not {in_shape}")
        return (in_shape[0],)

    def out_shape(self, in_shape):
        self.param_shape(in_shape)
        return in_shape

    def init(self, in_shape, rng, dtype):
        """γ, β as _Norm; running statistics drawn too (μ_run ~ N(0, 0.5), σ²_run ~ U(0.5, 2)), so
        that eval mode reads values other than torch's 0 and 1."""
        p = super().init(in_shape, rng, dtype)
        C = in_shape[0]
        p["running_mean"] = rng.normal(0, 0.5, C).astype(dtype)
        p["running_var"] = rng.uniform(0.5, 2.0, C).astype(dtype)
        return p

    def torch_module(self, in_shape):
        name = "BatchNorm2d" if len(in_shape) == 3 else "BatchNorm1d"
        return name, {"num_features": in_shape[0], "eps": self.eps, "momentum": self.momentum}

    def forward(self, x, p, ctx):
        if ctx.training:
            return super().forward(x, p, ctx)
        g, b = self._g(p, x)
        shape = self.affine_shape(x.shape)
        inv = 1 / np.sqrt(p["running_var"].reshape(shape) + self.eps)         # 1/σ_run
        xhat = (x - p["running_mean"].reshape(shape)) * inv                    # x̂ = (x − μ_run)/σ_run
        return g * xhat + b, (None, xhat, inv, g, x.shape, None, None)

    def backward(self, dy, cache):
        stats, xhat, inv, g, shape, _, _ = cache
        if stats is not None:
            return super().backward(dy, cache)
        axes = self._affine_axes(dy.ndim)
        grads = {"gamma": (dy * xhat).sum(axis=axes), "beta": dy.sum(axis=axes)}
        return dy * g * inv, grads                                             # ∂J/∂x = dy·γ/σ_run

    def updated(self, p, cache):
        stats, _, _, _, shape, mu, var = cache
        if stats is None:                                                      # eval mode: unchanged
            return {name: p[name] for name in self.buffers}
        N = int(np.prod([shape[a] for a in self.stat_axes(len(shape))]))
        k = self.momentum
        return {"running_mean": (1 - k) * p["running_mean"] + k * mu.reshape(-1),          # μ_run := (1−k)μ_run + kμ
                "running_var": (1 - k) * p["running_var"] + k * var.reshape(-1) * N / (N - 1)}  # unbiased σ²

    # -- eval mode's error model, and the running statistics' ---------------------------------------
    def eval_errors(self, x, Ex, p, u):
        shape = self.affine_shape(x.shape)
        inv = 1 / np.sqrt(p["running_var"].reshape(shape) + self.eps)
        mu = p["running_mean"].reshape(shape)
        xhat = (x - mu) * inv
        E_xhat = Ex * inv + 3 * u * (np.abs(x) + Ex + np.abs(mu)) * inv
        return xhat, E_xhat, inv

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        if ctx is None or ctx.training:
            return super().forward_error(x, Ex, p, u, tiny)
        g, b = (np.abs(v) for v in self._g(p, x))
        xhat, E_xhat, _ = self.eval_errors(x, Ex, p, u)
        return g * E_xhat + 4 * u * (g * (np.abs(xhat) + E_xhat) + b) + tiny

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        if ctx is None or ctx.training:
            return super().backward_error(x, Ex, p, dy, Edy, u, tiny)
        g = np.abs(self._g(p, x)[0])
        xhat, E_xhat, inv = self.eval_errors(x, Ex, p, u)
        axes = self._affine_axes(dy.ndim)
        E_gamma = _sum_error(dy * xhat, Edy * (np.abs(xhat) + E_xhat) + np.abs(dy) * E_xhat, axes, u)
        E_beta = _sum_error(dy, Edy, axes, u)
        Edx = Edy * g * inv + 4 * u * (np.abs(dy) + Edy) * g * inv
        return Edx + tiny, {"gamma": E_gamma, "beta": E_beta}

    def buffer_errors(self, x, Ex, p, u):
        """E of the running statistics after a training-mode forward."""
        _, _, _, _, _, _, mu, E_mu, var, E_var = self._xhat_error(x, Ex, u)
        N = int(np.prod([x.shape[a] for a in self.stat_axes(x.ndim)]))
        k = self.momentum
        rm, rv = np.abs(p["running_mean"]), np.abs(p["running_var"])
        unbiased = np.abs(var.reshape(-1)) * N / (N - 1)
        return {"running_mean": k * E_mu.reshape(-1) + 4 * u * ((1 - k) * rm + k * np.abs(mu.reshape(-1))),
                "running_var": k * E_var.reshape(-1) * N / (N - 1) + 5 * u * ((1 - k) * rv + k * unbiased)}

    def options(self):
        opts = super().options()
        if self.momentum != self.default_momentum:
            opts["momentum"] = self.momentum
        return opts

    def spec(self):
        opts = self._spec_options({})
        return "batchnorm" + (f":{opts}" if opts else "")


class LayerNorm(_Norm):
    """Layer norm over every per-example axis (torch.nn.LayerNorm(normalized_shape = the
    per-example shape)), with an elementwise affine γ, β of that shape."""
    kind = "layernorm"

    def stat_axes(self, ndim):
        return tuple(range(1, ndim))

    def affine_shape(self, x_shape):
        return (1,) + tuple(x_shape[1:])

    def param_shape(self, in_shape):
        return tuple(in_shape)

    def _affine_axes(self, ndim):
        return (0,)

    def torch_module(self, in_shape):
        return "LayerNorm", {"normalized_shape": list(in_shape), "eps": self.eps}

    def backward(self, dy, cache):
        stats, xhat, inv, g, shape, _, _ = cache
        grads = {"gamma": (dy * xhat).sum(axis=0), "beta": dy.sum(axis=0)}    # per feature, over the batch
        dx = stats.backward(dy * g, xhat, inv)
        return dx, grads

    def spec(self):
        opts = self._spec_options({})
        return "layernorm" + (f":{opts}" if opts else "")


class GroupNorm(_Norm):
    """Group norm (torch.nn.GroupNorm(G, C)): the C channels split into G groups of C/G; statistics
    per example and group over its channels and spatial axes; γ, β per channel."""
    kind = "groupnorm"
    positional = ("groups",)

    def __init__(self, groups: int, eps: float = 1e-5):
        super().__init__(eps)
        self.groups = int(groups)
        if self.groups < 1:
            raise ValueError(f"groups={groups!r}: must be a positive integer")

    def param_shape(self, in_shape):
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(f"groupnorm takes (C,), (C, L) or (C, H, W) per example, not {in_shape}")
        if in_shape[0] % self.groups:
            raise ValueError(f"groupnorm:{self.groups} needs channels divisible by {self.groups}, not {in_shape[0]}")
        if in_shape[0] // self.groups * int(np.prod(in_shape[1:], dtype=np.int64)) < 2:
            raise ValueError(f"groupnorm:{self.groups} on {in_shape} normalises groups of one value (x̂ = 0): "
                             f"use fewer groups")
        return (in_shape[0],)

    def out_shape(self, in_shape):
        self.param_shape(in_shape)
        return in_shape

    def stat_axes(self, ndim):
        return tuple(range(2, ndim))

    def affine_shape(self, x_shape):
        return (1, x_shape[1]) + (1,) * (len(x_shape) - 2)

    def grouped(self, x):
        return x.reshape(x.shape[0], self.groups, -1)

    def torch_module(self, in_shape):
        return "GroupNorm", {"num_groups": self.groups, "num_channels": in_shape[0], "eps": self.eps}

    def spec(self):
        opts = self._spec_options({})
        return f"groupnorm:{self.groups}" + (f",{opts}" if opts else "")
