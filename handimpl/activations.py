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

import functools
import math
from typing import Callable

import numpy as np

from .registry import Registry
from .textbook import Convention, Textbook, widened

Array = np.ndarray
INF = math.inf


def quiet_exp(x: Array) -> Array:
    """e^x, overflowing to inf without a warning."""
    with np.errstate(over="ignore"):
        return np.exp(x)


def sigmoid(z: Array) -> Array:
    """σ(z) = 1/(1 + e^{-z}), evaluated without overflow on either side: e^{-|z|} <= 1."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


_erf = np.vectorize(math.erf, otypes=[np.float64])


# -- the textbook forms' naive evaluations (handimpl.textbook): each formula exactly as written,
# in its argument's dtype, overflow warnings silenced as quiet_exp does.

def naive_sigmoid_tanh(z: Array) -> Array:
    """σ(z) = (1 + tanh(z/2))/2: cancels for z < 0."""
    return (1 + np.tanh(z / 2)) / 2


def naive_sigmoid(z: Array) -> Array:
    """σ(z) = 1/(1 + e⁻ᶻ), no branch on the sign of z."""
    return 1 / (1 + quiet_exp(-z))


def naive_softplus(z: Array) -> Array:
    """log(1 + eᶻ): the 1 swallows eᶻ for z < 0 (log1p keeps it)."""
    return np.log(1 + quiet_exp(z))


def _one(z: Array, a: Array) -> Array:
    """Terms whose sum is 1 at most: a rounding of 1 ± something, as in log(1 + eᶻ)."""
    return np.ones(np.shape(z))

# How many units of roundoff one library function (exp, tanh, erf, log1p, ...) or one short
# elementwise formula may be off by, relative to the magnitudes of its terms: the error model
# the verdict's bounds assume (docs/verdict.md).
LIBRARY_ULPS = 8


def _spread(here: Array, low: Array, high: Array) -> Array:
    """max(|low - here|, |high - here|): how far a function whose values at the middle and the
    two ends of an interval are given moves between them."""
    return np.maximum(np.abs(low - here), np.abs(high - here))


def _both_ways(value: Array, at: Callable[[Array], Array], error: Array, points: tuple = ()) -> Array:
    """max |at(v) - at(value)| over v in [value - error, value + error] for ``at`` acting on each
    element alone: read at the two ends (all three in one call) and at each of ``points`` that
    lies inside. Where ``at`` is monotone between those points (each activation declares where
    f and f′ turn, and kinks are read on each side), its largest move lies at one of them."""
    here, low, high = at(np.array([value, value - error, value + error]))
    return np.maximum(_spread(here, low, high), _inside(value, error, points, lambda v: np.abs(at(v) - here)))


def _inside(value: Array, error: Array, points: tuple, move: Callable[[Array], Array]) -> Array:
    """max of ``move(p)`` over the points p inside [value - error, value + error] (0 where none is).
    For a float64 value (the bounds'), which points lie inside is found for all of them in one
    broadcast pass; ``move`` is read only at those that do."""
    out = np.zeros(np.shape(value))
    if not points:
        return out
    value = np.asarray(value)
    if value.dtype == np.float64:      # value - p is float64 whatever p's type: all p at once
        ps = np.array(points, dtype=np.float64).reshape((-1,) + (1,) * value.ndim)
        inside = (np.abs(value - ps) <= error) & (error > 0)
        found = zip(points, inside, inside.reshape(len(points), -1).any(axis=1).tolist())
    else:                              # value - p's dtype depends on p's (NEP 50): one at a time
        found = ((p, where, where.any()) for p in points for where in [(np.abs(value - p) <= error) & (error > 0)])
    for p, where, hit in found:
        if hit:
            out = np.maximum(out, np.where(where, move(np.full(np.shape(value), p)), 0.0))
    return out


class Activation:
    """An elementwise activation. ``range`` is the closed hull of its outputs; ``kinks`` the
    points where f' jumps (the derivative torch takes there is in each docstring).

    ``formula`` (f) and ``derivative`` (f′ as the tutorial writes it, in terms of z or of the
    output a, its conditions saying which value torch takes at each corner of f; the row Jacobian for a
    row-wise activation) are the texts verify explain displays.

    The rounding bounds of the verdict (verify.bounds) ask each activation two things, both
    computed in float64 on exact-valued inputs, u the unit roundoff of the dtype judged:
    ``forward_error``, how far a correct evaluation of f may land from f(z) when z itself is
    off by up to ``Ez``, and ``vjp_error``, the same for g ⊙ f'(z) with z, a and g off by up to
    ``Ez``, ``Ea`` and ``Eg``. The defaults serve every elementwise activation: they read f and
    f' at both ends of z's interval (and f' at both ends of a's, for derivatives written in
    terms of the output) and add LIBRARY_ULPS·u times the magnitudes of the terms of f and f'
    (``f_terms``, ``df_terms``), where cancellation among them would show. Both read f at the
    same three points (``ends``), which a caller computes once and passes to both. The bounds
    are computed under np.errstate(all="ignore") (verify.core.bounds): an end beyond the range
    of f reads inf, and the bound that comes out bounds nothing there.
    """

    name: str = ""
    formula: str = ""
    derivative: str = ""
    range: tuple[float, float] = (-INF, INF)
    kinks: tuple[float, ...] = ()
    torch_module: tuple[str, dict] = ("", {})   # its torch counterpart: torch.nn.<name>(**options)
    turning_points: tuple[float, ...] = ()      # where f has a local extremum (f is monotone between
    df_turning_points: tuple[float, ...] = ()   # these and the kinks); where f′ has one (likewise)
    elementwise = True
    reference_df_error = 0.0     # relative error of torch's own f' where its kernel rounds a constant
    textbook: tuple[Textbook, ...] = ()   # its documented formulas where they lose digits (handimpl.textbook)
    conventions: tuple[Convention, ...] = ()   # where torch departs from the formula (handimpl.textbook)

    def f(self, z: Array) -> Array:
        raise NotImplementedError

    def df(self, z: Array, a: Array) -> Array:
        raise NotImplementedError

    def vjp(self, z: Array, a: Array, g: Array) -> Array:
        """g ⊙ f'(z): the chain rule through an elementwise function."""
        return g * self.df(z, a)

    def f_terms(self, z: Array, a: Array) -> Array:
        """Σ|terms| of the evaluation of f(z) (|a| where nothing cancels)."""
        return np.abs(a)

    def df_terms(self, z: Array, a: Array) -> Array:
        """Σ|terms| of the evaluation of f'(z)."""
        return np.abs(self.df(z, a))

    def df_from_output(self, a: Array) -> Array | None:
        """f' written in terms of the output a, for activations whose derivative is usually
        computed that way (sigmoid's a(1 - a)); None where it is not."""
        return None

    @functools.cached_property
    def kink_sides(self) -> tuple[float, ...]:
        """Each kink and the numbers just beside it: where f or f′ may jump, each side is read."""
        return tuple(p for k in self.kinks for p in (np.nextafter(k, -INF), k, np.nextafter(k, INF)))

    @functools.cached_property
    def output_turning_points(self) -> tuple[float, ...]:
        """f at each point where f′ turns: where f′ written in terms of the output a turns."""
        return tuple(float(self.f(np.full((1, 1), p))[0, 0]) for p in self.df_turning_points)

    def ends(self, z: Array, Ez: Array) -> tuple[Array, Array]:
        """(v, f(v)), v = [z, z - Ez, z + Ez] stacked: the middle and the two ends of z's interval,
        with f read at all three in one call (f acts on each element alone)."""
        v = np.array([z, z - Ez, z + Ez])
        return v, self.f(v)

    def forward_error(self, z: Array, a: Array, Ez: Array, u: float, ends=None) -> Array:
        _, fv = self.ends(z, Ez) if ends is None else ends
        moved = np.maximum(_spread(*fv), _inside(z, Ez, self.turning_points + self.kink_sides,
                                                 lambda v: np.abs(self.f(v) - fv[0])))
        return moved + LIBRARY_ULPS * u * self.f_terms(z, a)

    def kink_jumps(self, z: Array, Ez: Array, fprime: Array) -> Array:
        """|f′ just beside a kink - f′(z)| where a kink lies inside [z - Ez, z + Ez] (the ends of
        a wide interval can both lie on flat parts while the slope inside is not 0), else 0."""
        return _inside(z, Ez, self.kink_sides, lambda v: np.abs(self.df(v, self.f(v)) - fprime))

    def vjp_error(self, z: Array, a: Array, g: Array, Ez: Array, Ea: Array, Eg: Array,
                  u: float, ends=None) -> Array:
        fprime = self.df(z, a)
        v, fv = self.ends(z, Ez) if ends is None else ends
        dfv = self.df(v, fv)
        moved = np.maximum(_spread(*dfv), _inside(z, Ez, self.df_turning_points,
                                                  lambda p: np.abs(self.df(p, self.f(p)) - dfv[0])))
        if self.kinks:
            moved = np.maximum(moved, self.kink_jumps(z, Ez, fprime))
        if self.df_from_output(a) is not None:
            lo, hi = self.range
            moved = np.maximum(moved, _both_ways(a, lambda v: self.df_from_output(np.clip(v, lo, hi)), Ea,
                                                 self.output_turning_points))
        abs_fprime, abs_g = np.abs(fprime), np.abs(g)
        steepest = abs_fprime + moved
        computed = abs_g + Eg          # the rounding scales with the g an implementation holds
        return Eg * steepest + abs_g * moved + computed * (
            LIBRARY_ULPS * u * self.df_terms(z, a) + self.reference_df_bar(z, abs_fprime))

    def reference_df_bar(self, z: Array, abs_fprime: Array) -> Array:
        """How far the reference's own f′ may be from the exact one at z: reference_df_error·|f′|
        (an activation whose reference f′ is an estimate with an error bar of its own says so here)."""
        return self.reference_df_error * abs_fprime

    @functools.cached_property
    def textbook_view(self) -> "Activation":
        """This activation with f_terms and df_terms widened to its textbook forms' terms (the
        textbook allowance of the verdict); itself where it declares none."""
        return widened(self, {"f": "f_terms", "df": "df_terms"})

    def __repr__(self) -> str:
        return f"<activation {self.name}>"

    def __reduce__(self):
        """Pickled by name (a layer stack sent to a worker process holds activations; their cached
        textbook forms hold functions that do not pickle): the registered object comes back."""
        return (_registered, (self.name,))


class Identity(Activation):
    """f(z) = z;  f'(z) = 1."""
    name = "identity"
    torch_module = ("Identity", {})
    formula = "f(z) = z"
    derivative = "f′(z) = 1"

    def f(self, z):
        return z.copy()

    def df(self, z, a):
        return np.ones_like(z)


class Sigmoid(Activation):
    """σ(z) = 1/(1 + e^{-z});  σ'(z) = a(1 - a), computed from the output as torch does."""
    name, range = "sigmoid", (0.0, 1.0)
    torch_module = ("Sigmoid", {})
    df_turning_points = (0.0,)
    formula = "σ(z) = 1/(1 + e⁻ᶻ)"
    derivative = "σ′(z) = a(1 − a)"
    textbook = (Textbook("f", "σ(z) = (1 + tanh(z/2))/2", "1 + tanh(z/2)", "1/(1 + e⁻ᶻ)",
                         naive_sigmoid_tanh, lambda z, a: 0.5 * (1 + np.abs(np.tanh(z / 2)))),)

    def f(self, z):
        return sigmoid(z)

    def df(self, z, a):
        return self.df_from_output(a)

    def df_from_output(self, a):
        return (1 - a) * a


class Tanh(Activation):
    """tanh(z);  tanh'(z) = 1 - a², from the output as torch does."""
    name, range = "tanh", (-1.0, 1.0)
    torch_module = ("Tanh", {})
    df_turning_points = (0.0,)
    formula = "tanh(z) = (eᶻ − e⁻ᶻ)/(eᶻ + e⁻ᶻ)"
    derivative = "tanh′(z) = 1 − a²"
    textbook = (Textbook("f", "(eᶻ − e⁻ᶻ)/(eᶻ + e⁻ᶻ)", "eᶻ − e⁻ᶻ", "its tanh kernel",
                         lambda z: (quiet_exp(z) - quiet_exp(-z)) / (quiet_exp(z) + quiet_exp(-z)),
                         lambda z, a: 1 + np.abs(a)),)

    def f(self, z):
        return np.tanh(z)

    def df(self, z, a):
        return self.df_from_output(a)

    def df_from_output(self, a):
        return 1 - a * a

    def df_terms(self, z, a):
        return 1 + a * a


class ReLU(Activation):
    """max(0, z);  f'(z) = 1 if z > 0 else 0. Kink: torch takes relu'(0) = 0."""
    name, range, kinks = "relu", (0.0, INF), (0.0,)
    torch_module = ("ReLU", {})
    formula = "relu(z) = max(0, z)"
    derivative = "relu′(z) = 1 if z > 0 else 0"

    def f(self, z):
        return np.maximum(z, 0)

    def df(self, z, a):
        return (z > 0).astype(z.dtype)


class LeakyReLU(Activation):
    """z if z > 0 else s·z, s = 0.01;  f'(z) = 1 if z > 0 else s. Kink: f'(0) = s."""
    name, slope, kinks = "leaky_relu", 0.01, (0.0,)
    torch_module = ("LeakyReLU", {})
    formula = "f(z) = z if z > 0 else 0.01z"
    derivative = "f′(z) = 1 if z > 0 else 0.01"

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
    name, range, kinks = "elu", (-1.0, INF), (0.0,)
    torch_module = ("ELU", {})
    scale, alpha, input_scale = 1.0, 1.0, 1.0
    formula = "f(z) = z if z > 0 else eᶻ − 1"
    derivative = "f′(z) = 1 if z > 0 else eᶻ"

    def f(self, z):
        return np.where(z > 0, z * self.scale,
                        np.expm1(np.minimum(z, 0) / self.input_scale) * (self.alpha * self.scale))

    def df(self, z, a):
        neg = np.exp(np.minimum(z, 0) / self.input_scale) * (self.alpha * self.scale / self.input_scale)
        return np.where(z > 0, self.scale, neg).astype(z.dtype)

    def df_from_output(self, a):
        """f' = λ for a > 0 (z > 0), else (a + λα)/c."""
        return np.where(a > 0, self.scale, (a + self.scale * self.alpha) / self.input_scale)

    def df_terms(self, z, a):
        return np.where(z > 0, self.scale, (np.abs(a) + self.scale * self.alpha) / self.input_scale)

    def naive_f(self, z):
        """λα(e^{z/c} − 1) for z ≤ 0, as the formula is written: cancels for small |z|."""
        return np.where(z > 0, z * self.scale, (quiet_exp(np.minimum(z, 0) / self.input_scale) - 1)
                        * (self.alpha * self.scale))

    def naive_f_terms(self, z, a):
        """λα·e^{z/c} and λα, the two terms of e^{z/c} − 1 (times λα)."""
        return np.where(z > 0, np.abs(a), self.scale * self.alpha * (np.exp(np.minimum(z, 0) / self.input_scale) + 1))

    @functools.cached_property
    def textbook(self):
        written = self.formula.split(" else ", 1)[1].split("   ")[0]
        return (Textbook("f", written, "eᶻ − 1" if self.input_scale == 1 else "e^(z/α) − 1", "expm1",
                         self.naive_f, self.naive_f_terms),)


class SELU(ELU):
    __doc__ = ELU.__doc__
    name = "selu"
    torch_module = ("SELU", {})
    formula = "f(z) = λz if z > 0 else λα(eᶻ − 1)   (λ ≈ 1.0507, α ≈ 1.6733)"
    derivative = "f′(z) = λ if z > 0 else λαeᶻ   (λ ≈ 1.0507, α ≈ 1.6733)"
    scale, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    range = (-scale * alpha, INF)


class CELU(ELU):
    __doc__ = ELU.__doc__
    name = "celu"
    torch_module = ("CELU", {})
    formula = "f(z) = z if z > 0 else α(e^(z/α) − 1)   (α = 1)"
    derivative = "f′(z) = 1 if z > 0 else e^(z/α)   (α = 1)"


class GELU(Activation):
    """z·Φ(z), Φ the standard normal CDF = ½(1 + erf(z/√2));  f'(z) = Φ(z) + z·φ(z).

    NumPy has no erf, so Φ is evaluated with ``math.erf`` in float64 and
    rounded once to the working dtype; everything else stays in the dtype.
    """
    name, range = "gelu", (-0.17, INF)
    torch_module = ("GELU", {})
    turning_points, df_turning_points = (-0.7517915246936,), (-math.sqrt(2), math.sqrt(2))
    formula = "f(z) = zΦ(z), Φ(z) = ½(1 + erf(z/√2))"
    derivative = "f′(z) = Φ(z) + zφ(z)"

    def _cdf(self, z):
        return (0.5 * (1 + _erf(z.astype(np.float64) * math.sqrt(0.5)))).astype(z.dtype)

    def _pdf(self, z):
        return np.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi))

    def f(self, z):
        return z * self._cdf(z)

    def df(self, z, a):
        return self._cdf(z) + z * self._pdf(z)

    def _erf_terms(self, z):
        """½(1 + |erf(z/√2)|): Φ computed as ½(1 + erf), as torch does, cancels for z < 0."""
        return 0.5 * (1 + np.abs(_erf(z.astype(np.float64) * math.sqrt(0.5))))

    def f_terms(self, z, a):
        return np.abs(z) * self._erf_terms(z)

    def df_terms(self, z, a):
        return self._erf_terms(z) + np.abs(z) * self._pdf(z)


