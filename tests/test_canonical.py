"""The tutorial's shortcut δ⁽ᴸ⁾ = (a - y)/m equals the general chain rule ∂J/∂a ⊙ f'(z)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handimpl import ACTIVATIONS, LOSSES
from verify.core.data import draw_case
from verify.core.spec import NetSpec

PAIRS = [(loss, act) for loss in LOSSES for act in LOSSES[loss].canonical]


def test_the_three_textbook_canonical_pairs_are_registered():
    assert {("binary_cross_entropy", "sigmoid"), ("cross_entropy", "identity"),
            ("nll_loss", "log_softmax")} <= set(PAIRS)


@pytest.mark.parametrize("loss,act", PAIRS)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 8), k=st.integers(1, 5),
       reduction=st.sampled_from(["mean", "sum"]), target=st.sampled_from(["index", "prob"]))
def test_shortcut_equals_the_general_chain_rule_path(loss, act, seed, batch, k, reduction, target):
    spec = NetSpec((3, k), (act,), loss, reduction=reduction,
                   target=target if loss == "cross_entropy" else "index")
    case = draw_case(spec, seed, batch)
    W, b = case.params[0]
    z = case.x @ W.T + b
    f, L = ACTIVATIONS[act], LOSSES[loss]
    a = f.f(z)
    general = f.vjp(z, a, L.grad(a, case.y, reduction))
    short = L.shortcut(z, a, case.y, reduction)
    # Where BCE's clamps do not act the product collapses exactly (up to rounding); both sides are
    # elementwise, so every element inside that range is checked, whatever the others do.
    with np.errstate(all="ignore"):
        inside = (a > 1e-6) & (a < 1 - 1e-6) if act == "sigmoid" else np.ones(a.shape, dtype=bool)
    np.testing.assert_allclose(short[inside], general[inside], rtol=1e-9, atol=1e-12)


def test_shortcut_is_wrong_for_a_non_canonical_pair():
    z = np.array([[0.3, -1.2]])
    a, y = ACTIVATIONS["sigmoid"].f(z), np.array([[1.0, 0.0]])
    general = ACTIVATIONS["sigmoid"].vjp(z, a, LOSSES["mse_loss"].grad(a, y))
    assert not np.allclose(general, (a - y) / a.size)
