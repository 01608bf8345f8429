"""Optimizers: the tutorial's W := W − η∂J/∂W, and the stateful updates torch.optim has, each
written from the algorithm torch.optim documents for it, one equation per line.

The contract of a step (docs/training.md), the same for every optimizer here and for a user's:

    step(params, grads, state, hyper) -> (params, state)
    # params, grads: dict name -> array, the same names ('W1', 'b1', 'gamma2', 'W3.1', ...)
    # state: a dict, {} before the first step, given back at the next; the harness never
    #        interprets a user's. handimpl's keeps torch.optim's layout, one dict per parameter:
    #        state[name] = {'step': t, 'exp_avg': m, 'exp_avg_sq': v, ...}
    # hyper: 'optimizer' (its name: 'sgd', 'adam', ...) and every hyperparameter by its
    #        torch.optim keyword, defaults filled in (Optimizer.hyper)

New arrays come back; the arguments are left untouched. Each optimizer is one small object:
its update written per tensor (``update``), its torch.optim counterpart by name (the registry
shared with verify's torch side), and the rounding bound of each of its equations
(``update_error``, docs/verdict.md "Optimizers"), in the style of handimpl.rounding.

Below g is the gradient, θ the parameter, t the step count (1 at the first step), η the
learning rate, λ the weight decay.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .registry import Registry
from .rounding import update_error

Array = np.ndarray
State = dict[str, Any]


# -- rounding bounds of the update equations (docs/verdict.md, "Optimizers") --------------------
# Each is computed in float64 from the magnitudes of an equation's terms: an elementwise formula
# of k roundings (each +, −, ×, ÷, √ and each rounded constant such as 1 − β) lands within
# k·u·Σ|terms| of the exact value to first order; every bound below counts k + 1 to cover the
# second-order terms. Inputs θ and the state are exact; g is off by up to Eg.

def sqrt_error(v: Array, Ev: Array, u: float) -> Array:
    """√v with v off by up to Ev: √v − √(v − Ev) = Ev/(√v + √(v − Ev)), at most √Ev (where v is
    0, or within Ev of it), and one rounding."""
    v = np.maximum(v, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.minimum(Ev / (np.sqrt(v) + np.sqrt(np.maximum(v - Ev, 0.0))), np.sqrt(Ev))
    return np.where(Ev > 0, moved, 0.0) + 2 * u * np.sqrt(v)


def quotient_error(n: Array, En: Array, d: Array, Ed: Array, u: float) -> Array:
    """n/d with n off by En and d > 0 off by Ed: (En + |n/d|·Ed)/(d − Ed) and one rounding; inf
    where d − Ed ≤ 0 (nothing bounds the quotient there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        low = d - Ed
        moved = np.where(low > 0, (En + np.abs(n / d) * Ed) / np.where(low > 0, low, 1.0), np.inf)
        return moved + 2 * u * np.abs(n / d)


def average_error(keep: float, old: Array, new: Array, Enew: Array, u: float) -> Array:
    """m ← βm + (1 − β)x: (1 − β)E_x and 4 roundings of its terms, in whichever form it is
    evaluated: β|m| + w|x| as written (w = 1 − β), or torch's lerp, m + w(x − m) for w < 1/2
    (terms |m| + w(|x| + |m|)) and x − β(x − m) otherwise (terms |x| + β(|x| + |m|))."""
    w, m, x = 1 - keep, np.abs(old), np.abs(new) + Enew
    lerp = m + w * (x + m) if w < 0.5 else x + keep * (x + m)
    return w * Enew + 5 * u * np.maximum(lerp, keep * m + w * x)


def square_average_error(keep: float, v: Array, g: Array, Eg: Array, u: float) -> Array:
    """v ← βv + (1 − β)g²: (1 − β)(2|g| + E_g)E_g and 4 roundings of βv and (1 − β)g² held."""
    held = np.abs(g) + Eg
    return (1 - keep) * (2 * np.abs(g) + Eg) * Eg + 5 * u * (keep * np.abs(v) + (1 - keep) * held * held)


def decay_error(g: Array, Eg: Array, wd: float, theta: Array, u: float) -> Array:
    """g ← g + λθ: E_g and 2 roundings (λθ and the sum)."""
    return Eg + 3 * u * (np.abs(g) + Eg + wd * np.abs(theta)) if wd else Eg


def correction_error(beta: float, t: float, u: float) -> float:
    """The relative error of 1 − βᵗ: βᵗ by any method (β rounded to the dtype, t products) is
    within 2(t + 1)u·βᵗ, which the subtraction divides by 1 − βᵗ; one more rounding."""
    power = beta ** t
    return 2 * (t + 1) * u * power / (1 - power) + u if power < 1 else math.inf


# -- the optimizers ------------------------------------------------------------------------------

Check = Callable[[Any], bool]
nonnegative: Check = lambda v: v >= 0                       # noqa: E731
fraction: Check = lambda v: 0 <= v < 1                       # noqa: E731
positive: Check = lambda v: v > 0                            # noqa: E731


class Optimizer:
    """One optimizer: ``hyper`` its hyperparameters by torch.optim keyword with torch's defaults,
    ``checks`` (keyword -> (test, what it must be)), ``state_names`` the tensors it keeps per
    parameter (torch.optim's names), ``torch_class`` its torch.optim class."""

    name = ""
    torch_class = ""
    hyper: dict[str, Any] = {}
    checks: dict[str, tuple[Check, str]] = {}
    state_names: tuple[str, ...] = ()
    counts_steps = True          # keeps state['step'] as torch.optim does (SGD does not)
    formula = ""

    # -- the contract ----------------------------------------------------------------------------
    def step(self, params: dict[str, Array], grads: dict[str, Array], state: dict, hyper: dict
             ) -> tuple[dict[str, Array], dict]:
        """One step over every parameter (the module docstring's contract)."""
        h = self.filled(hyper)
        new_params, new_state = {}, {}
        for name, theta in params.items():
            new_params[name], new_state[name] = self.update(theta, grads[name], dict(state.get(name, {})), h)
        return new_params, new_state

    def __call__(self, params, grads, state, hyper):
        return self.step(params, grads, state, hyper)

    def filled(self, hyper: dict) -> dict:
        """``hyper`` with the defaults filled in and every value checked (ValueError naming the bad one)."""
        hyper = {k: v for k, v in hyper.items() if not (k == "optimizer" and v == self.name)}
        unknown = sorted(set(hyper) - set(self.hyper))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter {unknown[0]!r}; valid: {', '.join(self.hyper)}")
        h = {**self.hyper, **hyper}
        for key, (ok, what) in self.checks.items():
            value = h[key]
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)
                       for v in values):
                raise ValueError(f"{self.name}: {key}={value!r}: must be {what}")
        self.check_together(h)
        return h

    def check_together(self, h: dict) -> None:
        """Conditions between hyperparameters (SGD's nesterov needs momentum)."""

    def update(self, theta: Array, g: Array, s: State, h: dict) -> tuple[Array, State]:
        raise NotImplementedError

    def update_error(self, theta: Array, g: Array, Eg: Array, s: State, h: dict, u: float) -> dict[str, Array]:
        """E of the new θ ('param') and of each new state tensor, for a correct evaluation in a
        dtype of unit roundoff u from the exact θ and state ``s`` (before the step) and g off by
        up to Eg; float64 arrays."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<optimizer {self.name}>"


def _prepared(theta: Array, g: Array, s: State, h: dict) -> tuple[Array, float]:
    """maximize and the step count, as every stateful torch.optim update begins."""
    if h["maximize"]:
        g = -g                                                     # g ← −∇θ J   (maximize)
    t = float(s.get("step", 0.0)) + 1                              # t ← t + 1
    return g, t


class SGD(Optimizer):
    """Stochastic gradient descent, torch.optim.SGD:

        g ← g + λθ                            (weight decay)
        b ← g  (first step),  b ← μb + (1 − τ)g  (momentum μ, dampening τ)
        g ← g + μb  (nesterov),  g ← b  (otherwise)
        θ ← θ − ηg

    With momentum 0 it is the tutorial's W := W − η∂J/∂W."""

    name, torch_class = "sgd", "SGD"
    hyper = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
             "maximize": False}
    checks = {"lr": (nonnegative, ">= 0"), "momentum": (nonnegative, ">= 0"),
              "dampening": (lambda v: True, "a number"), "weight_decay": (nonnegative, ">= 0")}
    state_names = ("momentum_buffer",)
    counts_steps = False
    formula = "b ← μb + (1 − τ)g;  θ ← θ − ηb"

    def check_together(self, h):
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("sgd: nesterov=true needs momentum > 0 and dampening=0")

    def update(self, theta, g, s, h):
        lr, mu, tau, wd = h["lr"], h["momentum"], h["dampening"], h["weight_decay"]
        if h["maximize"]:
            g = -g                                                 # g ← −g   (maximize)
        if wd:
            g = g + wd * theta                                     # g ← g + λθ
        if mu:
            b = s.get("momentum_buffer")
            if b is None:
                b = g.copy()                                       # b ← g   (first step)
            else:
                b = mu * b + (1 - tau) * g                         # b ← μb + (1 − τ)g
            s["momentum_buffer"] = b
            g = g + mu * b if h["nesterov"] else b                 # g ← g + μb  |  g ← b
        return theta - lr * g, s                                   # θ ← θ − ηg

    def update_error(self, theta, g, Eg, s, h, u):
        lr, mu, tau, wd = h["lr"], h["momentum"], h["dampening"], h["weight_decay"]
        g = -g if h["maximize"] else g
        Eg = decay_error(g, Eg, wd, theta, u)
        g = g + wd * theta
        out = {}
        if mu:
            b = s.get("momentum_buffer")
            if b is None:
                b, Eb = g, Eg
            else:
                Eb = (1 - tau) * Eg + 5 * u * (mu * np.abs(b) + abs(1 - tau) * (np.abs(g) + Eg))
                b = mu * b + (1 - tau) * g
            out["momentum_buffer"] = Eb
            if h["nesterov"]:
                Eg = Eg + mu * Eb + 4 * u * (np.abs(g) + Eg + mu * (np.abs(b) + Eb))
                g = g + mu * b
            else:
                g, Eg = b, Eb
        out["param"] = update_error(np.abs(theta), Eg, lr, np.abs(g), u)
        return out