class GELUTanh(Activation):
    """½z(1 + tanh u), u = √(2/π)(z + 0.044715 z³);
    f'(z) = ½(1 + tanh u) + ½z(1 - tanh² u)·√(2/π)(1 + 3·0.044715 z²)."""
    name, range = "gelu_tanh", (-0.17, INF)
    torch_module = ("GELU", {"approximate": "tanh"})
    turning_points, df_turning_points = (-0.752461422071,), (-1.41850400882, 1.41850400882)
    beta, kappa = math.sqrt(2 / math.pi), 0.044715
    formula = "f(z) = ½z(1 + tanh u), u = √(2/π)(z + 0.044715z³)"
    derivative = "f′(z) = ½(1 + tanh u) + ½z(1 − tanh²u)·√(2/π)(1 + 3·0.044715z²)"

    def _tanh_u(self, z):
        with np.errstate(over="ignore", invalid="ignore"):
            return np.tanh(self.beta * (z + self.kappa * (z * z * z)))

    def f(self, z):
        return 0.5 * z * (1 + self._tanh_u(z))

    def df(self, z, a):
        t = self._tanh_u(z)
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * self.beta * (1 + 3 * self.kappa * z * z)

    def _inner(self, z):
        """|u| = √(2/π)(|z| + 0.044715|z|³) and 1 - tanh² u: a rounding of u moves tanh u by (1 - t²)·|u|·ε."""
        t = self._tanh_u(z)
        return self.beta * (np.abs(z) + self.kappa * np.abs(z) ** 3), 1 - t * t, t

    def f_terms(self, z, a):
        u, sech2, t = self._inner(z)
        return 0.5 * np.abs(z) * (1 + np.abs(t) + sech2 * u)

    def df_terms(self, z, a):
        u, sech2, t = self._inner(z)
        slope = self.beta * (1 + 3 * self.kappa * z * z)
        return 0.5 * (1 + np.abs(t)) + 0.5 * np.abs(z) * (1 + t * t) * slope + \
            sech2 * u * (0.5 + np.abs(z) * np.abs(t) * slope)


