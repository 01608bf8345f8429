"""Losses J(a, y) with their gradients ∂J/∂a, named as in torch.nn.functional.

``a`` is the network output a⁽ᴸ⁾, shape (m, k); ``y`` is the target, shape
(m, k), or (m,) of int64 class indices for ``cross_entropy``/``nll_loss``.
Each loss is one small object:

- ``value(a, y, reduction, **opts)``  J as a 0-d array of a's dtype;
- ``grad(a, y, reduction, **opts)``   ∂J/∂a, shape (m, k), a's dtype;
- ``shortcut(z, a, y, reduction, **opts)``  only for losses with canonical
  output activations (``canonical``): the tutorial's δ⁽ᴸ⁾ = (a - y)/m in its true
  form, to be compared with the general chain-rule path ∂J/∂a ⊙ f'(z).

``reduction`` is torch's: 'sum' adds the per-element terms; 'mean' divides by
the number of terms torch divides by, which is m·k for the elementwise losses
(mse_loss, l1_loss, ..., binary_cross_entropy, kl_div) and m for
cross_entropy and nll_loss. ``quadratic`` is the tutorial's J = (1/m) Σᵢ ½‖ŷᵢ - yᵢ‖².

``target`` names the kind of y a loss takes (for drawing valid data) and
``domain`` the interval a⁽ᴸ⁾ must lie in (checked against the output
activation's range).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .activations import ACTIVATIONS, LIBRARY_ULPS, quiet_exp, sigmoid
from .registry import Registry
from .textbook import Convention, Textbook, widened

Array = np.ndarray
INF = math.inf


class Loss:
    """A loss; ``options`` are its own keyword arguments with torch's defaults.

    The texts verify explain displays: ``formula``, ℓ per element (ℓᵢ per row for the row-wise
    losses); ``grad_formula``, ∂J/∂a⁽ᴸ⁾ with N the divisor of the reduction; for a loss with a
    ``shortcut``, ``shortcut_formula``, that δ⁽ᴸ⁾, and ``cancellations``, for each canonical
    output activation, why ∂J/∂a⁽ᴸ⁾ ⊙ f′ collapses to it.
    """

    name: str = ""
    torch_function: str | None = ""   # its torch counterpart: torch.nn.functional.<name>
    formula: str = ""
    grad_formula: str = ""
    shortcut_formula: str | None = None
    cancellations: dict[str, str] = {}
    options: dict = {}
    reductions: tuple[str, ...] = ("mean", "sum")
    target: str = "real"          # real | unit | sign | counts | class | distribution
    canonical: tuple[str, ...] = ()  # output activations with a (a - y)/m shortcut
    elementwise = True            # ℓ of each element depends on that element of a alone
    textbook: tuple[Textbook, ...] = ()   # its documented formulas where they lose digits (handimpl.textbook)
    conventions: tuple[Convention, ...] = ()   # where torch departs from the formula (handimpl.textbook)

    def domain(self, **opts) -> tuple[float, float]:
        """Closed interval the input a⁽ᴸ⁾ must lie in."""
        return (-INF, INF)

    def terms(self, a: Array, y: Array, **opts) -> Array:
        """The per-element loss terms ℓ(a, y), shape (m, k)."""
        raise NotImplementedError

    def dterms(self, a: Array, y: Array, **opts) -> Array:
        """∂ℓ/∂a elementwise, shape (m, k)."""
        raise NotImplementedError

    def count(self, a: Array, reduction: str) -> int:
        """What 'mean' divides by (torch: every element), 1 for 'sum'."""
        return a.size if reduction == "mean" else 1

    def value(self, a: Array, y: Array, reduction: str = "mean", **opts) -> Array:
        """J = Σ ℓ / N, N as ``count``."""
        return np.asarray(self.terms(a, y, **opts).sum() / self.count(a, reduction), dtype=a.dtype)

    def grad(self, a: Array, y: Array, reduction: str = "mean", **opts) -> Array:
        """∂J/∂a = (∂ℓ/∂a) / N."""
        return (self.dterms(a, y, **opts) / self.count(a, reduction)).astype(a.dtype, copy=False)

    def shortcut(self, z: Array, a: Array, y: Array, reduction: str = "mean", **opts) -> Array:
        raise NotImplementedError(f"{self.name} has no canonical output activation")

    # The rounding bounds of the verdict (verify.bounds; Activation has the same pair): how far
    # a correct evaluation of J, and of ∂J/∂a, may land when a is off by up to Ea, computed in
    # float64, u the unit roundoff of the dtype judged.

    def magnitudes(self, a: Array, y: Array, **opts) -> Array:
        """Σ|terms| of the evaluation of each ℓ (|ℓ| where nothing cancels)."""
        return np.abs(self.terms(a, y, **opts))

    def dmagnitudes(self, a: Array, y: Array, **opts) -> Array:
        """Σ|terms| of the evaluation of each ∂ℓ/∂a."""
        return np.abs(self.dterms(a, y, **opts))

    def _ends(self, a: Array, Ea: Array, **opts) -> tuple[Array, Array]:
        lo, hi = self.domain(**opts)
        if (lo, hi) == (-INF, INF):         # defined everywhere: nothing to clip
            return a - Ea, a + Ea
        return np.clip(a - Ea, lo, hi), np.clip(a + Ea, lo, hi)

    def value_error(self, a: Array, y: Array, Ea: Array, u: float, reduction: str = "mean",
                    **opts) -> Array:
        """How far each term ℓ moves over a's interval (read at its two ends: a clamp or a
        kink inside puts one end on each side), plus the rounding of each term and of the sum,
        over N. The rounding is of the terms an implementation holds, anywhere in that interval:
        their magnitudes plus the move (docs/verdict.md, "the rounding of what is held")."""
        here = self.terms(a, y, **opts)
        with np.errstate(all="ignore"):
            moved = np.maximum(*[np.abs(self.terms(v, y, **opts) - here) for v in self._ends(a, Ea, **opts)])
            moved = np.where(Ea > 0, moved, 0.0)
            carried = moved.sum()
            rounding = u * ((a.size + 2) * (np.abs(here) + moved).sum()
                            + LIBRARY_ULPS * (self.magnitudes(a, y, **opts) + moved).sum())
        return np.asarray((carried + rounding) / self.count(a, reduction))

    def grad_error(self, a: Array, y: Array, Ea: Array, u: float, reduction: str = "mean",
                   **opts) -> Array:
        """How far ∂ℓ/∂a moves over a's interval (each element alone: an elementwise loss), plus
        its rounding, over N. Where a is exact (Ea = 0) nothing moves. The rounding is of the
        gradient an implementation holds, anywhere in a's interval: its magnitudes plus the move
        (a float32 a that rounds to 1 under binary_cross_entropy holds (1 − y)/ε, 2,000 times the
        reference's gradient: docs/verdict.md, "the rounding of what is held")."""
        moving = np.asarray(Ea) > 0
        if moving.any():
            here = self.dterms(a, y, **opts)
            with np.errstate(all="ignore"):
                moved = np.maximum(*[np.abs(self.dterms(v, y, **opts) - here) for v in self._ends(a, Ea, **opts)])
            moved = np.where(moving, moved, 0.0)
        else:
            moved = np.zeros(np.broadcast_shapes(moving.shape, np.shape(a)))
        return (moved + LIBRARY_ULPS * u * (self.dmagnitudes(a, y, **opts) + moved)) / self.count(a, reduction)

    @functools.cached_property
    def textbook_view(self) -> "Loss":
        """This loss with magnitudes and dmagnitudes widened to its textbook forms' terms (the
        textbook allowance of the verdict); itself where it declares none."""
        return widened(self, {"value": "magnitudes", "grad": "dmagnitudes"})

    def __repr__(self) -> str:
        return f"<loss {self.name}>"

    def __reduce__(self):
        """Pickled by name, as an activation is: the registered object comes back."""
        return (_registered, (self.name,))


class MSELoss(Loss):
    """ℓ = (a - y)²;  ∂ℓ/∂a = 2(a - y). 'mean' divides by m·k (every element), not by m.
    Canonical with identity: δ⁽ᴸ⁾ = 2(a - y)/(m·k)."""
    name, canonical = "mse_loss", ("identity",)
    torch_function = "mse_loss"
    formula, grad_formula = "ℓ = (a − y)²", "∂J/∂a⁽ᴸ⁾ = 2(a⁽ᴸ⁾ − y)/N"
    shortcut_formula = "2(a − y)/N"
    cancellations = {"identity": (
        "identity has f′ = 1, so δ⁽ᴸ⁾ = ∂J/∂a = 2(a − y)/N: mse_loss's ℓ = (a − y)² has no ½, so "
        "its derivative 2(a − y) keeps the factor 2 that the tutorial's ½(a − y)² cancels. "
        "(a − y)/N, without the 2, is half of δ⁽ᴸ⁾.")}

    def terms(self, a, y):
        d = a - y
        return d * d

    def dterms(self, a, y):
        return 2 * (a - y)

    def shortcut(self, z, a, y, reduction="mean"):
        return 2 * (a - y) / self.count(a, reduction)


class Quadratic(Loss):
    """The tutorial's cost J = (1/m) Σᵢ ½‖aᵢ - yᵢ‖²  ('sum': no 1/m);  ∂J/∂a = (a - y)/m.
    Canonical with identity: δ⁽ᴸ⁾ = (a - y)/m, the tutorial's δ = a - y per example."""
    name, canonical = "quadratic", ("identity",)
    torch_function = None    # torch has none: verify writes it with torch ops
    formula, grad_formula = "ℓᵢ = ½‖aᵢ − yᵢ‖²", "∂J/∂a⁽ᴸ⁾ = (a⁽ᴸ⁾ − y)/N"
    shortcut_formula = "(a − y)/N"
    cancellations = {"identity": (
        "identity has f′ = 1, so δ⁽ᴸ⁾ = ∂J/∂a = (a − y)/N: exactly the tutorial's δ = a − y, averaged.")}

    def count(self, a, reduction):
        return a.shape[0] if reduction == "mean" else 1

    def terms(self, a, y):
        d = a - y
        return 0.5 * (d * d)

    def dterms(self, a, y):
        return a - y

    def shortcut(self, z, a, y, reduction="mean"):
        return (a - y) / self.count(a, reduction)


class L1Loss(Loss):
    """ℓ = |a - y|;  ∂ℓ/∂a = sign(a - y), with torch's sign(0) = 0."""
    name = "l1_loss"
    torch_function = "l1_loss"
    formula, grad_formula = "ℓ = |a − y|", "∂J/∂a⁽ᴸ⁾ = sign(a⁽ᴸ⁾ − y)/N"

    def terms(self, a, y):
        return np.abs(a - y)

    def dterms(self, a, y):
        return np.sign(a - y)


class HuberLoss(Loss):
    """ℓ = ½d² if |d| < δ else δ(|d| - ½δ), d = a - y;  ∂ℓ/∂a = clip(d, -δ, δ)."""
    name, options = "huber_loss", {"delta": 1.0}
    torch_function = "huber_loss"
    formula = "ℓ = ½d² if |d| < δ else δ(|d| − ½δ), d = a − y"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = clip(a⁽ᴸ⁾ − y, −δ, δ)/N   (δ = delta)"

    def terms(self, a, y, delta=1.0):
        d = np.abs(a - y)
        return np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))

    def dterms(self, a, y, delta=1.0):
        return np.clip(a - y, -delta, delta)


