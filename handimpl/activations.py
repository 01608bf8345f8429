"""Activations a = f(z), each next to its derivative f'(z).

Every activation is one small object named as in ``torch.nn.functional``
(``gelu_tanh`` is ``gelu(approximate='tanh')``). Arrays are batch-major,
``z: (m, n)``; every method returns an array of the same shape and dtype.

- ``f(z)``           the forward value a = f(z);
- ``df(z, a)``       the elementwise derivative f'(z) (``a = f(z)`` is passed so
                     that derivatives written in terms of the output, like
                     sigmoid's a(1 - a), reuse it as torch does);
- ``vjp(z, a, g)``   the vector-Jacobian product g·∂a/∂z, i.e. g ⊙ f'(z) for an
                     elementwise f. softmax and log_softmax act on a whole row, so
                     their Jacobian is not diagonal and they override ``vjp``.

At a kink the derivative follows torch's convention exactly; each docstring
says which value torch takes there. Where torch is overflow-safe we are too;
overflow warnings from ``exp`` of large arguments are silenced because the
infinities they produce are the intended limits.
"""
from __future__ import annotations

import math

import numpy as np

from .registry import Registry

Array = np.ndarray
INF = math.inf


def _exp(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.exp(x)


def _sigmoid(z: Array) -> Array:
    """σ(z) = 1/(1 + e^{-z}), evaluated without overflow on either side."""
    e = _exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


_erf = np.vectorize(math.erf, otypes=[np.float64])


class Activation:
    """An elementwise activation. ``range`` is the closed hull of its outputs."""

    name: str = ""
    range: tuple[float, float] = (-INF, INF)
    elementwise = True

    def f(self, z: Array) -> Array:
        raise NotImplementedError

    def df(self, z: Array, a: Array) -> Array:
        raise NotImplementedError

    def vjp(self, z: Array, a: Array, g: Array) -> Array:
        """g ⊙ f'(z): the chain rule through an elementwise function."""
        return g * self.df(z, a)

    def __repr__(self) -> str:
        return f"<activation {self.name}>"


class Identity(Activation):
    """f(z) = z;  f'(z) = 1."""
    name = "identity"

    def f(self, z):
        return z.copy()

    def df(self, z, a):
        return np.ones_like(z)


class Sigmoid(Activation):
    """σ(z) = 1/(1 + e^{-z});  σ'(z) = a(1 - a), computed from the output as torch does."""
    name, range = "sigmoid", (0.0, 1.0)

    def f(self, z):
        return _sigmoid(z)

    def df(self, z, a):
        return (1 - a) * a


class Tanh(Activation):
    """tanh(z);  tanh'(z) = 1 - a², from the output as torch does."""
    name, range = "tanh", (-1.0, 1.0)

    def f(self, z):
        return np.tanh(z)

    def df(self, z, a):
        return 1 - a * a


class ReLU(Activation):
    """max(0, z);  f'(z) = 1 if z > 0 else 0. Kink: torch takes relu'(0) = 0."""
    name, range = "relu", (0.0, INF)

    def f(self, z):
        return np.maximum(z, 0)

    def df(self, z, a):
        return (z > 0).astype(z.dtype)


class LeakyReLU(Activation):
    """z if z > 0 else s·z, s = 0.01;  f'(z) = 1 if z > 0 else s. Kink: f'(0) = s."""
    name, slope = "leaky_relu", 0.01

    def f(self, z):
        return np.where(z > 0, z, z * self.slope)

    def df(self, z, a):
        return np.where(z > 0, 1, self.slope).astype(z.dtype)


class ELU(Activation):
    """ELU family: λ·z if z > 0 else λ·α·(e^{z/c} - 1).

    f'(z) = λ if z > 0 else λ·(α/c)·e^{z/c}; torch's elu_backward takes the
    z <= 0 branch at the kink, so f'(0) = λ·α/c.
    elu: λ = 1, α = 1, c = 1.  selu: λ ≈ 1.0507, α ≈ 1.6733, c = 1 (f'(0) = λα).
    celu: λ = 1, α = 1, c = α.
    """
    name, range = "elu", (-1.0, INF)
    scale, alpha, input_scale = 1.0, 1.0, 1.0

    def f(self, z):
        return np.where(z > 0, z * self.scale,
                        np.expm1(np.minimum(z, 0) / self.input_scale) * (self.alpha * self.scale))

    def df(self, z, a):
        neg = np.exp(np.minimum(z, 0) / self.input_scale) * (self.alpha * self.scale / self.input_scale)
        return np.where(z > 0, self.scale, neg).astype(z.dtype)


class SELU(ELU):
    __doc__ = ELU.__doc__
    name = "selu"
    scale, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    range = (-scale * alpha, INF)


class CELU(ELU):
    __doc__ = ELU.__doc__
    name = "celu"


class GELU(Activation):
    """z·Φ(z), Φ the standard normal CDF = ½(1 + erf(z/√2));  f'(z) = Φ(z) + z·φ(z).

    NumPy has no erf, so Φ is evaluated with ``math.erf`` in float64 and
    rounded once to the working dtype; everything else stays in the dtype.
    """
    name, range = "gelu", (-0.17, INF)

    def _cdf(self, z):
        return (0.5 * (1 + _erf(z.astype(np.float64) * math.sqrt(0.5)))).astype(z.dtype)

    def f(self, z):
        return z * self._cdf(z)

    def df(self, z, a):
        pdf = np.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi))
        return self._cdf(z) + z * pdf