class SiLU(Activation):
    """z·σ(z);  f'(z) = σ(z)(1 + z(1 - σ(z)))."""
    name, range = "silu", (-0.28, INF)
    torch_module = ("SiLU", {})
    turning_points, df_turning_points = (-1.2784645427611,), (-2.3993572805, 2.3993572805)
    formula = "f(z) = zσ(z)"
    derivative = "f′(z) = σ(z)(1 + z(1 − σ(z)))"

    def f(self, z):
        return z * sigmoid(z)

    def df(self, z, a):
        s = sigmoid(z)
        return s * (1 + z * (1 - s))

    def df_terms(self, z, a):
        return sigmoid(z) * (1 + np.abs(z))


class Softplus(Activation):
    """log(1 + e^{z}), and z itself above torch's threshold 20;
    f'(z) = e^{z}/(1 + e^{z}) = σ(z), and 1 above the threshold."""
    name, range = "softplus", (0.0, INF)
    torch_module = ("Softplus", {})
    threshold = 20.0
    kinks = (threshold,)     # f and f' jump by about e^{-20} where torch switches to z
    formula = "f(z) = log(1 + eᶻ) if z ≤ 20 else z"
    derivative = "f′(z) = σ(z)"
    textbook = (
        Textbook("f", "log(1 + eᶻ)", "1 + eᶻ", "log1p(eᶻ)",
                 lambda z: np.where(z > 20, z, naive_softplus(np.minimum(z, 20))), lambda z, a: 1 + np.abs(a)),
        Textbook("df", "σ(z) = (1 + tanh(z/2))/2", "1 + tanh(z/2)", "1/(1 + e⁻ᶻ)",
                 lambda z: np.where(z > 20, 1, naive_sigmoid_tanh(z)).astype(z.dtype), _one),
    )
    conventions = (Convention("f", lambda z: z > 20, "torch's softplus is z itself above its threshold "
                              "20, where log(1 + eᶻ) exceeds z by up to e⁻²⁰"),
                   Convention("df", lambda z: z > 20, "torch's softplus′ is 1 above its threshold 20, where "
                              "σ(z) falls short of 1 by up to e⁻²⁰"))

    def f(self, z):
        return np.where(z > self.threshold, z, np.log1p(quiet_exp(np.minimum(z, self.threshold))))

    def df(self, z, a):
        return np.where(z > self.threshold, 1, sigmoid(z)).astype(z.dtype)