class SmoothL1Loss(Loss):
    """ℓ = ½d²/β if |d| < β else |d| - ½β, d = a - y;  ∂ℓ/∂a = d/β if |d| < β else sign(d).
    β = 0 is l1_loss (torch's special case)."""
    name, options = "smooth_l1_loss", {"beta": 1.0}
    torch_function = "smooth_l1_loss"
    formula = "ℓ = ½d²/β if |d| < β else |d| − ½β, d = a − y"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = (d/β if |d| < β else sign(d))/N, d = a⁽ᴸ⁾ − y   (β = beta)"

    def terms(self, a, y, beta=1.0):
        d = np.abs(a - y)
        if beta == 0:
            return d
        return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)

    def dterms(self, a, y, beta=1.0):
        d = a - y
        if beta == 0:
            return np.sign(d)
        return np.where(np.abs(d) < beta, d / beta, np.sign(d))


class BCELoss(Loss):
    """ℓ = -[y·max(log a, -100) + (1 - y)·max(log(1 - a), -100)] (torch clamps each log at -100);
    ∂ℓ/∂a = (a - y)/max(a(1 - a), 1e-12) (torch's ε keeps the saturated ends finite).
    Canonical with sigmoid: δ⁽ᴸ⁾ = (a - y)/(m·k)."""
    name, target, canonical = "binary_cross_entropy", "unit", ("sigmoid",)
    torch_function = "binary_cross_entropy"
    formula = "ℓ = −[y log a + (1 − y) log(1 − a)]   (each log clamped at −100)"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = (a⁽ᴸ⁾ − y)/(a⁽ᴸ⁾(1 − a⁽ᴸ⁾)) / N"
    shortcut_formula = "(a − y)/N"
    cancellations = {"sigmoid": (
        "∂J/∂a = (a − y)/(a(1 − a))/N and σ′(z) = a(1 − a): the product is "
        "(a − y)/(a(1 − a)) · a(1 − a)/N = (a − y)/N. The a(1 − a) cancels.")}
    eps = float(np.float32(1e-12))      # torch's EPSILON is a float constant, in every dtype
    written_eps = 1e-12                 # the same ε as the number is written (and as float64 rounds it)

    def domain(self, **opts):
        return (0.0, 1.0)

    def grad_error(self, a, y, Ea, u, reduction="mean", **opts):
        """Loss.grad_error, and where the clamp holds, the move between torch's ε (1e-12 rounded
        to float32) and 1e-12 as written: both are correct evaluations of the documented clamp."""
        written = (a - y) / np.maximum((1 - a) * a, self.written_eps)
        return super().grad_error(a, y, Ea, u, reduction, **opts) + \
            np.abs(written - self.dterms(a, y)) / self.count(a, reduction)

    @staticmethod
    def naive_grad(a, y):
        """−y/a + (1 − y)/(1 − a): the derivative of the documented ℓ term by term (no clamp)."""
        return -y / a + (1 - y) / (1 - a)

    def naive_grad_terms(self, a, y):
        """y/a and (1 − y)/(1 − a), where torch's clamp does not hold (where it does, the two
        forms differ by torch's convention, not by rounding: its own magnitudes there)."""
        with np.errstate(all="ignore"):
            terms = np.abs(y) / a + np.abs(1 - y) / (1 - a)
        return np.where((1 - a) * a > self.eps, terms, self.dmagnitudes(a, y))

    @functools.cached_property
    def conventions(self):
        def clamped_log(a, y):
            with np.errstate(divide="ignore"):
                return (np.log(a) < -100) | (np.log(1 - a) < -100)
        return (Convention("grad", lambda a, y: (1 - a) * a < self.eps,
                           "torch clamps the denominator a(1 − a) of ∂J/∂a at ε = 1e-12 here (with sigmoid, "
                           "where |z| > 27.6); your value is the unclamped gradient, such as the shortcut (a − y)/N"),
                Convention("value", clamped_log, "torch clamps each log at −100 here (a within e⁻¹⁰⁰ of 0 or 1)"))

    @functools.cached_property
    def textbook(self):
        return (Textbook("grad", "−y/a + (1 − y)/(1 − a)", "−y/a + (1 − y)/(1 − a)",
                         "(a − y)/max(a(1 − a), ε)", self.naive_grad, self.naive_grad_terms),)

    def terms(self, a, y):
        with np.errstate(divide="ignore"):
            log_a = np.maximum(np.log(a), -100)
            log_1a = np.maximum(np.log(1 - a), -100)
        return -(y * log_a + (1 - y) * log_1a)

    def dterms(self, a, y):
        return (a - y) / np.maximum((1 - a) * a, self.eps)

    def magnitudes(self, a, y):
        """The two logs, and the unit a rounding of 1 - a (or of a) adds to each."""
        return np.abs(self.terms(a, y)) + 1

    def shortcut(self, z, a, y, reduction="mean"):
        return (a - y) / self.count(a, reduction)