class GELUTanh(Activation):
    """½z(1 + tanh u), u = √(2/π)(z + 0.044715 z³);
    f'(z) = ½(1 + tanh u) + ½z(1 - tanh² u)·√(2/π)(1 + 3·0.044715 z²)."""
    name, range = "gelu_tanh", (-0.17, INF)
    beta, kappa = math.sqrt(2 / math.pi), 0.044715

    def _tanh_u(self, z):
        with np.errstate(over="ignore", invalid="ignore"):
            return np.tanh(self.beta * (z + self.kappa * (z * z * z)))

    def f(self, z):
        return 0.5 * z * (1 + self._tanh_u(z))

    def df(self, z, a):
        t = self._tanh_u(z)
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * self.beta * (1 + 3 * self.kappa * z * z)


class SiLU(Activation):
    """z·σ(z);  f'(z) = σ(z)(1 + z(1 - σ(z)))."""
    name, range = "silu", (-0.28, INF)

    def f(self, z):
        return z * _sigmoid(z)

    def df(self, z, a):
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))


class Softplus(Activation):
    """log(1 + e^{z}), and z itself above torch's threshold 20;
    f'(z) = e^{z}/(1 + e^{z}) = σ(z), and 1 above the threshold."""
    name, range = "softplus", (0.0, INF)
    threshold = 20.0

    def f(self, z):
        return np.where(z > self.threshold, z, np.log1p(_exp(np.minimum(z, self.threshold))))

    def df(self, z, a):
        return np.where(z > self.threshold, 1, _sigmoid(z)).astype(z.dtype)


class Mish(Activation):
    """z·tanh(softplus(z));  f'(z) = tanh(sp) + z·σ(z)(1 - tanh²(sp)), sp = log(1 + e^{z})."""
    name, range = "mish", (-0.31, INF)

    def _tsp(self, z):
        return np.tanh(np.log1p(_exp(z)))

    def f(self, z):
        return z * self._tsp(z)

    def df(self, z, a):
        t = self._tsp(z)
        return t + z * _sigmoid(z) * (1 - t * t)


class Softsign(Activation):
    """z/(1 + |z|);  f'(z) = 1/(1 + |z|)²."""
    name, range = "softsign", (-1.0, 1.0)

    def f(self, z):
        return z / (1 + np.abs(z))

    def df(self, z, a):
        d = 1 + np.abs(z)
        return 1 / (d * d)