class Mish(Activation):
    """z·tanh(softplus(z));  f'(z) = tanh(sp) + z·σ(z)(1 - tanh²(sp)), sp = log(1 + e^{z})."""
    name, range = "mish", (-0.31, INF)
    torch_module = ("Mish", {})
    turning_points, df_turning_points = (-1.1924312145155,), (-2.2563763964, 1.4905711795)
    formula = "f(z) = z·tanh(sp), sp = log(1 + eᶻ)"
    derivative = "f′(z) = tanh(sp) + zσ(z)(1 − tanh²(sp)), sp = log(1 + eᶻ)"

    def _tsp(self, z):
        return np.tanh(np.log1p(quiet_exp(z)))

    def f(self, z):
        return z * self._tsp(z)

    def df(self, z, a):
        t = self._tsp(z)
        return t + z * sigmoid(z) * (1 - t * t)

    def df_terms(self, z, a):
        t = self._tsp(z)
        return np.abs(t) + np.abs(z) * sigmoid(z) * (1 + t * t)

    def _softplus_error(self, z):
        """What log(1 + eᶻ) may lose, (2 + sp)·u in units of u, carried through tanh: (1 - t²)(2 + sp)."""
        sp = np.log1p(quiet_exp(z))
        t = np.tanh(sp)
        return np.where(t < 1, (1 - t * t) * (2 + np.minimum(sp, 1e300)), 0.0)   # 0, not 0·∞, where tanh is 1

    def naive_f(self, z):
        """z·tanh(log(1 + eᶻ)), softplus as written."""
        return z * np.tanh(naive_softplus(z))

    def naive_df(self, z):
        t = np.tanh(naive_softplus(z))
        return t + z * naive_sigmoid(z) * (1 - t * t)

    @functools.cached_property
    def textbook(self):
        return (Textbook("f", "z·tanh(log(1 + eᶻ))", "1 + eᶻ", "log1p(eᶻ)", self.naive_f,
                         lambda z, a: np.abs(a) + np.abs(z) * self._softplus_error(z)),
                Textbook("df", "tanh(sp) + zσ(z)(1 − tanh²(sp)), sp = log(1 + eᶻ)", "1 + eᶻ", "log1p(eᶻ)",
                         self.naive_df, lambda z, a: self.df_terms(z, a)
                         + self._softplus_error(z) * (1 + 2 * np.abs(z) * sigmoid(z))))


