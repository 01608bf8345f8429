"""Layers: each layer kind one class holding its forward and backward, its torch counterpart,
its formulas and its error model (handimpl.layers.base)."""
from .base import Context, Layer
from .dense import Act, Flatten, Linear

__all__ = ["Act", "Context", "Flatten", "Layer", "Linear"]
