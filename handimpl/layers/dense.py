"""Dense layers: linear, an activation as a layer, flatten."""
from __future__ import annotations

import math

import numpy as np

from ..activations import ACTIVATIONS
from ..rounding import activation_error, backward_error, bias_grad_error, delta_error, linear_error, weight_grad_error
from .base import Layer


class Linear(Layer):
    """y = xWᵀ + b, W (out, in) as torch.nn.Linear.weight, over the last axis of x (m, in).

    Backward, one example per row (the tutorial's δ recursion with δ = ∂J/∂y):
        ∂J/∂W = dyᵀx,  ∂J/∂b = Σ_rows dy,  ∂J/∂x = dy W."""
    kind = "linear"
    positional = ("out",)
    params = ("W", "b")
    torch_names = {"W": "weight", "b": "bias"}
    formula = "y = xWᵀ + b"
    backward_formulas = {"dW": "∂J/∂W = dyᵀx", "db": "∂J/∂b = Σ_rows dy", "dx": "∂J/∂x = dy W"}

    def __init__(self, out: int, bias: bool = True):
        self.out, self.bias = int(out), bool(bias)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.params if self.bias else ("W",)

    def out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"linear takes (features,) per example, not {in_shape}: flatten first")
        return (self.out,)

    def param_shapes(self, in_shape):
        return {"W": (self.out, in_shape[0]), **({"b": (self.out,)} if self.bias else {})}

    def init(self, in_shape, rng, dtype):
        """torch's default: U(−1/√in, 1/√in) for W and b."""
        bound = 1 / math.sqrt(in_shape[0])
        p = {"W": rng.uniform(-bound, bound, (self.out, in_shape[0])).astype(dtype)}
        if self.bias:
            p["b"] = rng.uniform(-bound, bound, self.out).astype(dtype)
        return p

    def torch_module(self, in_shape):
        return "Linear", {"in_features": in_shape[0], "out_features": self.out, "bias": self.bias}

    def forward(self, x, p, ctx):
        y = x @ p["W"].T                                      # y = xWᵀ
        if self.bias:
            y = y + p["b"]                                    #     + b
        return y, (x, p["W"])

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        return linear_error(np.abs(x), Ex, np.abs(p["W"]), np.abs(p["b"]) if self.bias else 0.0, u, tiny)

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        absW, absD = np.abs(p["W"]), np.abs(dy)
        grads = {"W": weight_grad_error(absD, Edy, np.abs(x), Ex, u, tiny)}
        if self.bias:
            grads["b"] = bias_grad_error(absD, Edy, u, tiny)
        return backward_error(absD, Edy, absW, u, tiny), grads

    def backward(self, dy, cache):
        x, W = cache
        grads = {"W": dy.T @ x}                               # ∂J/∂W = dyᵀx
        if self.bias:
            grads["b"] = dy.sum(axis=0)                       # ∂J/∂b = Σ_rows dy
        return dy @ W, grads                                  # ∂J/∂x = dy W

    def spec(self):
        return f"linear:{self.out}" + ("" if self.bias else ",nobias")


class Act(Layer):
    """a = f(z) elementwise (or row-wise for softmax and log_softmax, over the feature axis);
    backward: ∂J/∂z = g·∂a/∂z, the activation's vector-Jacobian product (handimpl.activations)."""
    kind = "activation"
    formula = "a = f(z)"
    backward_formulas = {"dx": "∂J/∂z = ∂J/∂a ⊙ f′(z)"}

    def __init__(self, name: str):
        self.f = ACTIVATIONS[name]
        self.name = name

    def out_shape(self, in_shape):
        if not self.f.elementwise and len(in_shape) != 1:
            raise ValueError(f"{self.name} acts on the feature axis of (features,) per example, not {in_shape}")
        return in_shape

    def torch_module(self, in_shape):
        return self.f.torch_module

    def forward(self, x, p, ctx):
        a = self.f.f(x)                                       # a = f(z)
        return a, (x, a)

    def backward(self, dy, cache):
        z, a = cache
        return self.f.vjp(z, a, dy), {}                       # ∂J/∂z = g ⊙ f′(z)

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        return activation_error(self.f, x, self.f.f(x), Ex, u, tiny)

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        a = self.f.f(x)
        Ea = activation_error(self.f, x, a, Ex, u, tiny)
        return delta_error(self.f, x, a, dy, Ex, Ea, Edy, u, tiny), {}

    def spec(self):
        return self.name


class Flatten(Layer):
    """(m, C, H, W) -> (m, C·H·W) in C order, as torch.nn.Flatten; backward reshapes back."""
    kind = "flatten"
    formula = "y = reshape(x, (m, C·H·W))"
    backward_formulas = {"dx": "∂J/∂x = reshape(dy, x's shape)"}

    def out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def torch_module(self, in_shape):
        return "Flatten", {}

    def forward(self, x, p, ctx):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy, cache):
        return dy.reshape(cache), {}

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        return Ex.reshape(Ex.shape[0], -1)

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        return Edy.reshape(x.shape), {}

    def spec(self):
        return "flatten"