class Softsign(Activation):
    """z/(1 + |z|);  f'(z) = 1/(1 + |z|)²."""
    name, range = "softsign", (-1.0, 1.0)
    torch_module = ("Softsign", {})
    df_turning_points = (0.0,)
    formula = "f(z) = z/(1 + |z|)"
    derivative = "f′(z) = 1/(1 + |z|)²"

    def f(self, z):
        return z / (1 + np.abs(z))

    def df(self, z, a):
        d = 1 + np.abs(z)
        return 1 / (d * d)

    def df_terms(self, z, a):
        """1/(1 + |z|) and |z|/(1 + |z|)²: the quotient rule, as autograd applies it to z/(1 + |z|)."""
        d = 1 + np.abs(z)
        return 1 / d + np.abs(z) / (d * d)


class Hardtanh(Activation):
    """clip(z, lo, hi);  f'(z) = 1 for lo < z < hi, else 0. Kinks: torch takes 0 at both corners.
    hardtanh: lo, hi = -1, 1.  relu6: lo, hi = 0, 6."""
    name, range = "hardtanh", (-1.0, 1.0)
    torch_module = ("Hardtanh", {})
    formula = "f(z) = min(max(z, −1), 1)"
    derivative = "f′(z) = 1 if −1 < z < 1 else 0"

    @property
    def kinks(self):
        return self.range

    def f(self, z):
        return np.clip(z, *self.range)

    def df(self, z, a):
        lo, hi = self.range
        return ((z > lo) & (z < hi)).astype(z.dtype)


