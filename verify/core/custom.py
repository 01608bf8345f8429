"""Activations with no torch counterpart: ``@verify.activation`` on a NumPy forward.

    @verify.activation                          # the name: the function's
    def scaled_tanh(z):
        return 1.7159 * np.tanh(2 * z / 3)

    @verify.activation(derivative=lambda z: 1.7159 * 2 / 3 / np.cosh(2 * z / 3) ** 2)
    def lecun_tanh(z): ...

    verify.check("4-3-1:scaled_tanh,sigmoid:mse_loss")

The activation is registered beside the built-in ones (handimpl.ACTIVATIONS, and its twin in
verify.core.torch_ops.TORCH_ACTIVATIONS) for this process, so that specs can name it. Its torch
twin has no torch formula to trust: its forward calls your NumPy function (in float64 for the
reference), and its backward takes f′ from the finite-difference referee
(verify.core.referee.elementwise_derivative, central differences with Richardson), never from
your derivative. So the check compares your backprop (handimpl's uses your ``derivative``, or, when
none is given, the same finite differences, which then check only the rest of the chain) with the
mathematics of your forward, each δ's allowance widened by the referee's error bar at that z.
A sweep draws it only where named (``--activations``, ``activations=[...]``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from handimpl import ACTIVATIONS
from handimpl.activations import Activation
from verify.core.referee import elementwise_derivative
from verify.core.torch_ops import TORCH_ACTIVATIONS
from verify.errors import SpecError

Array = np.ndarray[Any, Any]


class UserActivation(Activation):
    """An activation given by a NumPy forward (and optionally its derivative), its f′ where none is
    given and its torch twin's f′ from finite differences."""
    user_defined = True

    def __init__(self, name: str, forward: Callable[[Array], Array], derivative: Callable[[Array], Array] | None,
                 kinks: tuple[float, ...] = ()):
        self.name = name
        self.forward = forward
        self.given = derivative
        self.kinks = tuple(float(k) for k in kinks)
        qualname = getattr(forward, "__qualname__", name)
        self.formula = f"a = {name}(z): {qualname}, a NumPy function (no torch counterpart)"
        self.derivative = (f"f′ = {getattr(derivative, '__qualname__', 'the derivative given')}" if derivative
                           else "f′ by finite differences of f (no derivative given)")
        self.torch_module = ("", {})

    def _call(self, fn: Callable[[Array], Array], z: Array, what: str) -> Array:
        out = np.asarray(fn(z))
        if out.shape != np.shape(z):
            raise SpecError(f"activation {self.name}: its {what} returned shape {out.shape} for input "
                            f"{np.shape(z)} (it must act elementwise)")
        return out.astype(np.asarray(z).dtype, copy=False)

    def f(self, z: Array) -> Array:
        return self._call(self.forward, z, "forward")

    def df(self, z: Array, a: Array) -> Array:
        if self.given is not None:
            return self._call(self.given, z, "derivative")
        return elementwise_derivative(self.forward, z).value.astype(np.asarray(z).dtype, copy=False)

    def reference_df_bar(self, z: Array, abs_fprime: Array) -> Array:
        """The referee's error bar on f′ at z: the twin's f′ is its estimate, not an exact value (the
        bounds multiply it by the |g| an implementation holds)."""
        return elementwise_derivative(self.forward, z).error

    def __reduce__(self) -> Any:
        return (_registered, (self.name,))


def _registered(name: str) -> Any:
    return ACTIVATIONS[name]


class _FDFunction(torch.autograd.Function):
    """a = f(z) by the user's NumPy forward; ∂J/∂z = g ⊙ f′(z), f′ by finite differences."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, act: UserActivation) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.act = act
        return torch.from_numpy(np.array(act.f(z.detach().numpy()))).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors
        fprime = elementwise_derivative(ctx.act.forward, z.detach().numpy()).value
        return g * torch.from_numpy(fprime).to(g.dtype), None


class FDActivation(nn.Module):  # type: ignore[misc]
    """The torch twin of a user activation (no torch counterpart): see _FDFunction."""

    def __init__(self, act: UserActivation):
        super().__init__()
        self.act = act

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _FDFunction.apply(z, self.act)

    def extra_repr(self) -> str:
        return f"{self.act.name}, f′ by finite differences"


def activation(fn: Callable[[Array], Array] | None = None, *, name: str | None = None,
               derivative: Callable[[Array], Array] | None = None, kinks: tuple[float, ...] = ()) -> Any:
    """Register a NumPy activation (elementwise: z -> f(z), same shape) for specs in this process;
    ``derivative`` (z -> f′(z)) is what handimpl's backprop uses (default: finite differences);
    ``kinks``: points where f′ jumps. Use as ``@activation`` or ``@activation(name=..., derivative=...)``;
    returns the function unchanged. SpecError (one line) for a forward or derivative that is not
    callable, a name that is not a plain identifier or that a built-in activation already has."""
    def register(forward: Callable[[Array], Array]) -> Callable[[Array], Array]:
        if not callable(forward):
            raise SpecError(f"verify.activation takes a function z -> f(z), not {type(forward).__name__}")
        if derivative is not None and not callable(derivative):
            raise SpecError(f"verify.activation: derivative must be a function z -> f′(z), not "
                            f"{type(derivative).__name__}")
        key = name or getattr(forward, "__name__", "")
        if not isinstance(key, str) or not key.isidentifier():
            raise SpecError(f"verify.activation: the name {key!r} is not a plain identifier; give name='...'")
        if key in ACTIVATIONS and not getattr(ACTIVATIONS[key], "user_defined", False):
            raise SpecError(f"verify.activation: {key!r} is a built-in activation; give name='...' another name")
        act = UserActivation(key, forward, derivative, kinks)
        ACTIVATIONS.register(key, act)
        TORCH_ACTIVATIONS.register(key, lambda: FDActivation(act))
        return forward

    if fn is None:
        return register
    return register(fn)


def unregister(name: str) -> None:
    """Remove a user activation registered by ``activation`` (a built-in one stays)."""
    if name in ACTIVATIONS and getattr(ACTIVATIONS[name], "user_defined", False):
        ACTIVATIONS.unregister(name)
        TORCH_ACTIVATIONS.unregister(name)