class Adam(Optimizer):
    """Adam, torch.optim.Adam (with ``decoupled``, AdamW: torch.optim.AdamW):

        g ← g + λθ                            (weight decay; AdamW instead: θ ← θ(1 − ηλ))
        m ← β₁m + (1 − β₁)g
        v ← β₂v + (1 − β₂)g²
        v̂ ← max(v̂, v)                        (amsgrad; v̂ is max_exp_avg_sq, and replaces v below)
        θ ← θ − η/(1 − β₁ᵗ) · m/(√v/√(1 − β₂ᵗ) + ε)
    """

    name, torch_class = "adam", "Adam"
    decoupled = False
    hyper = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
             "maximize": False}
    checks = {"lr": (nonnegative, ">= 0"), "betas": (fraction, "two numbers in [0, 1)"),
              "eps": (nonnegative, ">= 0"), "weight_decay": (nonnegative, ">= 0")}
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    formula = "m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  θ ← θ − η m̂/(√v̂ + ε)"

    def filled(self, hyper):
        h = super().filled(hyper)
        if not (isinstance(h["betas"], tuple) and len(h["betas"]) == 2):
            raise ValueError(f"{self.name}: betas={h['betas']!r}: must be two numbers in [0, 1)")
        return h

    def update(self, theta, g, s, h):
        lr, (beta1, beta2), eps, wd = h["lr"], h["betas"], h["eps"], h["weight_decay"]
        g, t = _prepared(theta, g, s, h)
        m = s.get("exp_avg", np.zeros_like(theta))
        v = s.get("exp_avg_sq", np.zeros_like(theta))
        if wd and self.decoupled:
            theta = theta * (1 - lr * wd)                          # θ ← θ(1 − ηλ)   (AdamW)
        elif wd:
            g = g + wd * theta                                     # g ← g + λθ
        m = beta1 * m + (1 - beta1) * g                            # m ← β₁m + (1 − β₁)g
        v = beta2 * v + (1 - beta2) * g * g                        # v ← β₂v + (1 − β₂)g²
        s.update(step=t, exp_avg=m, exp_avg_sq=v)
        if h["amsgrad"]:
            v = np.maximum(s.get("max_exp_avg_sq", np.zeros_like(theta)), v)  # v̂ ← max(v̂, v)
            s["max_exp_avg_sq"] = v
        step_size = lr / (1 - beta1 ** t)                          # η/(1 − β₁ᵗ)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps       # √v/√(1 − β₂ᵗ) + ε
        return theta - step_size * (m / denom), s                  # θ ← θ − η m̂/(√v̂ + ε)

    def update_error(self, theta, g, Eg, s, h, u):
        lr, (beta1, beta2), eps, wd = h["lr"], h["betas"], h["eps"], h["weight_decay"]
        g, t = _prepared(theta, g, s, h)
        m0 = s.get("exp_avg", np.zeros_like(theta))
        v0 = s.get("exp_avg_sq", np.zeros_like(theta))
        E_theta = np.zeros_like(theta)
        if wd and self.decoupled:
            E_theta = 4 * u * np.abs(theta)
            theta = theta * (1 - lr * wd)
        elif wd:
            Eg = decay_error(g, Eg, wd, theta, u)
            g = g + wd * theta
        Em = average_error(beta1, m0, g, Eg, u)
        Ev = square_average_error(beta2, v0, g, Eg, u)
        m, v = beta1 * m0 + (1 - beta1) * g, beta2 * v0 + (1 - beta2) * g * g
        out = {"exp_avg": Em, "exp_avg_sq": Ev}
        if h["amsgrad"]:
            v = np.maximum(s.get("max_exp_avg_sq", np.zeros_like(theta)), v)
            out["max_exp_avg_sq"] = Ev                             # max moves by no more than its inputs
        r1, r2 = correction_error(beta1, t, u), correction_error(beta2, t, u)
        root = math.sqrt(1 - beta2 ** t)
        denom = np.sqrt(v) / root + eps
        E_denom = sqrt_error(v, Ev, u) / root + np.sqrt(v) / root * (r2 / 2) + 5 * u * denom
        q, Eq = m / denom, quotient_error(m, Em, denom, E_denom, u)
        step_size = lr / (1 - beta1 ** t)
        E_step = step_size * (Eq + np.abs(q) * (r1 + 2 * u))      # η/(1 − β₁ᵗ) rounded, and the product
        out["param"] = E_theta + E_step + 4 * u * (np.abs(theta) + E_theta + step_size * (np.abs(q) + Eq))
        return out


