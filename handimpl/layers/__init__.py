"""Layers: each layer kind one class holding its forward and backward, its torch counterpart,
its formulas and its error model (handimpl.layers.base)."""
from .base import Context, Layer
from .conv import Conv1d, Conv2d
from .dense import Act, Flatten, Linear
from .embedding import Embedding
from .pool import AvgPool2d, MaxPool2d

__all__ = ["Act", "AvgPool2d", "Context", "Conv1d", "Conv2d", "Embedding", "Flatten", "Layer", "Linear",
           "MaxPool2d"]