class ReLU6(Hardtanh):
    __doc__ = Hardtanh.__doc__
    name, range = "relu6", (0.0, 6.0)
    torch_module = ("ReLU6", {})
    formula = "f(z) = min(max(z, 0), 6)"
    derivative = "f′(z) = 1 if 0 < z < 6 else 0"


class Hardsigmoid(Activation):
    """relu6(z + 3)/6;  f'(z) = 1/6 for -3 < z < 3, else 0 (torch: 0 at both corners).
    (torch's float64 kernel uses 1/6 rounded to float32, 5e-9 off; we use the exact 1/6.)"""
    name, range, kinks = "hardsigmoid", (0.0, 1.0), (-3.0, 3.0)
    torch_module = ("Hardsigmoid", {})
    formula = "f(z) = min(max(z + 3, 0), 6)/6"
    derivative = "f′(z) = 1/6 if −3 < z < 3 else 0"
    reference_df_error = abs(float(np.float32(1 / 6)) * 6 - 1)   # torch's f' relative error, any dtype

    def f(self, z):
        return np.clip(z + 3, 0, 6) / 6

    def f_terms(self, z, a):
        return np.where(np.abs(z) < 3, (np.abs(z) + 3) / 6, np.abs(a))

    def df(self, z, a):
        return np.where((z > -3) & (z < 3), 1 / 6, 0).astype(z.dtype)