class AdamW(Adam):
    """AdamW, torch.optim.AdamW: Adam with the weight decay decoupled from the gradient,
    θ ← θ(1 − ηλ) before the Adam step (Loshchilov & Hutter), default λ = 0.01."""

    name, torch_class = "adamw", "AdamW"
    decoupled = True
    hyper = {**Adam.hyper, "weight_decay": 1e-2}
    formula = "θ ← θ(1 − ηλ);  then Adam's step"


class RMSprop(Optimizer):
    """RMSprop, torch.optim.RMSprop:

        g ← g + λθ                            (weight decay)
        v ← αv + (1 − α)g²
        ḡ ← αḡ + (1 − α)g                    (centered)
        d ← √(v − ḡ²) + ε  (centered),  d ← √v + ε  (otherwise)
        b ← μb + g/d,  θ ← θ − ηb             (momentum μ > 0)
        θ ← θ − ηg/d                          (otherwise)
    """

    name, torch_class = "rmsprop", "RMSprop"
    hyper = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
             "centered": False, "maximize": False}
    checks = {"lr": (nonnegative, ">= 0"), "alpha": (nonnegative, ">= 0"), "eps": (nonnegative, ">= 0"),
              "weight_decay": (nonnegative, ">= 0"), "momentum": (nonnegative, ">= 0")}
    state_names = ("square_avg", "grad_avg", "momentum_buffer")
    formula = "v ← αv + (1 − α)g²;  θ ← θ − ηg/(√v + ε)"

    def update(self, theta, g, s, h):
        lr, alpha, eps, wd, mu = h["lr"], h["alpha"], h["eps"], h["weight_decay"], h["momentum"]
        g, t = _prepared(theta, g, s, h)
        if wd:
            g = g + wd * theta                                     # g ← g + λθ
        v = alpha * s.get("square_avg", np.zeros_like(theta)) + (1 - alpha) * g * g  # v ← αv + (1 − α)g²
        s.update(step=t, square_avg=v)
        if h["centered"]:
            gbar = alpha * s.get("grad_avg", np.zeros_like(theta)) + (1 - alpha) * g  # ḡ ← αḡ + (1 − α)g
            s["grad_avg"] = gbar
            d = np.sqrt(v - gbar * gbar) + eps                     # d ← √(v − ḡ²) + ε
        else:
            d = np.sqrt(v) + eps                                   # d ← √v + ε
        if mu > 0:
            b = mu * s.get("momentum_buffer", np.zeros_like(theta)) + g / d  # b ← μb + g/d
            s["momentum_buffer"] = b
            return theta - lr * b, s                               # θ ← θ − ηb
        return theta - lr * (g / d), s                             # θ ← θ − ηg/d

    def update_error(self, theta, g, Eg, s, h, u):
        lr, alpha, eps, wd, mu = h["lr"], h["alpha"], h["eps"], h["weight_decay"], h["momentum"]
        g, t = _prepared(theta, g, s, h)
        Eg = decay_error(g, Eg, wd, theta, u)
        g = g + wd * theta
        v0 = s.get("square_avg", np.zeros_like(theta))
        v, Ev = alpha * v0 + (1 - alpha) * g * g, square_average_error(alpha, v0, g, Eg, u)
        out = {"square_avg": Ev}
        if h["centered"]:
            a0 = s.get("grad_avg", np.zeros_like(theta))
            gbar, Egbar = alpha * a0 + (1 - alpha) * g, average_error(alpha, a0, g, Eg, u)
            out["grad_avg"] = Egbar
            c = v - gbar * gbar                                    # cancels: its error is all of E below
            Ec = Ev + (2 * np.abs(gbar) + Egbar) * Egbar + 3 * u * (np.abs(v) + gbar * gbar)
            d, Ed = np.sqrt(np.maximum(c, 0.0)) + eps, sqrt_error(c, Ec, u)
        else:
            d, Ed = np.sqrt(v) + eps, sqrt_error(v, Ev, u)
        Ed = Ed + 2 * u * d
        q, Eq = g / d, quotient_error(g, Eg, d, Ed, u)
        if mu > 0:
            b0 = s.get("momentum_buffer", np.zeros_like(theta))
            b, Eb = mu * b0 + q, Eq + 4 * u * (mu * np.abs(b0) + np.abs(q) + Eq)
            out["momentum_buffer"] = Eb
            q, Eq = b, Eb
        out["param"] = update_error(np.abs(theta), Eq, lr, np.abs(q), u)
        return out


