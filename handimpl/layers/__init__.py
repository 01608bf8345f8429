"""Layers: each layer kind one class holding its forward and backward, its torch counterpart,
its formulas and its error model (handimpl.layers.base). ``KINDS`` maps each kind's name in the
stack grammar to its class (activations are layers too: Act, by the activation's name)."""
from .base import Context, Layer
from .conv import Conv1d, Conv2d
from .dense import Act, Flatten, Linear
from .dropout import Dropout, Residual
from .embedding import Embedding
from .norm import BatchNorm, GroupNorm, LayerNorm
from .pool import AvgPool2d, MaxPool2d

KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in (
    Linear, Flatten, BatchNorm, LayerNorm, GroupNorm, Dropout, Residual, Conv1d, Conv2d, MaxPool2d, AvgPool2d,
    Embedding,
)}

__all__ = ["KINDS", "Act", "AvgPool2d", "BatchNorm", "Context", "Conv1d", "Conv2d", "Dropout", "Embedding",
           "Flatten", "GroupNorm", "Layer", "LayerNorm", "Linear", "MaxPool2d", "Residual"]
