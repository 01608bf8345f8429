"""Convolutions: Conv1d and Conv2d (groups 1, zero padding), NCL and NCHW as torch.

Written with im2col (handimpl.layers.windows). Shapes, for x (m, C, H, W), W (O, C, kh, kw),
x̄ = x zero-padded by (ph, pw), and Ho × Wo windows of x̄ (stride s, dilation d):

    cols  (m·Ho·Wo, C·kh·kw)  row (n, a, b) holds window (a, b) of example n, in (c, i, j) order
    W₂    (O, C·kh·kw)        W reshaped
    y₂    (m·Ho·Wo, O)        cols W₂ᵀ + b, reshaped to y (m, O, Ho, Wo)

∂J/∂W is the same correlation with x̄ as the input and dy as the kernel (``kernel_gradient``),
∂J/∂x̄ a full convolution of dy with the flipped kernel (``full_input``, ``flipped``, ``placed``).

A 1-d layer is the 2-d one with H = kh = 1: x (m, C, L) is read as (m, C, 1, L)."""
from __future__ import annotations

import math

import numpy as np

from ..rounding import bias_grad_error, linear_error, weight_grad_error
from .base import Layer
from .windows import out_size, pad, pair, windows

Array = np.ndarray
ONE = (1, 1)


def columns(xp: Array, k, s, d) -> tuple[Array, tuple[int, int, int]]:
    """im2col rows: xp (m, C, H, W) -> (cols (m·Ho·Wo, C·kh·kw), (m, Ho, Wo))."""
    cols = windows(xp, k, s, d)                                   # (m, C, kh, kw, Ho, Wo)
    m, Ho, Wo = cols.shape[0], cols.shape[4], cols.shape[5]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(m * Ho * Wo, -1), (m, Ho, Wo)


def rows(a: Array) -> Array:
    """(m, O, Ho, Wo) -> (m·Ho·Wo, O), the row order of ``columns``."""
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def unrows(r: Array, m: int, Ho: int, Wo: int) -> Array:
    """(m·Ho·Wo, O) -> (m, O, Ho, Wo), the inverse of ``rows``."""
    return r.reshape(m, Ho, Wo, -1).transpose(0, 3, 1, 2)


def correlate(xp: Array, W: Array, s, d) -> Array:
    """y[n, o, a, b] = Σ_{c,i,j} W[o, c, i, j]·xp[n, c, a·s + i·d, b·s + j·d]: (m, O, Ho, Wo)."""
    cols, shape = columns(xp, W.shape[2:], s, d)
    return unrows(cols @ W.reshape(W.shape[0], -1).T, *shape)


def correlate_error(absx: Array, Ex: Array, absW: Array, absb, s, d, u: float, tiny: float) -> Array:
    """E of correlate(x, W) + b: linear_error on the im2col rows (each output sums C·kh·kw terms)."""
    cols, shape = columns(absx, absW.shape[2:], s, d)
    Ecols, _ = columns(Ex, absW.shape[2:], s, d)
    return unrows(linear_error(cols, Ecols, absW.reshape(absW.shape[0], -1), absb, u, tiny), *shape)


def kernel_gradient(xp: Array, dy: Array, k, s, d) -> Array:
    """∂J/∂W[o, c, i, j] = Σ_{n,a,b} dy[n, o, a, b]·xp[n, c, a·s + i·d, b·s + j·d]: x̄ correlated with dy
    as the kernel (batch and channels swapped, so that the sum runs over n), dy's entries read s
    apart (the layer's stride is this kernel's dilation) and the kernel offsets d apart (its
    dilation is this correlation's stride); the first kh × kw offsets are W's: (O, C, kh, kw)."""
    dW = correlate(xp.transpose(1, 0, 2, 3), dy.transpose(1, 0, 2, 3), d, s)   # (C, O, ≥ kh, ≥ kw)
    return dW[:, :, :k[0], :k[1]].transpose(1, 0, 2, 3)


def full_input(dy: Array, k, s, d) -> Array:
    """The input of dx's full convolution: dy (m, O, Ho, Wo) dilated by the stride (s − 1 zeros
    between its entries), then padded by the dilated kernel's reach d(k − 1) on every side."""
    m, O, Ho, Wo = dy.shape
    spread = np.zeros((m, O, s[0] * (Ho - 1) + 1, s[1] * (Wo - 1) + 1), dtype=dy.dtype)
    spread[:, :, ::s[0], ::s[1]] = dy
    return pad(spread, (d[0] * (k[0] - 1), d[1] * (k[1] - 1)))


def flipped(W: Array) -> Array:
    """rot180(W) with C_in and C_out swapped: (O, C, kh, kw) -> (C, O, kh, kw)."""
    return W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def placed(core: Array, shape: tuple[int, ...], p) -> Array:
    """The full convolution's result (m, C, ≤ H̄, ≤ W̄) placed in x̄'s shape (rows and columns past
    the last window read nothing and get 0), then x̄'s padding dropped: (m, C, H, W)."""
    full = np.zeros(shape, dtype=core.dtype)
    full[:, :, :core.shape[2], :core.shape[3]] = core
    return full[:, :, p[0]: shape[2] - p[0], p[1]: shape[3] - p[1]]