class BCEWithLogitsLoss(Loss):
    """ℓ = (1 - y)a + log(1 + e^{-a}) = (1 - y)a - log σ(a) on logits a, evaluated in that last
    form as torch does (log σ stable, see logsigmoid), so that float32 rounds as torch's does
    where (1 - y)a and -log σ(a) cancel (the form max(a, 0) - a·y + log(1 + e^{-|a|}) rounds differently there);
    ∂ℓ/∂a = σ(a) - y. Canonical with identity: δ⁽ᴸ⁾ = (σ(z) - y)/(m·k)."""
    name, target, canonical = "binary_cross_entropy_with_logits", "unit", ("identity",)
    torch_function = "binary_cross_entropy_with_logits"
    formula, grad_formula = "ℓ = (1 − y)a − log σ(a)", "∂J/∂a⁽ᴸ⁾ = (σ(a⁽ᴸ⁾) − y)/N"
    shortcut_formula = "(σ(z) − y)/N"
    cancellations = {"identity": (
        "the loss takes logits: ∂J/∂a = (σ(a) − y)/N and f′ = 1, the tutorial's (a − y) with a = σ(z).")}

    def terms(self, a, y):
        return (1 - y) * a - ACTIVATIONS["logsigmoid"].f(a)

    def dterms(self, a, y):
        return sigmoid(a) - y

    def magnitudes(self, a, y):
        return np.abs((1 - y) * a) + ACTIVATIONS["logsigmoid"].f_terms(a, None)

    def dmagnitudes(self, a, y):
        return sigmoid(a) + np.abs(y)

    def shortcut(self, z, a, y, reduction="mean"):
        return (sigmoid(a) - y) / self.count(a, reduction)

    @staticmethod
    def naive_value(a, y):
        """max(a, 0) − a·y + log(1 + e^{−|a|}), its log(1 + ·) as written."""
        return np.maximum(a, 0) - a * y + np.log(1 + quiet_exp(-np.abs(a)))

    def naive_terms(self, a, y):
        return np.abs(a) + np.abs(a * y) + 1 + np.log1p(np.exp(-np.abs(a)))

    @functools.cached_property
    def textbook(self):
        return (Textbook("value", "max(a, 0) − a·y + log(1 + e^(−|a|))", "1 + e^(−|a|)", "log1p",
                         self.naive_value, self.naive_terms),)


