"""The verdict holds both ways: precision bugs fail, tensors that differ never pass, root causes
are located without δ, and distinct root causes stay distinct."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import handimpl
import verify
from verify.api import sweep_implementation
from verify.byo.call import load_target
from verify.core.bounds import output_delta_error, underflow
from verify.core.compare import UNIT_ROUNDOFF
from verify.core.data import draw_target
from verify.core.spec import NetSpec
from verify.harness.diagnose import describe_case, worst_sentence
from verify.harness.localise import with_location
from verify.report.frames import summary_lines
from verify.sweep.shrink import distinct_failures, failure_groups, signature

FIXTURES = Path(__file__).parent / "fixtures"


def float32_in_the_middle(spec, params, x, y):
    """handimpl.backprop, except that the z⁽¹⁾ it returns went through float32 in a float64 case."""
    out = handimpl.backprop(spec, params, x, y)
    out["z1"] = out["z1"].astype(np.float32).astype(np.float64)
    return out


def without_fprime_in_layer_1(spec, params, x, y):
    out = handimpl.backprop(spec, params, x, y)
    delta = out["delta2"] @ params[1][0]                       # δ¹ = δ²W², f′ dropped
    out.update(delta1=delta, dW1=delta.T @ x, db1=delta.sum(axis=0), dx=delta @ params[0][0])
    return out


def leaky_kink_required_only(spec, params, x, y):
    """Returns only loss, dW, db; leaky_relu′(0) = 1 where torch takes 0.01."""
    out = handimpl.backprop(spec, params, x, y)
    f = handimpl.ACTIVATIONS["leaky_relu"]
    delta1 = (out["delta2"] @ params[1][0]) * np.where(out["z1"] >= 0, 1.0, f.slope)
    return {"loss": out["loss"], "dW1": delta1.T @ x, "db1": delta1.sum(axis=0),
            "dW2": out["dW2"], "db2": out["db2"]}


def test_a_float32_intermediate_in_a_float64_case_fails_with_a_precision_note():
    result = verify.check("4-8-3:tanh,identity:mse_loss", seed=3, batch=5, impl=float32_in_the_middle)
    assert not result.passed
    first = result.first_divergence
    assert first.name == "z1" and first.status == "diverges"
    assert first.note.startswith("float32-level precision in a float64 case")


def test_a_tensor_far_from_torch_is_never_recorded_as_passed():
    result = verify.check("1-1-1:sigmoid:mse_loss", seed=0, batch=1, impl=without_fprime_in_layer_1)
    by_name = {r.name: r for r in result.records}
    for name in ("delta1", "db1", "dx", "b1_after"):
        assert not by_name[name].passed, name
    assert by_name["delta1"].status == "diverges"
    assert by_name["db1"].status == "inherits" and by_name["dx"].status == "inherits"
    assert result.first_divergence.name == "delta1"


def test_a_kink_bug_hidden_behind_the_gradients_is_located_in_delta_by_single_example_calls():
    spec = "3-4-2:leaky_relu,identity:mse_loss"
    failing = next(r for r in (verify.check(spec, seed=s, batch=3, impl=leaky_kink_required_only)
                               for s in range(40)) if not r.passed)
    located = with_location(failing, leaky_kink_required_only)
    assert located.located.startswith("δ¹, read back from ∂J/∂b¹")
    assert "f′(z¹)" in located.located
    assert located.located in describe_case(located)


def test_the_verdict_on_correct_code_does_not_depend_on_the_optional_keys_it_returns():
    def required_only(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        return {k: v for k, v in out.items() if k == "loss" or k[:2] in ("dW", "db")}
    for seed in range(12):
        spec = "5-7-3:softsign,log_softmax:nll_loss:dtype=float32"
        full = verify.check(spec, seed=seed, batch=6)
        short = verify.check(spec, seed=seed, batch=6, impl=required_only)
        assert full.passed and short.passed, seed


def test_the_fprime_failures_of_two_activations_are_two_distinct_failures():
    a = verify.check("2-3-1:tanh,identity:mse_loss", seed=1, batch=2, impl=without_fprime_in_layer_1)
    b = verify.check("2-3-1:sigmoid,identity:mse_loss", seed=1, batch=2, impl=without_fprime_in_layer_1)
    assert signature(a) != signature(b)
    assert len(distinct_failures([a, b])) == 2


def test_an_infinite_value_is_named_and_not_read_as_a_zero_error():
    result = verify.check("2-2-1:sigmoid:quadratic", seed=0, batch=2)
    record = dataclasses.replace(result.records[0], hand_value=float("inf"), torch_value=0.54,
                                 passed=False, status="diverges")
    assert "yours is inf where torch is 0.54" in worst_sentence(record)


def test_a_saturated_sigmoid_output_does_not_excuse_a_wrong_loss_or_gradient():
    spec = "3-4-2:relu,sigmoid:binary_cross_entropy:dtype=float32"

    def off(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out["loss"] = out["loss"] + 1000.0
        out["db1"] = out["db1"] + np.float32(1e3)
        return out
    result = verify.check(spec, seed=7, batch=4, impl=off)
    by_name = {r.name: r for r in result.records}
    assert by_name["loss"].status == "diverges" and by_name["db1"].status == "diverges"


def test_a_tensor_whose_inputs_all_agree_diverges_rather_than_inherits():
    def shifted_dx(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out["dx"] = out["dx"] * (1 + 1e-3)
        return out
    result = verify.check("3-4-2:tanh,identity:mse_loss", seed=2, batch=3, impl=shifted_dx)
    dx = next(r for r in result.records if r.name == "dx")
    assert dx.status == "diverges" and result.first_divergence.name == "dx"


def test_a_wrong_weight_gradient_formula_hidden_behind_the_gradients_is_named_by_single_example_calls():
    def z_for_a(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        return {"loss": out["loss"], "dW1": out["dW1"], "db1": out["db1"],
                "dW2": out["delta2"].T @ out["z1"], "db2": out["db2"]}        # z¹ where a¹ belongs
    failing = verify.check("3-4-2:relu,identity:mse_loss", seed=1, batch=3, impl=z_for_a)
    located = with_location(failing, z_for_a).located
    assert located.startswith("∂J/∂W² with example") and "δ², read back from ∂J/∂b², agrees" in located


def _elementwise_pairs() -> list[tuple[str, str]]:
    pairs = []
    for loss_name, loss in handimpl.LOSSES.items():
        low, high = loss.domain(**loss.options)
        pairs += [(name, loss_name) for name, act in handimpl.ACTIVATIONS.items()
                  if loss.elementwise and act.elementwise and low <= act.range[0] and act.range[1] <= high]
    return pairs


@pytest.mark.parametrize("width", [1e-8, 1e-4, 1e-2, 0.5])
def test_the_output_delta_bound_holds_wherever_z_moves_within_its_interval(width):
    """δ⁽ᴸ⁾ = ∂J/∂a(f(z))·f′(z) moves by no more than output_delta_error while z moves anywhere
    in [z − Ez, z + Ez] (a = f(z) with it), for every elementwise activation and loss that fit,
    narrow intervals and wide ones (where the composition may turn inside), beside a few units of
    roundoff of the values compared and the verdict's floor."""
    rng = np.random.default_rng(int(width * 1e8) % 997)
    u, tiny = UNIT_ROUNDOFF["float64"], underflow("float64")
    for name, loss_name in _elementwise_pairs():
        act, loss = handimpl.ACTIVATIONS[name], handimpl.LOSSES[loss_name]
        lo, hi = max(act.range[0], loss.domain(**loss.options)[0]), min(act.range[1], loss.domain(**loss.options)[1])
        z = rng.uniform(-8, 8, (20, 10))
        y = draw_target(NetSpec.parse(f"1-10:{name}:{loss_name}"), rng, 20, zero_fraction=0.0)
        Ez = width * (np.abs(z) + 1)
        a = act.f(z)
        Ea = act.forward_error(z, a, Ez, u)
        E = output_delta_error(act, loss, z, a, y, Ez, Ea, u, "sum", dict(loss.options), act.ends(z, Ez),
                               loss.grad(np.clip(a, lo, hi), y, "sum", **loss.options))

        def delta(zz):
            aa = act.f(zz)
            return act.vjp(zz, aa, loss.grad(np.clip(aa, lo, hi), y, "sum", **loss.options))

        here = delta(z)
        for t in np.linspace(-1, 1, 21):
            moved = np.abs(delta(z + t * Ez) - here)
            assert (moved <= E + 4 * u * (np.abs(here) + E) + tiny).all(), (name, loss_name, t)