def _fmt(v) -> str:
    return str(v) if np.isscalar(v) else (str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}")


class Conv2d(Layer):
    """y = W ⋆ x̄ + b, a correlation as torch.nn.Conv2d: x (m, C, H, W), W (O, C, kh, kw), b (O,),
    x̄ = x zero-padded by p, y (m, O, Ho, Wo).

    Backward:
        ∂J/∂W = x̄ ⋆ dy, the input correlated with the upstream gradient, dy read with the stride
                as its dilation (``kernel_gradient``);
        ∂J/∂b = Σ_{n,a,b} dy;
        ∂J/∂x̄ = (dy dilated by s, padded by d(k − 1)) ⋆ rot180(W)ᵀ, a full convolution with the
                flipped kernel (C_in and C_out swapped), read at dilation d; ∂J/∂x = ∂J/∂x̄ without
                x̄'s padding."""
    kind = "conv2d"
    positional = ("out",)
    params = ("W", "b")
    torch_names = {"W": "weight", "b": "bias"}
    formula = "y[n,o,a,b] = Σ_{c,i,j} W[o,c,i,j]·x̄[n,c,a·s+i·d,b·s+j·d] + b[o]"
    backward_formulas = {
        "dW": "∂J/∂W[o,c,i,j] = Σ_{n,a,b} dy[n,o,a,b]·x̄[n,c,a·s+i·d,b·s+j·d]",
        "db": "∂J/∂b[o] = Σ_{n,a,b} dy[n,o,a,b]",
        "dx": "∂J/∂x̄ = dilate_s(dy) ∗ W (full convolution: kernel flipped); ∂J/∂x = ∂J/∂x̄ unpadded",
    }
    spatial = 2

    def __init__(self, out: int, kernel, stride=1, padding=0, dilation=1, bias: bool = True):
        self.out, self.bias = int(out), bool(bias)
        self.k, self.s, self.p, self.d = pair(kernel), pair(stride), pair(padding), pair(dilation)
        if self.out < 1 or min(self.k + self.s + self.d) < 1 or min(self.p) < 0:
            raise ValueError(f"{self.kind} needs out, kernel, stride and dilation >= 1 and padding >= 0")

    @property
    def param_names(self):
        return self.params if self.bias else ("W",)

    # a 1-d layer's arrays read as 2-d ones and back, its hyperparameters as ints (Conv1d overrides)
    def _as2d(self, a: Array) -> Array:
        return a

    def _from2d(self, a: Array) -> Array:
        return a

    def _hyper(self, v):
        return v

    def out_shape(self, in_shape):
        if len(in_shape) != 1 + self.spatial:
            per = "(C, H, W)" if self.spatial == 2 else "(C, L)"
            raise ValueError(f"{self.kind} takes {per} per example, not {tuple(in_shape)}")
        size = (1,) * (2 - self.spatial) + tuple(in_shape[1:])
        padded = [n + 2 * p for n, p in zip(size, self.p)]
        reach = [d * (k - 1) + 1 for k, d in zip(self.k, self.d)]
        if any(r > n for r, n in zip(reach, padded)):
            raise ValueError(f"{self.spec()}: the dilated kernel spans {_fmt(self._hyper(tuple(reach)))} but the "
                             f"padded input is only {_fmt(self._hyper(tuple(padded)))}")
        outs = tuple(out_size(n, k, s, d) for n, k, s, d in zip(padded, self.k, self.s, self.d))
        return (self.out,) + outs[2 - self.spatial:]

    def _W_shape(self, channels: int) -> tuple[int, ...]:
        return (self.out, channels) + self.k[2 - self.spatial:]

    def param_shapes(self, in_shape):
        return {"W": self._W_shape(in_shape[0]), **({"b": (self.out,)} if self.bias else {})}

    def init(self, in_shape, rng, dtype):
        """torch's default: kaiming_uniform(a=√5) = U(−1/√fan_in, 1/√fan_in), fan_in = C·kh·kw; b the same."""
        shape = self._W_shape(in_shape[0])
        bound = 1 / math.sqrt(int(np.prod(shape[1:])))
        p = {"W": rng.uniform(-bound, bound, shape).astype(dtype)}
        if self.bias:
            p["b"] = rng.uniform(-bound, bound, self.out).astype(dtype)
        return p

    def torch_module(self, in_shape):
        return f"Conv{self.spatial}d", {
            "in_channels": in_shape[0], "out_channels": self.out, "kernel_size": self._hyper(self.k),
            "stride": self._hyper(self.s), "padding": self._hyper(self.p), "dilation": self._hyper(self.d),
            "bias": self.bias}

    def forward(self, x, p, ctx):
        W = self._as2d(p["W"])
        xp = pad(self._as2d(x), self.p)                               # x̄: x zero-padded
        cols, (m, Ho, Wo) = columns(xp, self.k, self.s, self.d)       # (m·Ho·Wo, C·kh·kw)
        y = cols @ W.reshape(self.out, -1).T                          # y[n,o,a,b] = Σ_{c,i,j} W[o,c,i,j]·x̄[…]
        if self.bias:
            y = y + p["b"]                                            #     + b[o]
        return self._from2d(unrows(y, m, Ho, Wo)), (x.shape, xp, W)

    def backward(self, dy, cache):
        x_shape, xp, W = cache
        dy = self._as2d(dy)                                           # (m, O, Ho, Wo)
        dW = kernel_gradient(xp, dy, self.k, self.s, self.d)  # ∂J/∂W[o,c,i,j] = Σ dy[n,o,a,b]·x̄[n,c,a·s+i·d,b·s+j·d]
        grads = {"W": dW.reshape(self._W_shape(W.shape[1]))}
        if self.bias:
            grads["b"] = dy.sum(axis=(0, 2, 3))                       # ∂J/∂b[o] = Σ_{n,a,b} dy[n,o,a,b]
        spread = full_input(dy, self.k, self.s, self.d)              # dy dilated by s, padded by d(k − 1)
        core = correlate(spread, flipped(W), ONE, self.d)             # ∂J/∂x̄ = spread ⋆ rot180(W)ᵀ = dy ∗ W, full
        dx = placed(core, xp.shape, self.p)                          # ∂J/∂x = ∂J/∂x̄ unpadded
        return dx.reshape(x_shape), grads

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        """Each output sums C·kh·kw products and b: linear_error on |x̄| + E_x̄ and |W|."""
        absb = np.abs(p["b"]) if self.bias else 0.0
        return self._from2d(correlate_error(pad(np.abs(self._as2d(x)), self.p), pad(self._as2d(Ex), self.p),
                                            np.abs(self._as2d(p["W"])), absb, self.s, self.d, u, tiny))

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        """∂J/∂x: the same full convolution of |dy| + E_dy with |W| (each element of x̄ receives at
        most O·kh·kw terms); ∂J/∂W: weight_grad_error on the im2col rows (m·Ho·Wo terms each);
        ∂J/∂b: bias_grad_error (m·Ho·Wo terms)."""
        absW = np.abs(self._as2d(p["W"]))
        absx, Exp = pad(np.abs(self._as2d(x)), self.p), pad(self._as2d(Ex), self.p)
        absD, ED = np.abs(self._as2d(dy)), self._as2d(Edy)
        core = correlate_error(full_input(absD, self.k, self.s, self.d), full_input(ED, self.k, self.s, self.d),
                               flipped(absW), 0.0, ONE, self.d, u, tiny)
        cols, _ = columns(absx, self.k, self.s, self.d)
        Ecols, _ = columns(Exp, self.k, self.s, self.d)
        grads = {"W": weight_grad_error(rows(absD), rows(ED), cols, Ecols, u, tiny).reshape(p["W"].shape)}
        if self.bias:
            grads["b"] = bias_grad_error(rows(absD), rows(ED), u, tiny)
        return placed(core, absx.shape, self.p).reshape(x.shape), grads

    def options(self):
        opts = {"out": self.out, "kernel": self._hyper(self.k)}
        for name, v, default in (("stride", self.s, 1), ("padding", self.p, 0), ("dilation", self.d, 1)):
            if v != (default, default):
                opts[name] = self._hyper(v)
        if not self.bias:
            opts["bias"] = False
        return opts

    def spec(self):
        o = self.options()
        parts = [str(self.out), "k" + _fmt(o["kernel"])]
        parts += [letter + _fmt(o[name]) for letter, name in (("s", "stride"), ("p", "padding"), ("d", "dilation"))
                  if name in o]
        return f"{self.kind}:" + ",".join(parts + ([] if self.bias else ["nobias"]))


class Conv1d(Conv2d):
    """y = W ⋆ x̄ + b as torch.nn.Conv1d: x (m, C, L), W (O, C, k), y (m, O, Lo); computed as
    Conv2d on (m, C, 1, L) with kernel (1, k) (same backward, same error model)."""
    kind = "conv1d"
    formula = "y[n,o,a] = Σ_{c,i} W[o,c,i]·x̄[n,c,a·s+i·d] + b[o]"
    backward_formulas = {
        "dW": "∂J/∂W[o,c,i] = Σ_{n,a} dy[n,o,a]·x̄[n,c,a·s+i·d]",
        "db": "∂J/∂b[o] = Σ_{n,a} dy[n,o,a]",
        "dx": "∂J/∂x̄ = dilate_s(dy) ∗ W (full convolution: kernel flipped); ∂J/∂x = ∂J/∂x̄ unpadded",
    }
    spatial = 1

    def __init__(self, out: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 bias: bool = True):
        super().__init__(out, (1, int(kernel)), (1, int(stride)), (0, int(padding)), (1, int(dilation)), bias)

    def _as2d(self, a):
        return a[:, :, None, :]

    def _from2d(self, a):
        return a[:, :, 0]

    def _hyper(self, v):
        return v[1]
