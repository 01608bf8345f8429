"""The harness itself: planted bugs fail, rounding-only differences pass."""

import numpy as np
import pytest

import handimpl
import verify
from handimpl.activations import ACTIVATIONS
from verify.core.compare import compare
from verify.harness import trace


def backprop_without_fprime_in_layer(layer):
    """handimpl.backprop, except δ⁽ˡ⁾ = δ⁽ˡ⁺¹⁾W⁽ˡ⁺¹⁾ in one hidden layer: f′ dropped."""
    def fn(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        W_next = params[layer][0]
        delta = out[f"delta{layer + 1}"] @ W_next                  # missing ⊙ f′(z⁽ˡ⁾)
        out[f"delta{layer}"] = delta
        out[f"dW{layer}"] = delta.T @ (x if layer == 1 else out[f"a{layer - 1}"])
        out[f"db{layer}"] = delta.sum(axis=0)
        return out
    return fn


@pytest.mark.parametrize("seed", range(5))
def test_dropping_fprime_in_a_hidden_layer_is_reported_as_failing(seed):
    result = verify.check("3-4-4-2:tanh,sigmoid,identity:mse_loss", seed=seed, batch=4,
                          impl=backprop_without_fprime_in_layer(2))
    assert not result.passed
    assert result.first_divergence.name == "delta2"


def test_the_same_planted_bug_is_caught_in_float32():
    result = verify.check("3-4-4-2:tanh,sigmoid,identity:mse_loss:dtype=float32", seed=1, batch=4,
                          impl=backprop_without_fprime_in_layer(2))
    assert result.first_divergence.name == "delta2"


def float64_inside(spec, params, x, y):
    """A correct implementation that rounds differently: float64 inside, float32 results."""
    spec64 = verify.NetSpec.parse(str(spec).replace("dtype=float32", "dtype=float64"))
    p64 = [(W.astype(np.float64), None if b is None else b.astype(np.float64)) for W, b in params]
    y64 = y if y.dtype == np.int64 else y.astype(np.float64)
    out = handimpl.backprop(spec64, p64, x.astype(np.float64), y64)
    return {k: v if k == "loss" else v.astype(np.float32) for k, v in out.items()}


@pytest.mark.parametrize("spec", [
    "16-16-16-16-16-16:relu:mse_loss:dtype=float32,reduction=sum",
    "16-16-16-16-16-16:tanhshrink,softplus,relu,identity,identity:quadratic:dtype=float32",
    "8-16-16-4:tanhshrink,identity,softmax:l1_loss:dtype=float32,reduction=sum",
])
@pytest.mark.parametrize("seed", [7, 13, 20])      # seeds whose x is drawn at scale 1e3
def test_a_rounding_only_difference_at_magnitude_1e3_and_depth_5_passes(spec, seed):
    result = verify.check(spec, seed=seed, batch=16, impl=float64_inside)
    assert result.scale == 1e3
    assert result.passed, result.first_divergence


def test_float32_verdict_records_both_errors_against_the_float64_reference():
    result = verify.check("4-8-3:tanh,identity:mse_loss:dtype=float32", seed=2)
    assert all(r.hand_ref_err is not None and r.torch_ref_err is not None for r in result.records)


def test_a_value_off_by_more_than_its_own_allowance_fails_whatever_other_elements_allow():
    t = np.array([1000.0, -1000.0, 0.5], dtype=np.float32)
    r = t.astype(np.float64)
    bad = t.copy()
    bad[2] += 1e-2
    bound = np.array([1.0, 1.0, 1e-3])                       # wide for the large elements only
    record = compare("db1", bad, t, dtype="float32", rtol=1.3e-6, atol=1e-5, exact=r, bound=bound)
    assert not record.passed and record.worst_index == (2,) and record.status == "diverges"


def test_nan_agrees_only_with_nan_and_inf_only_with_the_same_inf():
    ref = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert compare("x", ref.copy(), ref, dtype="float64", rtol=1e-7, atol=1e-7).passed
    flipped = np.array([np.nan, -np.inf, -np.inf, 1.0])
    record = compare("x", flipped, ref, dtype="float64", rtol=1e-7, atol=1e-7)
    assert not record.passed and record.n_mismatched == 1 and record.worst_index == (1,)


def test_a_transposed_gradient_is_reported_with_a_hint():
    ref = np.zeros((2, 3))
    record = compare("dW1", np.zeros((3, 2)), ref, dtype="float64", rtol=1e-7, atol=1e-7)
    assert not record.passed and "missing transpose" in record.problem


def test_a_float64_result_for_a_float32_spec_is_a_dtype_failure():
    record = compare("dW1", np.zeros(3), np.zeros(3, np.float32), dtype="float32", rtol=1.3e-6, atol=1e-5)
    assert not record.passed and "dtype float64" in record.problem


def test_ulp_distance_counts_representable_floats_between_the_values():
    one = np.array([1.0], dtype=np.float32)
    record = compare("x", np.nextafter(np.nextafter(one, 2), 2), one, dtype="float32", rtol=1.3e-6, atol=1e-5)
    assert record.max_ulp == 2 and record.passed


def test_tolerances_must_be_overridden_together():
    with pytest.raises(ValueError, match="both"):
        verify.check("2-2-1:sigmoid:quadratic", rtol=1e-3)


def test_a_wrong_relu_kink_convention_is_caught_at_an_exact_zero():
    relu = ACTIVATIONS["relu"]
    z = np.array([[0.0, 1.0]])
    assert relu.df(z, relu.f(z)).tolist() == [[0.0, 1.0]]


def test_a_softmax_row_that_sums_to_one_only_in_torchs_rounding_is_no_false_alarm():
    # torch's float32 δ² is exactly 0 here by luck, handimpl's is 6e-8; times a¹ ≈ 1e3 in ∂J/∂W²
    result = verify.check("3-5-4:tanhshrink,softmax:l1_loss:dtype=float32,reduction=sum", seed=7, batch=5)
    assert result.passed, result.first_divergence


CHECK = trace  # the module, for monkeypatching

# Correct cases that once raised false alarms, each cleared only by the a priori bound.
NEEDS_BOUND = [
    # float32 at x scale 1e3: a legitimate float32 z⁽ˡ⁾ may land far from torch's
    ("13-6-11-8-5:log_softmax,log_softmax,log_softmax,relu6:poisson_nll_loss:"
     "dtype=float32,init=kaiming_uniform,reduction=sum,log_input=false", 158559, 3),
    # rounding puts z⁽⁴⁾ ≈ ±1e-22 on either side of selu's kink: f′ = 1.05 vs 1.76
    ("15-13-9-3-12-9:tanhshrink,tanhshrink,tanhshrink,selu,tanh:huber_loss:bias=false,delta=0.5", 9, 15),
    # binary_cross_entropy's log(1 - a) at a = 1 - 8e-15: one rounding unit of a moves J by 3e-4
    ("1-8-10-11-12-10:leaky_relu,identity,leaky_relu,relu,softmax:binary_cross_entropy:init=xavier_uniform",
     385, 2),
    # softmax backward a ⊙ (g - Σ gⱼaⱼ) with g ≈ 3e11 from a saturated binary_cross_entropy
    ("1-7-10-11-11-11:identity,identity,relu,relu,softmax:binary_cross_entropy:init=xavier_uniform", 385, 1),
]


@pytest.mark.parametrize("case", NEEDS_BOUND, ids=["float32-1e3", "selu-kink", "bce-log", "softmax-after-bce"])
def test_the_a_priori_bound_is_what_clears_this_correct_case(monkeypatch, case):
    assert verify.check(*case).passed
    real = CHECK.a_priori
    monkeypatch.setattr(CHECK, "a_priori", lambda *args, **kw: {k: 0 * v for k, v in real(*args, **kw).items()})
    assert not verify.check(*case).passed


