"""Layers: each layer kind one class holding its forward and backward, its torch counterpart,
its formulas and its error model (handimpl.layers.base). ``KINDS`` maps each kind's name in the
stack grammar to its class (activations are layers too: Act, by the activation's name)."""
from .base import Context, Layer
from .dense import Act, Flatten, Linear
from .dropout import Dropout, Residual
from .norm import BatchNorm, GroupNorm, LayerNorm

KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in (
    Linear, Flatten, BatchNorm, LayerNorm, GroupNorm, Dropout, Residual,
)}

__all__ = ["KINDS", "Act", "BatchNorm", "Context", "Dropout", "Flatten", "GroupNorm", "Layer", "LayerNorm",
           "Linear", "Residual"]
