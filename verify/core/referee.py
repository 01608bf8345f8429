"""Finite differences as a third referee: ∂J/∂θ from J alone, in float64, with its own error bar.

The referee evaluates the loss J of torch's float64 twin (its forward only: no autograd, no
backward formula of either side) at perturbed inputs, one element θ at a time, with the step

    h = u^(1/3) · max(1, |θ|)          (u = 2⁻⁵³; h made exact: h = fl(θ + h) − θ)

and takes the central differences D(h) = (J(θ+h) − J(θ−h)) / 2h and D(2h), combined by
Richardson extrapolation, R = D(h) + (D(h) − D(2h))/3, the value it reports. Its error bar is
the sum of two printed terms:

- truncation: |D(h) − D(2h)|, three times the h² term of D(h) that R removes (R's own is O(h⁴)
  for a smooth J). The factor 3 covers a J whose second derivative jumps (relu(z)² at 0, where J
  has no corner but Richardson's assumption fails and R is off by |D(h) − D(2h)|·2/3); the estimate
  also absorbs the rounding noise of the two differences;
- rounding: 1.5 · ε_J / h, the rounding of one evaluation of J carried through R = (4D(h) − D(2h))/3,
  with ε_J the larger of ROUNDING_ULPS · u · max|J| over the evaluations (the function's magnitude;
  for a sum that may cancel, the magnitude of its terms) and |S(2h) − 4S(h)|/4, the rounding the
  evaluations actually show (S below; an ill-conditioned J rounds far beyond u·|J|).

A corner of J inside the step (relu at z = 0 exactly, a max pooling tie, |a − y| at 0) shows as
one-sided slopes that differ: for a smooth J the second differences S(h) = J(θ+h) − 2J(θ) + J(θ−h)
and S(2h) satisfy S(2h) ≈ 4S(h) (up to O(h⁴) and rounding), at a corner S(2h) ≈ 2S(h). Where
|S(2h) − 4S(h)| exceeds its rounding, S(2h) lies nearer 2S(h) than 4S(h), and the one-sided slopes
(J(θ+h) − J(θ))/h and (J(θ) − J(θ−h))/h differ by more than CORNER_JUMP of the larger (rounding
noise in an ill-conditioned J is no corner), the element is marked ``corner``: its reported value
is the mean of the one-sided slopes, and its error bar their half-difference (at least
|D(h) − D(2h)|); the derivative there is a convention, not a number the referee can
confirm (verify.harness.referee says so instead of siding with either side).

Where J is analytic in θ, the referee uses the complex step as well (Squire and Trapp 1998): J of a
complex128 copy of the twin at θ + ih, whose imaginary part is h·J′(θ) − h³J‴(θ)/6 + …, with no
difference taken, so no cancellation and h as small as COMPLEX_STEP = 1e-20·max(1, |θ|). Its value
is D(h) = Im J(θ + ih)/h, and its error bar:

- truncation: |D(h) − D(3h)|, eight times the h² term of D(h) (≈ 1e-40 relative), and the rounding
  noise the two evaluations show (their imaginary parts round differently);
- rounding: ROUNDING_ULPS · u · max(|D(h)|, Σ|Im Jₖ|/h), the rounding of one evaluation of Im J,
  relative to the imaginary parts of the terms Jₖ whose sum is J (the loss's elements, divided as its
  reduction divides them), so that their cancellation counts; cancellation within one term's
  evaluation shows only in the truncation term's two evaluations.

J is analytic where every function of the case is, as a complex function that torch evaluates as
the same formula: COMPLEX_ACTIVATIONS and COMPLEX_LOSSES (a dense network only; torch 2.13's CPU
kernels, each checked against autograd by tests/test_referee.py; the others raise for complex
input, or, as softsign's |z|, are not analytic). Each element's complex step is kept only where it
lies within the central differences' error bar (which the referee computes anyway, and which
also detects a corner); elsewhere, and for every other function, the central differences stand.
Each estimate says which method gave each element and its error bar.

The referee never overrules torch: it is a third opinion, with its error bar, on the
derivatives only (δ, ∂W, ∂b, ∂x, a stack's ∂J/∂out and parameter gradients, and the parameters
after one step, θ − η·∂J/∂θ); the forward tensors are J's own evaluation, its subject, not its
verdict.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from handimpl.stack import param_key
from verify.core.compare import split_name
from verify.core.stack_twin import _named, build_stack_twin
from verify.core.torch_ops import TORCH_LOSSES
from verify.core.twin import build_twin, torch_target

UNIT = 2.0 ** -53                     # float64's unit roundoff
STEP = UNIT ** (1.0 / 3.0)            # ≈ 4.8e-6: balances the h² truncation and the u/h rounding
ROUNDING_ULPS = 16.0                  # ε_J = ROUNDING_ULPS · u · max|J|: the rounding of one evaluation of J
CORNER_ULPS = 64.0                    # |S(2h) − 4S(h)| beyond CORNER_ULPS · u · max|J|: a corner within the step
CORNER_JUMP = 1e-3                    # ... whose one-sided slopes differ by this fraction of the larger at least
METHOD = "central differences in float64 (steps h and 2h, Richardson)"
COMPLEX_STEP = 1e-20                  # the complex step's h, times max(1, |θ|)
COMPLEX_METHOD = "the complex step in complex128 (Im J(θ + ih)/h, h = 1e-20·max(1, |θ|), and 3h)"
# How a note names the method that gave an element (Estimate.method_at).
CENTRAL, COMPLEX = "central differences, float64", "complex step, complex128"


@dataclass(frozen=True)
class Estimate:
    """The referee's opinion of one tensor (each field of its shape): ``value`` (R, or at a corner
    the mean one-sided slope), ``truncation`` and ``rounding`` (the two terms of its error bar),
    ``corner`` (one-sided slopes differ: a kink within the step), ``step`` (h per element) and the
    method used."""
    value: np.ndarray
    truncation: np.ndarray
    rounding: np.ndarray
    corner: np.ndarray
    step: np.ndarray
    method: str = METHOD
    complex_step: np.ndarray | None = None     # where the complex step gave the value (None: nowhere)

    @property
    def error(self) -> np.ndarray:
        """The error bar: truncation + rounding."""
        return self.truncation + self.rounding

    def method_at(self, k: int) -> str:
        """The method that gave flat element ``k``: CENTRAL or COMPLEX."""
        return COMPLEX if self.complex_step is not None and bool(self.complex_step.reshape(-1)[k]) else CENTRAL

    def scaled(self, factor: float, offset: np.ndarray) -> "Estimate":
        """offset + factor·(this estimate): θ − η·∂J/∂θ, the parameters after one step."""
        return Estimate(offset + factor * self.value, abs(factor) * self.truncation,
                        abs(factor) * self.rounding, self.corner, self.step, self.method, self.complex_step)


def _combine(j0: Any, jp: Any, jm: Any, jp2: Any, jm2: Any, h: Any, magnitude: Any = 0.0) -> tuple[Any, ...]:
    """(value, truncation, rounding, corner) from J at θ, θ ± h and θ ± 2h: floats, or arrays
    elementwise (the module docstring's formulas, in one place for both)."""
    with np.errstate(all="ignore"):
        d1 = (jp - jm) / (2 * h)
        d2 = (jp2 - jm2) / (4 * h)
        scale = np.maximum.reduce([np.abs(j0), np.abs(jp), np.abs(jm), np.abs(jp2), np.abs(jm2),
                                   np.broadcast_to(magnitude, np.shape(j0))])
        s1, s2 = jp - 2 * j0 + jm, jp2 - 2 * j0 + jm2
        # The rounding of one evaluation of J: the model's, or what the second differences show, the
        # larger (for a smooth J, S(2h) − 4S(h) is rounding alone, up to an O(h⁴) term).
        eps_J = np.maximum(ROUNDING_ULPS * UNIT * scale, np.abs(s2 - 4 * s1) / 4)
        right, left = (jp - j0) / h, (j0 - jm) / h
        # A corner at θ: S(2h) ≈ 2S(h) where smooth gives 4S(h), beyond the rounding, and a jump of
        # the slope that is a visible part of the slope itself (not the rounding of an ill-conditioned J).
        corner = ((np.abs(s2 - 4 * s1) > CORNER_ULPS * UNIT * scale) & (np.abs(s2 - 2 * s1) < np.abs(s2 - 4 * s1))
                  & (np.abs(right - left) > CORNER_JUMP * np.maximum(np.abs(right), np.abs(left))))
        value = np.where(corner, (right + left) / 2, d1 + (d1 - d2) / 3)
        truncation = np.where(corner, np.maximum(np.abs(right - left) / 2, np.abs(d1 - d2)), np.abs(d1 - d2))
        rounding = np.where(corner, 2 * ROUNDING_ULPS * UNIT * scale, 1.5 * eps_J) / h
        finite = np.isfinite(j0) & np.isfinite(jp) & np.isfinite(jm) & np.isfinite(jp2) & np.isfinite(jm2)
        value = np.where(finite, value, np.nan)
        truncation = np.where(finite, truncation, np.inf)
        rounding = np.where(finite, rounding, np.inf)
    return value, truncation, rounding, corner & finite


def steps(theta: Any) -> Any:
    """h = u^(1/3)·max(1, |θ|), made exact: fl(θ + h) − θ."""
    h = STEP * np.maximum(1.0, np.abs(theta))
    return (theta + h) - theta


def central(J: Callable[[float], float], theta: float,
            magnitude: float = 0.0) -> tuple[float, float, float, bool, float]:
    """One element: (value, truncation, rounding, corner, h) from J as a function of θ alone;
    ``magnitude``: the size of J's terms where it is a sum that may cancel (rounding is relative
    to the larger of it and max|J|)."""
    h = float(steps(theta))
    j = [J(theta), J(theta + h), J(theta - h), J(theta + 2 * h), J(theta - 2 * h)]
    value, trunc, rounding, corner = _combine(*(np.float64(v) for v in j), h, magnitude)
    return float(value), float(trunc), float(rounding), bool(corner), h


def complex_step(J: Callable[[complex], tuple[complex, float]], theta: float) -> tuple[float, float, float]:
    """One element by the complex step: (value, truncation, rounding) from J(θ + δ) for complex δ,
    which gives J and the sum of the absolute imaginary parts of its terms (the module docstring);
    NaN and infinite bars where J is not finite there."""
    h = COMPLEX_STEP * max(1.0, abs(theta))
    with np.errstate(all="ignore"):
        (j1, terms), (j3, _) = J(1j * h), J(3j * h)
        d1, d3 = j1.imag / h, j3.imag / (3 * h)
    if not (np.isfinite(d1) and np.isfinite(d3) and np.isfinite(terms)):
        return np.nan, np.inf, np.inf
    return d1, abs(d1 - d3), ROUNDING_ULPS * UNIT * max(abs(d1), terms / h)


def elementwise_derivative(f: Callable[[np.ndarray], np.ndarray], z: np.ndarray) -> Estimate:
    """f′ of an elementwise function at every element of ``z`` at once, in float64: five calls of
    ``f`` on whole arrays (a user activation's derivative, verify.core.custom)."""
    z = np.asarray(z, dtype=np.float64)
    h = steps(z)

    def F(v: np.ndarray) -> np.ndarray:
        return np.asarray(f(v), dtype=np.float64).reshape(z.shape)

    value, trunc, rounding, corner = _combine(F(z), F(z + h), F(z - h), F(z + 2 * h), F(z - 2 * h), h)
    return Estimate(value, trunc, rounding, corner, h)


def _mean_or_sum(terms: torch.Tensor, reduction: str) -> torch.Tensor:
    """The terms whose sum is the loss: each divided by their number for 'mean'."""
    return terms / terms.numel() if reduction == "mean" else terms


def _quadratic_terms(a: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The tutorial's J = (1/m) Σᵢ ½‖aᵢ − yᵢ‖², term by term."""
    terms = 0.5 * (a - y) ** 2
    return terms / a.shape[0] if reduction == "mean" else terms


def _mse_terms(a: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """torch's mse_loss, mean((a − y)²), term by term (its kernel takes no complex input)."""
    return _mean_or_sum((a - y) ** 2, reduction)


def _cross_entropy_terms(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """torch's cross_entropy, one term per example (its kernel takes no complex input): −Σ_c q_c log p_c,
    p = softmax(z) (shifted by the real part's maximum), q the one-hot target (or the given
    probabilities) smoothed, q ← (1 − ε)q + ε/C."""
    C = z.shape[1]
    shifted = z - z.real.max(dim=1, keepdim=True).values
    logp = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    q = torch.nn.functional.one_hot(y, C).to(logp.dtype) if y.dtype == torch.int64 else y.to(logp.dtype)
    q = (1 - label_smoothing) * q + label_smoothing / C
    return _mean_or_sum(-(q * logp).sum(dim=1), reduction)


def _torch_terms(name: str) -> Callable[..., torch.Tensor]:
    """A torch loss function's terms: its reduction='none', each divided by their number for 'mean'."""
    def terms(a: torch.Tensor, y: torch.Tensor, reduction: str = "mean", **options: Any) -> torch.Tensor:
        return _mean_or_sum(TORCH_LOSSES[name](a, y, reduction="none", **options), reduction)
    return terms


# The functions J may be made of where the referee takes the complex step: analytic, and evaluated by
# torch (2.13, CPU) for complex input as the same formula. Activations: their torch modules. Losses:
# the terms whose sum is J (so that the rounding bar counts their cancellation), by torch's function
# or (quadratic, mse_loss, cross_entropy, whose kernels take no complex input or sum at once) the formula
# written above. torch's complex kernels stop there: relu, hardtanh, relu6 (clamp), leaky_relu, elu,
# selu, celu, gelu, mish, softplus, hardsigmoid, hardswish, logsigmoid, softmax, log_softmax and the
# other losses raise for complex input; softsign's |z| is not analytic (its complex step is wrong).
COMPLEX_ACTIVATIONS = ("identity", "sigmoid", "tanh", "silu", "tanhshrink")
COMPLEX_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "quadratic": _quadratic_terms, "mse_loss": _mse_terms, "cross_entropy": _cross_entropy_terms,
    "poisson_nll_loss": _torch_terms("poisson_nll_loss"), "soft_margin_loss": _torch_terms("soft_margin_loss"),
}


class ComplexTwin:
    """J of a dense case as a function of one element of one input moved by a complex δ: the float64
    twin's weights, biases, x and y in complex128, its activation modules, the loss of COMPLEX_LOSSES.
    ``of`` gives None where some function of the case is not among those (the complex step does not
    apply)."""

    def __init__(self, spec: Any, model: torch.nn.Sequential, x: torch.Tensor, y: torch.Tensor):
        layers = list(model)
        self.W = [lin.weight.detach().to(torch.complex128) for lin in layers[0::2]]
        self.b = [None if lin.bias is None else lin.bias.detach().to(torch.complex128) for lin in layers[0::2]]
        self.acts = layers[1::2]
        self.x = x.to(torch.complex128)
        self.y = y if y.dtype == torch.int64 else y.to(torch.complex128)
        self.loss = functools.partial(COMPLEX_LOSSES[spec.loss], **spec.loss_kwargs)
        self.variables = {"x", *(f"{p}{l}" for l in range(1, spec.depth + 1) for p in "Wz"),
                          *(f"b{l}" for l in range(1, spec.depth + 1) if self.b[l - 1] is not None)}

    @classmethod
    def of(cls, spec: Any, model: torch.nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> "ComplexTwin | None":
        if hasattr(spec, "layers") or spec.loss not in COMPLEX_LOSSES \
                or spec.loss_kwargs.get("reduction", "mean") not in ("mean", "sum") \
                or not all(a in COMPLEX_ACTIVATIONS for a in spec.activations):
            return None
        return cls(spec, model, x, y)

    def J(self, name: str, k: int, delta: complex) -> tuple[complex, float]:
        """J with element ``k`` (flat) of ``name`` ('W2', 'b1', 'x', or the offset of 'z2') moved by
        ``delta``, and the sum of the absolute imaginary parts of its terms."""
        def moved(t: torch.Tensor, key: str) -> torch.Tensor:
            if key != name:
                return t
            t = t.clone()
            t.view(-1)[k] += delta
            return t

        with torch.no_grad():
            a = moved(self.x, "x")
            for l, (W, b, act) in enumerate(zip(self.W, self.b, self.acts), start=1):
                z = a @ moved(W, f"W{l}").T
                if b is not None:
                    z = z + moved(b, f"b{l}")
                a = act(moved(z, f"z{l}"))
            terms = self.loss(a, self.y)
            return complex(terms.sum().item()), float(terms.imag.abs().sum())


class Probe:
    """J of torch's float64 twin of a case as a function of one element of one input: a parameter
    (a dense 'W2', 'b1', a stack's 'W1', 'gamma2', 'W3.1'), x ('x'), or an offset added to an
    intermediate tensor (a dense 'z2', whose derivative is δ²; a stack's 'out3', whose is ∂J/∂out³).
    Evaluated with torch.no_grad, forward only."""

    def __init__(self, spec: Any, case: Any):
        self.spec = spec
        self.stack = hasattr(spec, "layers")
        if self.stack:
            self.model = build_stack_twin(spec, case.params, "float64")
            self.inputs = dict(_named(spec, self.model, "params"))
            self.after = {i: f"out{i + 1}" for i in range(len(self.model))}    # ∂J/∂out⁽ⁱ⁾
        else:
            self.model = build_twin(spec, case.params, "float64")
            self.inputs = {}
            for l, linear in enumerate(list(self.model)[0::2], start=1):
                self.inputs[f"W{l}"] = linear.weight
                if linear.bias is not None:
                    self.inputs[f"b{l}"] = linear.bias
            self.after = {2 * l: f"z{l + 1}" for l in range(spec.depth)}     # after each Linear: δ⁽ˡ⁾
        tokens = getattr(spec, "tokens", False)
        self.x = torch.from_numpy(np.array(case.x))
        if not tokens:
            self.x = self.x.to(torch.float64)
            self.inputs["x"] = self.x
        self.y = torch_target(case.y, "float64")
        self.complex = None if self.stack else ComplexTwin.of(spec, self.model, self.x, self.y)
        self.offsets: dict[int, torch.Tensor] = {}
        self.base: dict[str, torch.Tensor] = {}       # the intermediate tensors, unperturbed
        with torch.no_grad():
            self.J0 = self.evaluate(record=True)
        for name, value in self.base.items():
            self.inputs[name] = torch.zeros_like(value)

    def evaluate(self, record: bool = False) -> float:
        h = self.x
        for i, module in enumerate(self.model):
            h = module(h)
            name = self.after.get(i)
            if name is None:
                continue
            if record:
                self.base[name] = h.detach().clone()
            elif name == self.offset_active:
                h = h + self.inputs[name]
        J = TORCH_LOSSES[self.spec.loss](h, self.y, **self.spec.loss_kwargs)
        return float(J)

    offset_active = ""

    def derivative(self, name: str, indices: Sequence[int] | None = None) -> Estimate:
        """The referee's estimate of ∂J/∂``name`` at the given flat indices (None: all), the other
        elements NaN."""
        tensor = self.inputs[name]
        flat = tensor.data.view(-1)
        base = self.base[name].reshape(-1) if name in self.base else None
        n = flat.numel()
        out = np.full((5, n), np.nan)
        corner = np.zeros(n, dtype=bool)
        by_complex = np.zeros(n, dtype=bool)
        analytic = self.complex is not None and name in self.complex.variables
        self.offset_active = name if base is not None else ""
        with torch.no_grad():
            for k in (range(n) if indices is None else indices):
                saved = float(flat[k])
                theta0 = saved if base is None else float(base[k])

                def J(theta: float) -> float:
                    flat[k] = theta if base is None else theta - theta0
                    return self.evaluate()
                try:
                    value, trunc, rounding, corner[k], h = central(J, theta0)
                finally:
                    flat[k] = saved
                out[:, k] = (value, trunc, rounding, h, 0.0)
                if analytic and not corner[k]:
                    cv, ct, cr = complex_step(functools.partial(self.complex.J, name, k), theta0)
                    # kept where it lies within the central differences' bar (and they within its own)
                    if np.isfinite(cv) and abs(cv - value) <= trunc + rounding + ct + cr:
                        out[:3, k] = (cv, ct, cr)
                        by_complex[k] = True
        self.offset_active = ""
        shape = tuple(tensor.shape)
        return Estimate(out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape),
                        corner.reshape(shape), out[3].reshape(shape),
                        COMPLEX_METHOD if by_complex.any() else METHOD,
                        by_complex.reshape(shape) if by_complex.any() else None)


def function_gradients(f: Callable[[dict[str, np.ndarray]], np.ndarray], arrays: dict[str, np.ndarray],
                       dout: np.ndarray, names: Sequence[str]) -> dict[str, Estimate]:
    """The referee for a function with no torch counterpart: ∂L/∂``name`` for each of ``names``,
    where L = Σ dout ⊙ f(arrays) (so the estimate is what a backward(dout) should return), by
    central() one element at a time, ``f`` called on copies of ``arrays`` with that element moved."""
    dout = np.asarray(dout, dtype=np.float64)

    def L(values: dict[str, np.ndarray]) -> tuple[float, float]:
        terms = dout * np.asarray(f(values), dtype=np.float64).reshape(dout.shape)
        return float(terms.sum()), float(np.abs(terms).sum())

    _, magnitude = L({k: np.array(v, dtype=np.float64) for k, v in arrays.items()})
    out = {}
    for name in names:
        base = np.array(arrays[name], dtype=np.float64)
        fields = np.zeros((4, base.size))
        corner = np.zeros(base.size, dtype=bool)
        for k in range(base.size):
            def J(theta: float, k: int = k) -> float:
                moved = {key: np.array(v, dtype=np.float64) for key, v in arrays.items()}
                moved[name].reshape(-1)[k] = theta
                return L(moved)[0]
            value, trunc, rounding, corner[k], h = central(J, float(base.reshape(-1)[k]), magnitude)
            fields[:, k] = (value, trunc, rounding, h)
        shape = base.shape
        out[name] = Estimate(*(a.reshape(shape) for a in fields[:3]), corner.reshape(shape), fields[3].reshape(shape))
    return out


def variable_of(spec: Any, name: str) -> str | None:
    """The input of J whose derivative the traced tensor ``name`` is ('delta2' -> 'z2', 'dW1' ->
    'W1', a stack's 'grad3' -> 'out3', 'dgamma2' -> 'gamma2', 'dx' -> 'x'); None for a tensor that
    is no derivative (the forward tensors, the loss, buffers). A parameter after the step is
    handled by ``estimate``."""
    if name == "dx":
        return "x"
    quantity, layer = split_name(name)
    if layer is None:
        return None
    if hasattr(spec, "layers"):
        if quantity == "grad":
            return f"out{layer}"
        if name.startswith("d") and not name.endswith("_after"):
            key = name[1:]
            params = {param_key("", p, i) for i, lay in enumerate(spec.layers, 1) for p in _all_params(lay)}
            return key if key in params else None
        return None
    if quantity == "delta":
        return f"z{layer}"
    if quantity in ("dW", "db"):
        return f"{quantity[1:]}{layer}"
    return None


def _all_params(layer: Any) -> list[str]:
    """A stack layer's parameter names, a residual block's inner ones as '1.W', '2.gamma'."""
    if getattr(layer, "kind", "") == "residual":
        return [f"{j}.{p}" for j, sub in enumerate(layer.inner, 1) for p in sub.param_names]
    return list(layer.param_names)


def judged_by_referee(spec: Any, name: str) -> bool:
    """Whether the referee has an opinion of the traced tensor ``name`` (a derivative, or a
    parameter after the step)."""
    if name.endswith("_after"):
        return variable_of(spec, "d" + name[: -len("_after")]) is not None
    return variable_of(spec, name) is not None


def estimate(probe: Probe, name: str, lr: float, indices: Sequence[int] | None = None) -> Estimate:
    """The referee's estimate of the traced tensor ``name`` (judged_by_referee), at ``indices``."""
    if name.endswith("_after"):
        key = name[: -len("_after")]
        grad = estimate(probe, "d" + key, lr, indices)
        return grad.scaled(-lr, probe.inputs[variable_of(probe.spec, "d" + key)].detach().numpy().copy())
    variable = variable_of(probe.spec, name)
    if variable is None:
        raise KeyError(f"{name}: not a derivative the referee estimates")
    return probe.derivative(variable, indices)