def _log_softmax(a: Array) -> Array:
    return ACTIVATIONS["log_softmax"].f(a)


def class_rows(y: Array, k: int, dtype) -> Array:
    """Class-index targets (m,) as one-hot rows (m, k); probability rows pass through."""
    if y.ndim == 1:
        return np.eye(k, dtype=dtype)[y]
    return y


class CrossEntropyLoss(Loss):
    """On logits a, with class indices y (m,) or probability rows y (m, k):
    J = -Σᵢ Σⱼ tᵢⱼ log softmax(aᵢ)ⱼ / m, t = (1 - ε)·onehot(y) + ε/k (label smoothing ε);
    ∂J/∂a = (softmax(a) - t)/m. 'mean' divides by m (the batch), not by m·k.
    Canonical with identity: δ⁽ᴸ⁾ = (softmax(z) - t)/m, the tutorial's (a - y)/m."""
    name, target, canonical = "cross_entropy", "class", ("identity",)
    torch_function = "cross_entropy"
    formula = "ℓᵢ = −Σⱼ tᵢⱼ log softmax(aᵢ)ⱼ   (t = one-hot y, label-smoothed)"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = (softmax(a⁽ᴸ⁾) − t)/N   (t = one-hot y; a⁽ᴸ⁾ are logits)"
    shortcut_formula = "(softmax(z) − y)/N"
    cancellations = {"identity": (
        "cross_entropy is log_softmax followed by nll_loss (torch builds LogSoftmaxBackward0 and "
        "NllLossBackward0 for it). nll_loss gives −t/N; log_softmax's backward g − softmax(z)·Σⱼgⱼ "
        "turns it into −t/N + softmax(z)·(Σⱼtⱼ)/N = (softmax(z) − t)/N since Σⱼtⱼ = 1. "
        "With a = softmax(z) this is the tutorial's (a − y)/N; identity's f′ = 1 adds nothing.")}
    options = {"label_smoothing": 0.0}
    elementwise = False           # each row's log-sum-exp couples its elements

    def value_error(self, a, y, Ea, u, reduction="mean", label_smoothing=0.0):
        """Σ|∂ℓ/∂a|·Ea (first order; |softmax(a) - t| <= 1 keeps it bounded), plus rounding."""
        slope = np.abs(self.dterms(a, y, label_smoothing))
        with np.errstate(all="ignore"):
            carried = np.where(Ea > 0, slope * Ea, 0.0).sum()
            rounding = u * ((a.size + 2) * np.abs(self.terms(a, y, label_smoothing)).sum()
                            + LIBRARY_ULPS * self.magnitudes(a, y, label_smoothing).sum())
        return np.asarray((carried + rounding) / self.count(a, reduction))

    def count(self, a, reduction):
        return a.shape[0] if reduction == "mean" else 1

    def _t(self, a, y, label_smoothing):
        t = class_rows(y, a.shape[1], a.dtype)
        return t * (1 - label_smoothing) + label_smoothing / a.shape[1]

    def terms(self, a, y, label_smoothing=0.0):
        return -self._t(a, y, label_smoothing) * _log_softmax(a)

    def dterms(self, a, y, label_smoothing=0.0):
        t = self._t(a, y, label_smoothing)
        return np.exp(_log_softmax(a)) * t.sum(axis=1, keepdims=True) - t

    def magnitudes(self, a, y, label_smoothing=0.0):
        t = self._t(a, y, label_smoothing)
        log_p = _log_softmax(a)
        return np.abs(t) * (np.abs(log_p) + ACTIVATIONS["log_softmax"].f_terms(a, log_p))

    def grad_error(self, a, y, Ea, u, reduction="mean", label_smoothing=0.0):
        """softmax(a)·Σt - t: the softmax term moves by a factor within e^{±(Ea_i + max_j Ea_j)}
        (a row-wise function, so not each element alone), plus the rounding of the softmax."""
        t = self._t(a, y, label_smoothing)
        p = np.exp(_log_softmax(a))
        tsum = np.abs(t).sum(axis=1, keepdims=True)
        softmax = ACTIVATIONS["softmax"]
        moved = softmax.forward_error(a, p, Ea, u)
        return (tsum * moved + LIBRARY_ULPS * u * (tsum * (p + moved) + np.abs(t))) / self.count(a, reduction)

    def shortcut(self, z, a, y, reduction="mean", label_smoothing=0.0):
        return (np.exp(_log_softmax(a)) - self._t(a, y, label_smoothing)) / self.count(a, reduction)


