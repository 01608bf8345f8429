"""handimpl: backpropagation written by hand in NumPy, from the textbook δ formulas.

NumPy only: nothing in this package imports torch (a test enforces it).
"""
from .activations import ACTIVATIONS, Activation
from .init import INITS, init_params
from .losses import LOSSES, Loss
from .network import backprop, forward, sgd_step
from .registry import Registry, UnknownNameError

__all__ = ["ACTIVATIONS", "Activation", "INITS", "LOSSES", "Loss", "Registry",
           "UnknownNameError", "backprop", "forward", "init_params", "sgd_step"]