class Hardswish(Activation):
    """z·relu6(z + 3)/6;  f'(z) = 0 for z <= -3, z/3 + ½ for -3 < z < 3, 1 for z >= 3
    (torch's corners: f'(-3) = 0, f'(3) = 1)."""
    name, range, kinks = "hardswish", (-0.375, INF), (-3.0, 3.0)
    torch_module = ("Hardswish", {})
    turning_points = (-1.5,)
    formula = "f(z) = z·min(max(z + 3, 0), 6)/6"
    derivative = "f′(z) = 0 if z ≤ −3, z/3 + ½ if −3 < z < 3, 1 if z ≥ 3"

    def f(self, z):
        return z * np.clip(z + 3, 0, 6) / 6

    def df(self, z, a):
        return np.where(z <= -3, 0, np.where(z >= 3, 1, z / 3 + 0.5)).astype(z.dtype)

    def f_terms(self, z, a):
        return np.abs(z) * (np.abs(z) + 3) / 6

    def df_terms(self, z, a):
        return np.abs(z) / 3 + 0.5


class LogSigmoid(Activation):
    """log σ(z) = min(z, 0) - log(1 + e^{-|z|});  f'(z) = 1 - σ(z) = σ(-z)."""
    name, range = "logsigmoid", (-INF, 0.0)
    torch_module = ("LogSigmoid", {})
    formula = "f(z) = log σ(z)"
    derivative = "f′(z) = 1 − σ(z)"
    textbook = (
        Textbook("f", "log(1/(1 + e⁻ᶻ))", "1 + e⁻ᶻ", "log1p(e⁻|ᶻ|)", lambda z: np.log(1 / (1 + quiet_exp(-z))),
                 lambda z, a: 1 + np.abs(a)),
        Textbook("df", "1 − σ(z)", "1 − σ(z)", "σ(−z)", lambda z: 1 - naive_sigmoid(z),
                 lambda z, a: 1 + sigmoid(z)),
    )

    def f(self, z):
        return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))

    def f_terms(self, z, a):
        return np.abs(np.minimum(z, 0)) + np.log1p(np.exp(-np.abs(z)))

    def df(self, z, a):
        return sigmoid(-z)


class Tanhshrink(Activation):
    """z - tanh(z);  f'(z) = tanh²(z)."""
    name = "tanhshrink"
    torch_module = ("Tanhshrink", {})
    df_turning_points = (0.0,)
    formula = "f(z) = z − tanh(z)"
    derivative = "f′(z) = tanh²(z)"

    def f(self, z):
        return z - np.tanh(z)

    def f_terms(self, z, a):
        return np.abs(z) + np.abs(np.tanh(z))

    def df(self, z, a):
        t = np.tanh(z)
        return t * t

    def df_terms(self, z, a):
        """1 - (1 - tanh²z), as autograd differentiates z - tanh z, as well as tanh²z."""
        t = np.tanh(z)
        return 2 * t * t + 1