def test_a_tensor_of_the_wrong_shape_is_one_failure_whatever_the_layer_activation_and_loss():
    transposed = load_target(f"{FIXTURES / 'user_impls.py'}:transposed")
    result = sweep_implementation(transposed, examples=30, seed=0)
    misshapen = [r for r in result.results if not r.passed and r.first_divergence.problem.startswith("shape")]
    assert len({(r.spec.activations[-1], r.spec.loss) for r in misshapen}) > 4      # many activations and losses
    assert {signature(r) for r in misshapen} == {("dW", "shape")}


def test_one_planted_bug_in_one_step_is_one_distinct_failure_across_activations_losses_dtypes_and_depths():
    buggy = load_target(f"{FIXTURES / 'user_impls.py'}:dW_over_m_twice")
    result = sweep_implementation(buggy, examples=120, seed=3)
    failing = result.failures
    assert len({(r.spec.loss, r.spec.dtype, r.spec.depth) for r in failing}) > 8   # seen in many settings
    assert len(distinct_failures(failing)) == 1
    assert len(result.minimal) == 1 and result.minimal[0].first_divergence.quantity == "dW"


def test_two_planted_bugs_in_two_steps_are_two_distinct_failures():
    buggy = load_target(f"{FIXTURES / 'user_impls.py'}:wrong_tanh_and_dW_over_m_twice")
    result = sweep_implementation(buggy, examples=120, seed=3, activations=["tanh", "relu", "sigmoid"])
    assert {signature(m)[:2] for m in result.minimal} == {("a", "tanh"), ("dW",)}


