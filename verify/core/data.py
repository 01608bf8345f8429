"""Reproducible data for one case: parameters, inputs and targets drawn from a seed.

Each seed also draws how hard the case is, so that a sweep over seeds reaches
the places where backprop bugs hide:

- scale of x: 1 (most seeds), 1e-3, 10 or 1e3 (large magnitudes; 1 for the
  losses torch itself evaluates without overflow protection);
- exact zeros: a fraction of x and W set to 0, a whole row of x zeroed and the
  biases zeroed, so that some z⁽ˡ⁾ land exactly on activation kinks.

Targets are valid for the loss (``Loss.target``): reals, probabilities in
[0, 1] with exact 0s and 1s, ±1, Poisson counts, class indices (int64) or
probability rows, distributions (log-probabilities with log_target).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handimpl import LOSSES, init_params
from verify.core.spec import NetSpec

SCALES = (1.0, 1.0, 1.0, 1.0, 1e-3, 10.0, 1e3)
ZERO_FRACTIONS = (0.0, 0.0, 0.25, 0.5)
OVERFLOWING_LOSSES = ("soft_margin_loss", "poisson_nll_loss")   # torch has no overflow guard


@dataclass(frozen=True)
class Case:
    params: list
    x: np.ndarray
    y: np.ndarray
    scale: float
    zero_fraction: float


def _rows(rng: np.random.Generator, m: int, k: int, zero_fraction: float) -> np.ndarray:
    """Probability rows (m, k), some entries exactly 0 when zero_fraction > 0."""
    p = rng.dirichlet(np.ones(k), size=m)
    if zero_fraction and k > 1:
        p[:, 1:] *= rng.random((m, k - 1)) >= zero_fraction
        p /= p.sum(axis=1, keepdims=True)
    return p


def _classes(spec, rng, m, k, zero_fraction):
    if spec.target == "prob":
        return _rows(rng, m, k, zero_fraction)
    return rng.integers(0, k, size=m).astype(np.int64)


def _unit(spec, rng, m, k, zero_fraction):
    y = rng.random((m, k))
    y[rng.random((m, k)) < zero_fraction] = 0.0
    y[rng.random((m, k)) < zero_fraction / 2] = 1.0
    return y


def _distribution(spec, rng, m, k, zero_fraction):
    if spec.loss_options.get("log_target"):
        return np.log(_rows(rng, m, k, 0.0))
    return _rows(rng, m, k, zero_fraction)


def _real(spec, rng, m, k, zero_fraction):
    y = rng.standard_normal((m, k))
    y[rng.random((m, k)) < zero_fraction] = 0.0
    return y


# One drawer per Loss.target kind: (spec, rng, m, k, zero_fraction) -> y.
TARGETS = {
    "real": _real,
    "unit": _unit,
    "sign": lambda spec, rng, m, k, zf: rng.choice([-1.0, 1.0], size=(m, k)),
    "counts": lambda spec, rng, m, k, zf: rng.poisson(2.0, size=(m, k)).astype(np.float64),
    "class": _classes,
    "distribution": _distribution,
}


def draw_target(spec: NetSpec, rng: np.random.Generator, m: int, zero_fraction: float,
                k: int | None = None) -> np.ndarray:
    """y for ``spec``'s loss over k outputs (default: the last width): int64 class indices, else
    floats in the spec's dtype."""
    y = TARGETS[LOSSES[spec.loss].target](spec, rng, m, spec.widths[-1] if k is None else k, zero_fraction)
    return y if y.dtype == np.int64 else y.astype(spec.dtype)


def draw_case(spec: NetSpec, seed: int = 0, batch: int = 4) -> Case:
    """Parameters (spec.init), x (batch, n₀) and y for ``spec``, all determined by ``seed``."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    rng = np.random.default_rng(seed)
    scale = float(rng.choice(SCALES))
    zero_fraction = float(rng.choice(ZERO_FRACTIONS))
    if spec.loss in OVERFLOWING_LOSSES:
        scale = min(scale, 1.0)
    params = init_params(spec.widths, scheme=spec.init, bias=spec.bias, dtype=spec.dtype, seed=rng)
    x = rng.standard_normal((batch, spec.widths[0])) * scale
    if zero_fraction:
        x[rng.random(x.shape) < zero_fraction] = 0.0
        x[0] = 0.0
        for W, b in params:
            W[rng.random(W.shape) < zero_fraction / 2] = 0.0
            if b is not None:
                b[:] = 0.0
    y = draw_target(spec, rng, batch, zero_fraction)
    return Case(params, x.astype(spec.dtype), y, scale, zero_fraction)


def draw_stack_case(spec, seed: int = 0, batch: int = 4) -> Case:
    """A stack spec's case (verify.core.stack.StackSpec): each layer's parameters and buffers as
    its ``init`` draws them, a keep-mask for each dropout layer in training mode (drawn here, given
    to both sides), x (batch, *input) at the seed's scale with its exact zeros (integer tokens for
    an embedding), and y for the loss; all determined by ``seed``."""
    if batch < spec.min_batch:
        raise ValueError(f"batch {batch}: {spec} needs at least {spec.min_batch} examples "
                         f"(batch norm in training mode)")
    rng = np.random.default_rng(seed)
    scale = float(rng.choice(SCALES))
    zero_fraction = float(rng.choice(ZERO_FRACTIONS))
    if spec.loss in OVERFLOWING_LOSSES:
        scale = min(scale, 1.0)
    shapes = spec.shapes
    params = []
    for i, layer in enumerate(spec.layers):
        p = layer.init(shapes[i], rng, spec.dtype)
        if layer.needs_mask and spec.training:
            p["mask"] = rng.random((batch, *shapes[i])) >= layer.p
        params.append(p)
    if spec.tokens:
        x = rng.integers(0, spec.layers[0].num, size=(batch, *spec.input)).astype(np.int64)
    else:
        x = rng.standard_normal((batch, *spec.input)) * scale
        if zero_fraction:
            x[rng.random(x.shape) < zero_fraction] = 0.0
            x[0] = 0.0
        x = x.astype(spec.dtype)
    y = draw_target(spec, rng, batch, zero_fraction, k=shapes[-1][0])
    return Case(params, x, y, scale, zero_fraction)