class NLLLoss(Loss):
    """On log-probabilities a with class indices y: J = -Σᵢ a[i, yᵢ] / m;
    ∂J/∂a = -onehot(y)/m. Canonical with log_softmax: δ⁽ᴸ⁾ = (e^{a} - onehot(y))/m."""
    name, target, canonical = "nll_loss", "class", ("log_softmax",)
    torch_function = "nll_loss"
    formula, grad_formula = "ℓᵢ = −a[i, yᵢ]", "∂J/∂a⁽ᴸ⁾ = −onehot(y)/N"
    shortcut_formula = "(e^a − y)/N"
    cancellations = {"log_softmax": (
        "nll_loss gives ∂J/∂a = −onehot(y)/N; the log_softmax Jacobian-vector product "
        "g − e^a·Σⱼgⱼ turns it into −onehot(y)/N + e^a/N = (softmax(z) − onehot(y))/N, "
        "the tutorial's (a − y)/N with a read as probabilities e^a.")}

    def domain(self, **opts):
        return (-INF, 0.0)

    def count(self, a, reduction):
        return a.shape[0] if reduction == "mean" else 1

    def terms(self, a, y):
        return -class_rows(y, a.shape[1], a.dtype) * a

    def dterms(self, a, y):
        return -class_rows(y, a.shape[1], a.dtype)

    def shortcut(self, z, a, y, reduction="mean"):
        return (np.exp(a) - class_rows(y, a.shape[1], a.dtype)) / self.count(a, reduction)


