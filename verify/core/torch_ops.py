"""The torch side of the registries: the same names as handimpl's, mapped to torch.

Built by walking handimpl's registries, so a name added there without its
torch counterpart fails at import instead of at comparison time.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from handimpl import ACTIVATIONS, LOSSES, Registry

_ACT_MODULES = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "hardtanh": nn.Hardtanh,
    "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "logsigmoid": nn.LogSigmoid,
    "tanhshrink": nn.Tanhshrink,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
}


def _quadratic(a: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The seed's J = (1/m) Σᵢ ½‖aᵢ - yᵢ‖², written with torch ops."""
    J = 0.5 * ((a - y) ** 2).sum()
    return J / a.shape[0] if reduction == "mean" else J


def _kl_div(a, y, reduction="mean", **opts):
    with warnings.catch_warnings():   # torch warns that 'mean' is not 'batchmean'; we mean it
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(a, y, reduction=reduction, **opts)


_LOSS_FUNCTIONS = {
    "mse_loss": F.mse_loss,
    "l1_loss": F.l1_loss,
    "huber_loss": F.huber_loss,
    "smooth_l1_loss": F.smooth_l1_loss,
    "binary_cross_entropy": F.binary_cross_entropy,
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "cross_entropy": F.cross_entropy,
    "nll_loss": F.nll_loss,
    "kl_div": _kl_div,
    "soft_margin_loss": F.soft_margin_loss,
    "poisson_nll_loss": F.poisson_nll_loss,
    "quadratic": _quadratic,
}

TORCH_ACTIVATIONS: Registry = Registry("activation", {n: _ACT_MODULES[n] for n in ACTIVATIONS})
TORCH_LOSSES: Registry = Registry("loss", {n: _LOSS_FUNCTIONS[n] for n in LOSSES})


def activation_name(module: nn.Module) -> str | None:
    """The registry name of a torch activation module with default settings, else None."""
    for name, factory in TORCH_ACTIVATIONS.items():
        proto = factory()
        if type(module) is type(proto) and repr(module) == repr(proto):
            return name
    return None
