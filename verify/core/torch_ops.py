"""The torch side of the registries: the same names as handimpl's, mapped to torch.

Each handimpl activation names its torch module (``torch_module``) and each loss its
torch.nn.functional function (``torch_function``); the two losses whose torch side is
written here are the exceptions. Built by walking handimpl's registries, so a name added
there without a torch counterpart fails at import instead of at comparison time.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from handimpl import ACTIVATIONS, LOSSES, Registry


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread within, as a sweep runs its cases, restored after: on small tensors
    threads only cost (and wait on a busy machine), and float32 sums split over more threads round
    differently, so a repro line prints the numbers of the report it came from."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _quadratic(a: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The tutorial's J = (1/m) Σᵢ ½‖aᵢ - yᵢ‖², written with torch ops."""
    J = 0.5 * ((a - y) ** 2).sum()
    return J / a.shape[0] if reduction == "mean" else J


def _kl_div(a, y, reduction="mean", **opts):
    with warnings.catch_warnings():   # torch warns that 'mean' is not 'batchmean'; we mean it
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(a, y, reduction=reduction, **opts)


# Losses whose torch side is written here: one torch has no function for, and one whose
# function warns about a reduction that is meant.
_WRITTEN_HERE = {"quadratic": _quadratic, "kl_div": _kl_div}


def _activation_module(act):
    name, options = act.torch_module
    if not name or not hasattr(nn, name):
        raise LookupError(f"activation {act.name!r}: torch_module {act.torch_module!r} is no torch.nn module")
    return functools.partial(getattr(nn, name), **options) if options else getattr(nn, name)


def _loss_function(loss):
    if loss.name in _WRITTEN_HERE:
        return _WRITTEN_HERE[loss.name]
    if not loss.torch_function or not hasattr(F, loss.torch_function):
        raise LookupError(f"loss {loss.name!r}: torch_function {loss.torch_function!r} is no "
                          "torch.nn.functional function")
    return getattr(F, loss.torch_function)


TORCH_ACTIVATIONS: Registry = Registry("activation", {n: _activation_module(a) for n, a in ACTIVATIONS.items()})
TORCH_LOSSES: Registry = Registry("loss", {n: _loss_function(f) for n, f in LOSSES.items()})


def activation_name(module: nn.Module) -> str | None:
    """The registry name of a torch activation module with default settings, else None."""
    for name, factory in TORCH_ACTIVATIONS.items():
        proto = factory()
        if type(module) is type(proto) and repr(module) == repr(proto):
            return name
    return None