class KLDivLoss(Loss):
    """On log-probabilities a, target probabilities y: ℓ = y·log y - y·a, with 0·log 0 = 0;
    ∂ℓ/∂a = -y. With log_target: ℓ = e^{y}(y - a), ∂ℓ/∂a = -e^{y}.
    'mean' divides by m·k as torch does; 'batchmean' divides by m."""
    name, target, reductions = "kl_div", "distribution", ("mean", "sum", "batchmean")
    torch_function = "kl_div"
    formula = "ℓ = y(log y − a)   (log_target: eʸ(y − a))"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = −y/N   (log_target: −eʸ/N)"
    options = {"log_target": False}

    def domain(self, **opts):
        return (-INF, 0.0)

    def count(self, a, reduction):
        return a.shape[0] if reduction == "batchmean" else super().count(a, reduction)

    def terms(self, a, y, log_target=False):
        if log_target:
            return np.exp(y) * (y - a)
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0)   # xlogy(y, y), as torch
        return ylogy - y * a

    def dterms(self, a, y, log_target=False):
        g = -np.exp(y) if log_target else -np.asarray(y)
        return np.broadcast_to(g, np.broadcast_shapes(g.shape, np.shape(a))).astype(np.result_type(g, a))

    def magnitudes(self, a, y, log_target=False):
        if log_target:
            return np.exp(y) * (np.abs(y) + np.abs(a))
        return np.abs(self.terms(a, y) + y * a) + np.abs(y * a)


