"""Initialisation follows torch.nn.init's formulas; the twin is built from the same draws."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from handimpl import INITS, init_params

FAN_IN, FAN_OUT = 400, 300
TORCH_INIT = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
}


def _torch_weights(scheme):
    torch.manual_seed(0)
    if scheme == "default":
        return nn.Linear(FAN_IN, FAN_OUT).weight.detach().numpy()
    w = torch.empty(FAN_OUT, FAN_IN)
    TORCH_INIT[scheme](w)
    return w.numpy()


@pytest.mark.parametrize("scheme", list(INITS))
def test_weights_have_torchs_spread_and_bound(scheme):
    (W, b), = init_params([FAN_IN, FAN_OUT], scheme=scheme, seed=1)
    ref = _torch_weights(scheme)
    assert W.shape == ref.shape == (FAN_OUT, FAN_IN)
    assert W.std() == pytest.approx(ref.std(), rel=0.02)
    assert np.abs(W).max() <= np.abs(ref).max() * 1.02 or "normal" in scheme


def test_biases_follow_nn_linear_uniform_bound():
    (_, b), = init_params([FAN_IN, FAN_OUT], seed=2)
    assert np.abs(b).max() <= 1 / math.sqrt(FAN_IN)


def test_the_same_seed_draws_the_same_parameters_in_the_asked_dtype():
    a = init_params([3, 4, 2], seed=7, dtype="float32")
    b = init_params([3, 4, 2], seed=7, dtype="float32")
    assert all(W.dtype == np.float32 and (W == W2).all() for (W, _), (W2, _) in zip(a, b))


def test_no_bias_gives_none():
    assert all(b is None for _, b in init_params([3, 4, 2], bias=False))