class Adagrad(Optimizer):
    """Adagrad, torch.optim.Adagrad:

        g ← g + λθ                            (weight decay)
        η̃ ← η/(1 + (t − 1)·lr_decay)
        s ← s + g²                            (s starts at initial_accumulator_value)
        θ ← θ − η̃ g/(√s + ε)
    """

    name, torch_class = "adagrad", "Adagrad"
    hyper = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0,
             "eps": 1e-10, "maximize": False}
    checks = {"lr": (nonnegative, ">= 0"), "lr_decay": (nonnegative, ">= 0"), "weight_decay": (nonnegative, ">= 0"),
              "initial_accumulator_value": (nonnegative, ">= 0"), "eps": (nonnegative, ">= 0")}
    state_names = ("sum",)
    formula = "s ← s + g²;  θ ← θ − η̃ g/(√s + ε)"

    def _sum(self, theta, s, h):
        return s.get("sum", np.full_like(theta, h["initial_accumulator_value"]))

    def update(self, theta, g, s, h):
        lr, lr_decay, wd, eps = h["lr"], h["lr_decay"], h["weight_decay"], h["eps"]
        g, t = _prepared(theta, g, s, h)
        if wd:
            g = g + wd * theta                                     # g ← g + λθ
        clr = lr / (1 + (t - 1) * lr_decay)                        # η̃ ← η/(1 + (t − 1)·lr_decay)
        acc = self._sum(theta, s, h) + g * g                       # s ← s + g²
        s.update(step=t, sum=acc)
        return theta - clr * (g / (np.sqrt(acc) + eps)), s         # θ ← θ − η̃ g/(√s + ε)

    def update_error(self, theta, g, Eg, s, h, u):
        lr, lr_decay, wd, eps = h["lr"], h["lr_decay"], h["weight_decay"], h["eps"]
        g, t = _prepared(theta, g, s, h)
        Eg = decay_error(g, Eg, wd, theta, u)
        g = g + wd * theta
        s0 = self._sum(theta, s, h)
        acc = s0 + g * g
        Eacc = (2 * np.abs(g) + Eg) * Eg + 3 * u * (np.abs(s0) + (np.abs(g) + Eg) ** 2)
        d = np.sqrt(acc) + eps
        Ed = sqrt_error(acc, Eacc, u) + 2 * u * d
        q, Eq = g / d, quotient_error(g, Eg, d, Ed, u)
        clr = lr / (1 + (t - 1) * lr_decay)
        Eq = Eq + np.abs(q) * 4 * u                                # η̃ rounded (three roundings)
        return {"sum": Eacc, "param": update_error(np.abs(theta), Eq, clr, np.abs(q), u)}


OPTIMIZERS: Registry[Optimizer] = Registry(
    "optimizer", {o.name: o for o in (SGD(), Adam(), AdamW(), RMSprop(), Adagrad())})


def step(params: dict[str, Array], grads: dict[str, Array], state: dict, hyper: dict) -> tuple[dict[str, Array], dict]:
    """The contract's step for every optimizer here: the one hyper['optimizer'] names."""
    return OPTIMIZERS[hyper["optimizer"]].step(params, grads, state, hyper)