class Hardtanh(Activation):
    """clip(z, lo, hi);  f'(z) = 1 for lo < z < hi, else 0. Kinks: torch takes 0 at both corners.
    hardtanh: lo, hi = -1, 1.  relu6: lo, hi = 0, 6."""
    name, range = "hardtanh", (-1.0, 1.0)

    def f(self, z):
        return np.clip(z, *self.range)

    def df(self, z, a):
        lo, hi = self.range
        return ((z > lo) & (z < hi)).astype(z.dtype)


class ReLU6(Hardtanh):
    __doc__ = Hardtanh.__doc__
    name, range = "relu6", (0.0, 6.0)


class Hardsigmoid(Activation):
    """relu6(z + 3)/6;  f'(z) = 1/6 for -3 < z < 3, else 0 (torch: 0 at both corners).
    (torch's float64 kernel uses 1/6 rounded to float32, 5e-9 off; we use the exact 1/6.)"""
    name, range = "hardsigmoid", (0.0, 1.0)

    def f(self, z):
        return np.clip(z + 3, 0, 6) / 6

    def df(self, z, a):
        return np.where((z > -3) & (z < 3), 1 / 6, 0).astype(z.dtype)


class Hardswish(Activation):
    """z·relu6(z + 3)/6;  f'(z) = 0 for z <= -3, z/3 + ½ for -3 < z < 3, 1 for z >= 3
    (torch's corners: f'(-3) = 0, f'(3) = 1)."""
    name, range = "hardswish", (-0.375, INF)

    def f(self, z):
        return z * np.clip(z + 3, 0, 6) / 6

    def df(self, z, a):
        return np.where(z <= -3, 0, np.where(z >= 3, 1, z / 3 + 0.5)).astype(z.dtype)


class LogSigmoid(Activation):
    """log σ(z) = min(z, 0) - log(1 + e^{-|z|});  f'(z) = 1 - σ(z) = σ(-z)."""
    name, range = "logsigmoid", (-INF, 0.0)

    def f(self, z):
        return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))

    def df(self, z, a):
        return _sigmoid(-z)


class Tanhshrink(Activation):
    """z - tanh(z);  f'(z) = tanh²(z)."""
    name = "tanhshrink"

    def f(self, z):
        return z - np.tanh(z)

    def df(self, z, a):
        t = np.tanh(z)
        return t * t


class Softmax(Activation):
    """a_j = e^{z_j}/Σ_k e^{z_k} over the feature axis (row-wise, max-shifted).

    Not elementwise: ∂a_j/∂z_i = a_j(δ_ij - a_i), so the backward pass is the
    vector-Jacobian product g·J = a ⊙ (g - Σ_j g_j a_j), one row at a time.
    """
    name, range, elementwise = "softmax", (0.0, 1.0), False

    def f(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def vjp(self, z, a, g):
        return a * (g - (g * a).sum(axis=1, keepdims=True))


class LogSoftmax(Activation):
    """a_j = z_j - log Σ_k e^{z_k} over the feature axis (log-sum-exp, max-shifted).

    Not elementwise: ∂a_j/∂z_i = δ_ij - softmax(z)_i, so the backward pass is
    g·J = g - e^{a} Σ_j g_j (e^{a} = softmax(z)).
    """
    name, range, elementwise = "log_softmax", (-INF, 0.0), False

    def f(self, z):
        s = z - z.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    def vjp(self, z, a, g):
        return g - np.exp(a) * g.sum(axis=1, keepdims=True)


ACTIVATIONS: Registry[Activation] = Registry("activation", {
    cls.name: cls() for cls in (
        Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, SELU, CELU, GELU, GELUTanh,
        SiLU, Mish, Softplus, Softsign, Hardtanh, Hardsigmoid, Hardswish, ReLU6,
        LogSigmoid, Tanhshrink, Softmax, LogSoftmax,
    )
})