class Softmax(Activation):
    """a_j = e^{z_j}/Σ_k e^{z_k} over the feature axis (row-wise, max-shifted).

    Not elementwise: ∂a_j/∂z_i = a_j(δ_ij - a_i), so the backward pass is the
    vector-Jacobian product g·J = a ⊙ (g - Σ_j g_j a_j), one row at a time.
    """
    name, range, elementwise = "softmax", (0.0, 1.0), False
    torch_module = ("Softmax", {"dim": 1})
    formula = "aⱼ = e^(zⱼ)/Σₖ e^(zₖ), row by row"
    derivative = "the softmax Jacobian ∂aⱼ/∂zᵢ = aⱼ(δᵢⱼ − aᵢ), row by row (not elementwise)"

    def f(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def vjp(self, z, a, g):
        return a * (g - (g * a).sum(axis=1, keepdims=True))

    def forward_error(self, z, a, Ez, u, ends=None):
        """Each z_j off by at most Ez_j moves a_i by a factor within e^{±(Ez_i + max_j Ez_j)};
        rounding: the shift z - max, exp, the k-term sum and the division."""
        k = z.shape[1]
        spread = np.abs(z - z.max(axis=1, keepdims=True))
        moved = np.minimum(a * np.expm1(Ez + Ez.max(axis=1, keepdims=True)), 1.0)
        return moved + u * a * (LIBRARY_ULPS * spread + (a * spread).sum(axis=1, keepdims=True)
                                + k + 2 * LIBRARY_ULPS)

    def vjp_error(self, z, a, g, Ez, Ea, Eg, u, ends=None):
        """δ = a ⊙ (g - s), s = Σ_j g_j a_j: each product x·y off by |x|Ey + |y|Ex + ExEy (a
        clamped loss gradient can jump far enough for the last term to count), and the
        rounding of s (k terms) and of the two products."""
        k = z.shape[1]
        held_g, held_a = np.abs(g) + Eg, a + Ea          # what an implementation holds, at most
        ga = (held_g * held_a).sum(axis=1, keepdims=True)
        s = (g * a).sum(axis=1, keepdims=True)
        Es = (Eg * a + np.abs(g) * Ea + Eg * Ea).sum(axis=1, keepdims=True) + (k + 2) * u * ga
        return Ea * np.abs(g - s) + held_a * (Eg + Es) + 4 * u * held_a * (held_g + ga)


class LogSoftmax(Activation):
    """a_j = z_j - log Σ_k e^{z_k} over the feature axis (log-sum-exp, max-shifted).

    Not elementwise: ∂a_j/∂z_i = δ_ij - softmax(z)_i, so the backward pass is
    g·J = g - e^{a} Σ_j g_j (e^{a} = softmax(z)).
    """
    name, range, elementwise = "log_softmax", (-INF, 0.0), False
    torch_module = ("LogSoftmax", {"dim": 1})
    formula = "aⱼ = zⱼ − log Σₖ e^(zₖ), row by row"
    derivative = "the log_softmax Jacobian ∂aⱼ/∂zᵢ = δᵢⱼ − softmax(z)ᵢ, row by row (not elementwise)"

    def f(self, z):
        s = z - z.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    def vjp(self, z, a, g):
        return g - np.exp(a) * g.sum(axis=1, keepdims=True)

    def f_terms(self, z, a):
        """z_i - max, exp of the shifted values, the k-term sum and its log (or z_i - (max +
        log Σ): the same terms)."""
        top = z.max(axis=1, keepdims=True)
        spread = np.abs(z - top)
        lse = np.abs(np.log(np.exp(z - top).sum(axis=1, keepdims=True)))
        return np.abs(z) + np.abs(top) + spread + (np.exp(a) * spread).sum(axis=1, keepdims=True) + lse + \
            z.shape[1] + 2

    def forward_error(self, z, a, Ez, u, ends=None):
        """log-sum-exp moves by at most max_j Ez_j, and each a_i with its z_i."""
        return Ez + Ez.max(axis=1, keepdims=True) + LIBRARY_ULPS * u * self.f_terms(z, a)

    def vjp_error(self, z, a, g, Ez, Ea, Eg, u, ends=None):
        """δ = g - p Σ_j g_j, p = e^a: first order in Ea and Eg, and the rounding of the sum
        (k terms), of e^a and of the product."""
        k = z.shape[1]
        p = np.exp(a)
        total = g.sum(axis=1, keepdims=True)
        moved_p = p * np.expm1(Ea)
        held_g, held_p = np.abs(g) + Eg, p + moved_p     # what an implementation holds, at most
        return Eg + held_p * Eg.sum(axis=1, keepdims=True) + np.abs(total) * moved_p + u * (
            2 * held_g + held_p * ((k + 2) * held_g.sum(axis=1, keepdims=True)
                                   + LIBRARY_ULPS * (np.abs(total) + Eg.sum(axis=1, keepdims=True))))


def _registered(name: str) -> Activation:
    return ACTIVATIONS[name]


ACTIVATIONS: Registry[Activation] = Registry("activation", {
    cls.name: cls() for cls in (
        Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, SELU, CELU, GELU, GELUTanh,
        SiLU, Mish, Softplus, Softsign, Hardtanh, Hardsigmoid, Hardswish, ReLU6,
        LogSigmoid, Tanhshrink, Softmax, LogSoftmax,
    )
})
