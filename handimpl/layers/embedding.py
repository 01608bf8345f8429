"""Embedding: a lookup table of rows, indexed by integer inputs."""
from __future__ import annotations

import numpy as np

from ..rounding import accumulation_error
from .base import Layer


class Embedding(Layer):
    """y[n, t] = W[x[n, t]], as torch.nn.Embedding: x (m, T) integers in [0, V), W (V, D),
    y (m, T, D).

    Backward: ∂J/∂W[r] = Σ_{(n,t): x[n,t] = r} dy[n, t], a scatter-add (a row indexed twice
    receives both gradients); the padding_idx row gets 0, as torch. The input is integer: no ∂J/∂x
    (None)."""
    kind = "embedding"
    positional = ("num", "dim")
    keywords = {"pad": "padding_idx"}
    params = ("W",)
    torch_names = {"W": "weight"}
    formula = "y[n,t] = W[x[n,t]]"
    backward_formulas = {"dW": "∂J/∂W[r] = Σ_{(n,t): x[n,t] = r} dy[n,t]  (0 for r = padding_idx)"}

    def __init__(self, num: int, dim: int, padding_idx: int | None = None):
        self.num, self.dim = int(num), int(dim)
        self.padding_idx = None if padding_idx is None else int(padding_idx)
        if self.num < 1 or self.dim < 1:
            raise ValueError("embedding needs num_embeddings and embedding_dim >= 1")
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.num:
            raise ValueError(f"embedding: padding_idx {self.padding_idx} is not a row of a {self.num}-row table")

    def out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"embedding takes (T,) integer indices per example, not {tuple(in_shape)}")
        return (in_shape[0], self.dim)

    def param_shapes(self, in_shape):
        return {"W": (self.num, self.dim)}

    def init(self, in_shape, rng, dtype):
        """torch's default: W ~ N(0, 1), the padding_idx row 0."""
        W = rng.standard_normal((self.num, self.dim)).astype(dtype)
        if self.padding_idx is not None:
            W[self.padding_idx] = 0
        return {"W": W}

    def torch_module(self, in_shape):
        return "Embedding", {"num_embeddings": self.num, "embedding_dim": self.dim, "padding_idx": self.padding_idx}

    def forward(self, x, p, ctx):
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"embedding takes integer indices, not {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= self.num):
            raise IndexError(f"embedding: an index lies outside [0, {self.num})")
        return p["W"][x], (x, p["W"].shape)                          # y[n,t] = W[x[n,t]]

    def backward(self, dy, cache):
        x, shape = cache
        dW = np.zeros(shape, dtype=dy.dtype)
        np.add.at(dW, x, dy)                                          # ∂J/∂W[r] = Σ_{x[n,t] = r} dy[n,t]
        if self.padding_idx is not None:
            dW[self.padding_idx] = 0                                  # the padding row: no gradient
        return None, {"W": dW}

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        """A copy: exact."""
        return np.zeros(x.shape + (self.dim,))

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        """Row r sums its count c_r of rows of dy: Σ E_dy + γ_{c_r} Σ(|dy| + E_dy) (one row is exact)."""
        spread, held = np.zeros((self.num, self.dim)), np.zeros((self.num, self.dim))
        np.add.at(spread, x, Edy)
        np.add.at(held, x, np.abs(dy) + Edy)
        count = np.bincount(x.ravel(), minlength=self.num)[:, None]
        E = accumulation_error(spread, held, count, u)
        if self.padding_idx is not None:
            E[self.padding_idx] = 0
        return None, {"W": E}

    def options(self):
        pad = {} if self.padding_idx is None else {"padding_idx": self.padding_idx}
        return {"num": self.num, "dim": self.dim} | pad

    def spec(self):
        return f"embedding:{self.num},{self.dim}" + ("" if self.padding_idx is None else f",pad={self.padding_idx}")