def test_each_distinct_failure_says_in_how_many_cases_and_with_which_functions_it_was_seen():
    buggy = load_target(f"{FIXTURES / 'user_impls.py'}:dW_over_m_twice")
    result = sweep_implementation(buggy, examples=60, seed=3)
    (seen,) = failure_groups(result.failures).values()
    assert seen.cases == result.n_failed
    assert set(seen.losses) == {r.spec.loss for r in result.failures}
    assert set(seen.dtypes) == {r.spec.dtype for r in result.failures}
    assert seen.text.startswith(f"seen in {result.n_failed} cases: ")
    assert seen.text in "\n".join(summary_lines(result))


def _required_only(fn):
    def required(spec, params, x, y):
        return {k: v for k, v in fn(spec, params, x, y).items() if k == "loss" or k[:2] in ("dW", "db")}
    return required


def test_a_weight_gradient_whose_delta_was_not_returned_is_told_apart_when_its_unit_sits_on_a_kink():
    def dW_over_m(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        return {**out, **{f"dW{l}": out[f"dW{l}"] / x.shape[0] for l in range(1, len(params) + 1)}}
    spec = "3-4-2:leaky_relu,identity:mse_loss"
    kink = next(r for r in (verify.check(spec, seed=s, batch=3, impl=leaky_kink_required_only)
                            for s in range(40)) if not r.passed)
    scale = verify.check(spec, seed=kink.seed, batch=3, impl=_required_only(dW_over_m))
    assert kink.first_divergence.quantity in ("dW", "db") and scale.first_divergence.quantity == "dW"
    assert signature(kink)[1:] == ("at a kink",) and signature(scale) == ("dW",)
