"""A layer kind: one class holding everything about it.

A layer maps a batch x of shape (m, *in_shape) to y of shape (m, *out_shape), where the
per-example shapes are (n,) for dense layers, (C, L) for 1-d and (C, H, W) for 2-d ones (NCHW,
as torch). Its class holds, as activations and losses do (handimpl.activations):

- ``forward(x, p, ctx)`` and ``backward(dy, cache)``: the NumPy forward, returning y and a
  cache, and the backward, returning ∂J/∂x and ∂J/∂p for each parameter, each line beside its
  equation. ``p`` maps parameter and buffer names to arrays; ``ctx`` (Context) says whether the
  layer runs in training mode and holds what the case shares between both sides (a dropout
  keep-mask). The same pair serves a generated stack (handimpl.stack) and a user's layer
  functions in the forward/backward-with-cache style (verify.layers).
- ``params`` and ``buffers``: the names of its learnable parameters and of its state (running
  statistics), in torch's order; ``init`` draws them as torch's defaults do; ``updated`` gives
  the buffers after a training-mode forward.
- ``torch_module``: its torch counterpart, as data (handimpl imports no torch): the
  ``torch.nn`` class name and its keyword arguments, and ``torch_names``, the attribute of the
  torch module each parameter and buffer is copied to. An empty name means verify writes the
  torch side itself (dropout with a shared mask, a residual block).
- ``formula`` and ``backward_formulas``: the texts verify explain displays.
- ``forward_error`` and ``backward_error``: its a priori error model, as an activation's
  forward_error and vjp_error (docs/verdict.md): computed in float64 from the float64
  reference's magnitudes, they bound how far any correct evaluation in the case's dtype (unit
  roundoff u) may land from the exact result when the layer's input x is off by up to Ex and
  the upstream gradient dy by up to Edy, elementwise. Parameters are exact (the case's own).
  Every rounding term is of what an implementation holds (|x| + Ex, |dy| + Edy). ``tiny`` is
  what one step may lose to underflow (verify.core.bounds.underflow).

Hyperparameters are the instance's: ``Linear(out=3)``, ``Conv2d(out=4, kernel=(3, 3), stride=1,
padding=1)``. ``spec()`` writes them back in the stack grammar (verify.core.stack) and
``out_shape(in_shape)`` gives the per-example output shape, raising ValueError for a shape the
layer cannot take.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class Context:
    """What one forward pass of a stack shares with its layers.

    training  training mode (batch statistics, dropout) or eval mode (running statistics, identity);
    masks     per layer position, the keep-mask of a dropout layer (True: kept), drawn from the
              case's seed and given to both sides so that they can agree exactly;
    position  the index of the layer in its stack (set by the stack for each layer)."""
    training: bool = True
    masks: dict = dataclasses.field(default_factory=dict)
    position: int = 0

    def at(self, position: int) -> "Context":
        return dataclasses.replace(self, position=position)

    @property
    def mask(self) -> Array | None:
        return self.masks.get(self.position)


class Layer:
    """One layer kind; an instance is one configured layer (module docstring)."""

    kind: ClassVar[str] = ""                          # its name in the stack grammar
    positional: ClassVar[tuple[str, ...]] = ()        # the grammar's positional arguments, in order
    keywords: ClassVar[dict[str, str]] = {}           # the grammar's KEY=VALUE names -> __init__'s
    params: ClassVar[tuple[str, ...]] = ()            # learnable, in torch's order
    buffers: ClassVar[tuple[str, ...]] = ()           # state carried from step to step
    torch_names: ClassVar[dict[str, str]] = {}        # our name -> the torch module's attribute
    formula: ClassVar[str] = ""
    backward_formulas: ClassVar[dict[str, str]] = {}  # "dx", "dW", ... -> the equation
    min_batch: ClassVar[int] = 1                      # batch norm in training needs m >= 2
    needs_mask: ClassVar[bool] = False                # dropout: the case draws a keep-mask for it

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def param_shapes(self, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of each parameter and buffer, without drawing them (none by default)."""
        return {}

    def init(self, in_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> dict[str, Array]:
        """Its parameters and buffers, drawn as torch's defaults are (none by default)."""
        return {}

    def torch_module(self, in_shape: tuple[int, ...]) -> tuple[str, dict]:
        """(torch.nn class name, keyword arguments); ('', {}) where verify writes the torch side."""
        raise NotImplementedError

    def forward(self, x: Array, p: dict[str, Array], ctx: Context) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, dy: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        raise NotImplementedError

    def forward_error(self, x: Array, Ex: Array, p: dict[str, Array], u: float, tiny: float,
                      ctx: Context | None = None) -> Array:
        """E_y for y = forward(x, p, ctx): float64, y's shape."""
        raise NotImplementedError

    def backward_error(self, x: Array, Ex: Array, p: dict[str, Array], dy: Array, Edy: Array, u: float,
                       tiny: float, ctx: Context | None = None) -> tuple[Array, dict[str, Array]]:
        """(E of ∂J/∂x, {parameter: E of ∂J/∂parameter}) for backward(dy) after forward(x)."""
        raise NotImplementedError

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters this instance has (a layer without bias has no 'b')."""
        return self.params

    def updated(self, p: dict[str, Array], cache: Any) -> dict[str, Array]:
        """Its buffers after the forward that left ``cache`` (unchanged by default)."""
        return {name: p[name] for name in self.buffers}

    def buffer_errors(self, x: Array, Ex: Array, p: dict[str, Array], u: float) -> dict[str, Array]:
        """E of each buffer after a training-mode forward (none by default)."""
        return {}

    def options(self) -> dict[str, Any]:
        """Its hyperparameters, as the grammar writes them (non-default ones only)."""
        return {}

    def spec(self) -> str:
        """The layer in the stack grammar, e.g. 'linear:3', 'conv2d:4,k3,p1', 'dropout:0.25'."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<layer {self.spec()}>"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.spec() == other.spec()   # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), self.spec()))