class SoftMarginLoss(Loss):
    """ℓ = log(1 + e^{-y·a}), y = ±1;  ∂ℓ/∂a = -y·e^{-ya}/(1 + e^{-ya}).
    Written exactly as torch computes it, which is not overflow-safe: for
    -y·a beyond exp's range torch returns J = inf and ∂J/∂a = nan, and so do we."""
    name, target = "soft_margin_loss", "sign"
    torch_function = "soft_margin_loss"
    formula = "ℓ = log(1 + e^(−ya))   (y = ±1)"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = −y·e^(−ya⁽ᴸ⁾)/(1 + e^(−ya⁽ᴸ⁾)) / N"

    def terms(self, a, y):
        return np.log1p(quiet_exp(-y * a))

    def dterms(self, a, y):
        e = quiet_exp(-y * a)
        with np.errstate(invalid="ignore"):
            return -y * e / (1 + e)

    textbook = (Textbook("value", "log(1 + e^(−ya))", "1 + e^(−ya)", "log1p",
                         lambda a, y: np.log(1 + quiet_exp(-y * a)),
                         lambda a, y: 1 + np.abs(np.log1p(quiet_exp(-y * a)))),)


class PoissonNLLLoss(Loss):
    """log_input (default): ℓ = e^{a} - y·a, ∂ℓ/∂a = e^{a} - y.
    Otherwise: ℓ = a - y·log(a + eps), ∂ℓ/∂a = 1 - y/(a + eps), a >= 0.
    full adds Stirling's y·log y - y + ½log(2πy) where y > 1 (no gradient)."""
    name, target = "poisson_nll_loss", "counts"
    torch_function = "poisson_nll_loss"
    formula = "ℓ = e^a − ya   (log_input=False: a − y log(a + eps))"
    grad_formula = "∂J/∂a⁽ᴸ⁾ = (e^(a⁽ᴸ⁾) − y)/N   (log_input=False: (1 − y/(a⁽ᴸ⁾ + eps))/N)"
    options = {"log_input": True, "full": False, "eps": 1e-8}

    def domain(self, log_input=True, **opts):
        return (-INF, INF) if log_input else (0.0, INF)

    def terms(self, a, y, log_input=True, full=False, eps=1e-8):
        t = quiet_exp(a) - y * a if log_input else a - y * np.log(a + eps)
        if full:
            safe = np.where(y > 1, y, 2)
            stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * math.pi * safe)
            t = t + np.where(y > 1, stirling, 0)
        return t

    def dterms(self, a, y, log_input=True, full=False, eps=1e-8):
        return quiet_exp(a) - y if log_input else 1 - y / (a + eps)

    def magnitudes(self, a, y, log_input=True, full=False, eps=1e-8):
        m = quiet_exp(a) + np.abs(y * a) if log_input else np.abs(a) + np.abs(y * np.log(a + eps)) + np.abs(y)
        if full:
            safe = np.where(y > 1, y, 2)
            m = m + np.where(y > 1, safe * np.abs(np.log(safe)) + safe + 0.5 * np.log(2 * math.pi * safe), 0)
        return m

    def dmagnitudes(self, a, y, log_input=True, full=False, eps=1e-8):
        return quiet_exp(a) + np.abs(y) if log_input else 1 + np.abs(y / (a + eps))


def _registered(name: str) -> Loss:
    return LOSSES[name]


LOSSES: Registry[Loss] = Registry("loss", {
    cls.name: cls() for cls in (
        MSELoss, L1Loss, HuberLoss, SmoothL1Loss, BCELoss, BCEWithLogitsLoss,
        CrossEntropyLoss, NLLLoss, KLDivLoss, SoftMarginLoss, PoissonNLLLoss, Quadratic,
    )
})
