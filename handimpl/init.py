"""Parameter initialisation in NumPy, drawn reproducibly from a seed.

Weights follow torch.nn.init's formulas (fan_in = n_{l-1}, fan_out = n_l):

- ``default``          nn.Linear's reset_parameters: W ~ U(-1/√fan_in, 1/√fan_in)
- ``xavier_uniform``   W ~ U(-√(6/(fan_in + fan_out)), +√(6/(fan_in + fan_out)))
- ``xavier_normal``    W ~ N(0, 2/(fan_in + fan_out))
- ``kaiming_uniform``  W ~ U(-√(6/fan_in), +√(6/fan_in))      (torch's defaults: gain √2, fan_in)
- ``kaiming_normal``   W ~ N(0, 2/fan_in)

Biases always follow nn.Linear: b ~ U(-1/√fan_in, 1/√fan_in) (torch.nn.init only
re-draws weights). The draws are NumPy's, not torch's: the torch twin copies
these arrays rather than re-drawing them.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .registry import Registry

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


def _uniform(bound: Callable[[int, int], float]) -> Sampler:
    return lambda rng, fan_in, fan_out: rng.uniform(-1, 1, (fan_out, fan_in)) * bound(fan_in, fan_out)


def _normal(std: Callable[[int, int], float]) -> Sampler:
    return lambda rng, fan_in, fan_out: rng.standard_normal((fan_out, fan_in)) * std(fan_in, fan_out)


INITS: Registry[Sampler] = Registry("init", {
    "default": _uniform(lambda i, o: 1 / math.sqrt(i)),
    "xavier_uniform": _uniform(lambda i, o: math.sqrt(6 / (i + o))),
    "xavier_normal": _normal(lambda i, o: math.sqrt(2 / (i + o))),
    "kaiming_uniform": _uniform(lambda i, o: math.sqrt(6 / i)),
    "kaiming_normal": _normal(lambda i, o: math.sqrt(2 / i)),
})


def init_params(widths: Sequence[int], *, scheme: str = "default", bias: bool = True,
                dtype: str = "float64", seed: int | np.random.Generator = 0) -> list:
    """L pairs (W⁽ˡ⁾ (n_l, n_{l-1}), b⁽ˡ⁾ (n_l,) or None), drawn in float64 then rounded to dtype."""
    sample = INITS[scheme]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        W = sample(rng, fan_in, fan_out).astype(dtype)
        b = (rng.uniform(-1, 1, fan_out) / math.sqrt(fan_in)).astype(dtype) if bias else None
        params.append((W, b))
    return params
