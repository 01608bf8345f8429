"""Layer stacks (verify.core.stack, handimpl.layers, handimpl.stack): the grammar round-trips and
refuses bad input in one line; handimpl's stack agrees with its torch twin on drawn architectures
under the a priori verdict; and each classic normalisation, dropout and residual bug is caught."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import verify
import verify.api
from handimpl.layers import BatchNorm, Context
from verify.byo.call import load_target
from verify.cli.app import main
from verify.core.data import draw_stack_case
from verify.core.stack import StackSpec
from verify.errors import SpecError
from verify.sweep.draw import draw_all
from verify.sweep.strategies import OPTIONAL_KINDS, stack_cases, stack_specs

FIXTURES = Path(__file__).parent / "fixtures"
stack_bugs = sys.modules[load_target(f"{FIXTURES / 'stack_bugs.py'}:buggy").__module__]

EXAMPLES = [
    "784>linear:128>batchnorm>relu>dropout:0.1>linear:10|cross_entropy",
    "4>linear:8>residual(linear:8>tanh>linear:8)>layernorm>linear:2|mse_loss:dtype=float32,mode=eval",
    "2x6>groupnorm:2>flatten>linear:3>sigmoid|binary_cross_entropy",
    "3x4x4>batchnorm:eps=0.001,momentum=0.3>flatten>linear:2|huber_loss:reduction=sum,delta=0.5",
    "1x6x7>maxpool:2x3,s1x2,p1,d2>avgpool:2x1>flatten|mse_loss",           # non-square pools, as spec() writes them
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_a_written_stack_spec_parses_back_to_itself(text):
    spec = StackSpec.parse(text)
    assert str(spec) == text and StackSpec.parse(str(spec)) == spec


@given(stack_specs())
def test_every_drawn_stack_spec_round_trips_through_its_string(spec):
    assert StackSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, says", [
    ("784>lin:3|mse_loss", "unknown layer 'lin'; valid: linear"),
    ("784>linear:3|nope", "unknown loss 'nope'"),
    ("1x8x8>linear:3|mse_loss", "flatten first"),
    ("4>linear:3>relu|binary_cross_entropy", "binary_cross_entropy needs outputs in [0, 1]"),
    ("4>groupnorm:3|mse_loss", "channels divisible by 3"),
    ("4>residual(linear:3)|mse_loss", "its branch must keep the shape"),
    ("4>linear:3>dropout:1.5|mse_loss", "drop probability must lie in [0, 1)"),
    ("4>linear:3|mse_loss:mode=test", "mode 'test'; valid: train, eval"),
    ("4>linear:3", "expected INPUT>LAYER>...|LOSS"),
    ("4>residual(linear:4|mse_loss", "a '(' without its ')'"),
    ("4>>linear:3|mse_loss", "an empty layer"),
    ("4x4x4x4>flatten>linear:2|mse_loss", "expected sizes in the digits 0-9 joined by 'x'"),
    ("0>linear:2|mse_loss", "1 to 3 positive sizes"),
])
def test_a_bad_stack_spec_is_one_line_naming_the_bad_part(text, says):
    with pytest.raises(SpecError) as e:
        StackSpec.parse(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_batch_norm_case_of_one_example_in_training_is_refused_and_never_drawn():
    spec = StackSpec.parse("4>linear:3>batchnorm>linear:2|mse_loss")
    with pytest.raises(ValueError, match="needs at least 2 examples"):
        draw_stack_case(spec, seed=0, batch=1)
    assert draw_stack_case(StackSpec.parse("4>linear:3>batchnorm>linear:2|mse_loss:mode=eval"), 0, 1).x.shape == (1, 4)


@given(stack_cases(max_batch=6))
def test_handimpls_stack_agrees_with_its_torch_twin_on_drawn_architectures(case):
    spec, seed, batch = case
    result = verify.check(spec, seed=seed, batch=batch)
    assert result.passed, (str(spec), seed, batch, result.first_divergence)


def test_batch_norm_updates_its_running_variance_with_the_unbiased_variance_as_torch_does():
    spec = StackSpec.parse("3>batchnorm:momentum=0.5>linear:1|mse_loss")
    case = draw_stack_case(spec, seed=2, batch=4)
    layer = spec.layers[0]
    x = case.x.astype(np.float64)
    _, cache = layer.forward(x, case.params[0], Context(training=True))
    after = layer.updated(case.params[0], cache)
    expected = 0.5 * case.params[0]["running_var"] + 0.5 * x.var(axis=0, ddof=1)
    np.testing.assert_allclose(after["running_var"], expected, rtol=1e-12)
    assert verify.check(spec, seed=2, batch=4).passed


def test_eval_mode_normalises_with_the_running_statistics_and_leaves_them():
    spec = StackSpec.parse("3>batchnorm>linear:1|mse_loss:mode=eval")
    case = draw_stack_case(spec, seed=1, batch=3)
    p = case.params[0]
    y, cache = BatchNorm().forward(case.x, p, Context(training=False))
    expected = p["gamma"] * (case.x - p["running_mean"]) / np.sqrt(p["running_var"] + 1e-5) + p["beta"]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert BatchNorm().updated(p, cache)["running_mean"] is p["running_mean"]


SPECS_FOR = {
    "batchnorm": ["6>linear:5>batchnorm>relu>linear:3|cross_entropy",
                  "2x3x3>batchnorm>flatten>linear:2|mse_loss:dtype=float32"],
    "layernorm": ["6>linear:5>layernorm>tanh>linear:3|mse_loss"],
    "dropout": ["6>linear:5>relu>dropout:0.25>linear:3|mse_loss"],
    "residual": ["4>linear:6>residual(linear:6>tanh>linear:6)>linear:2|mse_loss"],
}


@pytest.mark.parametrize("bug", list(stack_bugs.BUGS))
def test_each_classic_layer_bug_is_caught_within_ten_seeds(bug):
    impl = stack_bugs.buggy(bug)
    specs = SPECS_FOR[bug.split("_")[0]]
    assert any(not verify.check(spec, seed=seed, batch=4, impl=impl).passed
               for spec in specs for seed in range(10))


def test_a_batch_norm_bug_in_backward_is_rooted_in_the_gradient_into_the_batch_norms_input():
    result = verify.check("6>linear:5>batchnorm>relu>linear:3|cross_entropy", seed=0, batch=4,
                          impl=stack_bugs.buggy("batchnorm_no_mean_term"))
    assert result.first_divergence.name == "grad1"
    assert [r.status for r in result.records if r.name in ("out2", "grad2")] == ["agrees", "agrees"]


@pytest.mark.parametrize("spec", ["2>linear:3|mse_loss", "2>linear:3>sigmoid|binary_cross_entropy",
                                  "3>linear:4|cross_entropy:label_smoothing=0.1"])
def test_a_stacks_wrong_loss_is_a_failing_loss_row_not_an_error(spec):
    from handimpl.stack import stack_backprop

    def off_by_one(*args):
        out = stack_backprop(*args)
        out["loss"] = out["loss"] + 1.0
        return out
    result = verify.check(spec, seed=1, batch=2, impl=off_by_one)
    assert result.error == "" and result.first_divergence.name == "loss"
    assert [r.name for r in result.records if not r.passed] == ["loss"]


def test_verify_check_takes_a_stack_spec_on_the_command_line(capsys):
    assert main(["check", EXAMPLES[2], "--seed", "1"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check", "6>linear:5>batchnorm>relu>linear:3|cross_entropy",
                 "--impl", f"{FIXTURES / 'stack_bugs.py'}:batchnorm_no_mean_term"]) == 1
    assert "look at the backward step of layer 2 (batchnorm)" in capsys.readouterr().out


PIECES = ["(", ")", ">", "|", ":", ",", "=", "x", "0", "-1", "1e999", "nan", "inf", "k0", "s0", "p9", "d0",
          "nobias", "pad=99", "eps=0", "momentum=2", "９", "٢", "999999", "1.5", " ", "residual(", "residual()",
          "embedding:0,0", "linear:0", "dropout:1", "maxpool:0", "groupnorm:0", "eps=abc", "k3x2x1"]


@given(st.sampled_from(EXAMPLES), st.lists(st.tuples(st.integers(0, 120), st.integers(0, 4),
                                                      st.sampled_from(PIECES)), min_size=1, max_size=3))
def test_a_mangled_stack_spec_parses_and_round_trips_or_is_one_line(text, edits):
    for at, cut, piece in edits:
        at = min(at, len(text))
        text = text[:at] + piece + text[at + cut:]
    try:
        spec = StackSpec.parse(text)
    except SpecError as e:
        assert "\n" not in str(e)
    else:
        assert StackSpec.parse(str(spec)) == spec


def _layer_kinds(spec):
    return [layer.kind for layer in spec.layers]


def test_the_stack_strategy_draws_one_dimensional_cnns_and_shrinks_them_to_the_smallest():
    smallest = find(stack_specs(), lambda spec: "conv1d" in _layer_kinds(spec))
    assert str(smallest).startswith("1x3>conv1d:1,k1,nobias>identity>flatten>linear:1|")


def test_drawn_one_dimensional_cnns_agree_with_their_torch_twin():
    from verify.sweep.run import sweep
    result = sweep(examples=15, seed=2, jobs=1, architectures=["stack"], kinds=("conv1d",), max_shrunk=0)
    assert len(result.results) == 15 and all("conv1d" in _layer_kinds(r.spec) for r in result.results)
    assert result.n_failed == 0, [str(r.spec) for r in result.results if not r.passed]


def test_the_stack_strategy_draws_a_max_pool_on_the_input_itself_where_zeros_tie_exactly():
    first = find(stack_specs(), lambda spec: _layer_kinds(spec)[0] == "maxpool")
    assert str(first).startswith("1x3x3>maxpool:2,s1>")


def test_a_sweep_of_stacks_in_two_worker_processes_gives_the_one_process_records():
    from verify.sweep.run import sweep
    one = sweep(examples=40, seed=5, jobs=1, architectures=["stack"], max_shrunk=0)
    two = sweep(examples=40, seed=5, jobs=2, architectures=["stack"], max_shrunk=0)
    assert [str(r.spec) for r in one.results] == [str(r.spec) for r in two.results]
    assert [r.records for r in one.results] == [r.records for r in two.results]
    assert all(hasattr(r.spec, "layers") for r in one.results)


def _kinds_of(layers):
    for layer in layers:
        yield layer.kind
        yield from _kinds_of(getattr(layer, "inner", ()))


@pytest.mark.parametrize("kind", OPTIONAL_KINDS)
def test_every_stack_drawn_for_a_kind_holds_it_by_construction(kind):
    drawn = draw_all(dict(max_batch=6, max_depth=4, max_width=6, activations=None, losses=None, dtypes=None,
                          architectures=("stack",), kinds=(kind,)), 30, 0)
    assert len(drawn) == 30 and all(kind in set(_kinds_of(spec.layers)) for spec, *_ in drawn)


def test_stacks_drawn_with_allowed_layers_hold_no_other_kind():
    allowed = {"batchnorm", "dropout", "conv2d"}
    drawn = draw_all(dict(max_batch=6, max_depth=4, max_width=6, activations=None, losses=None, dtypes=None,
                          architectures=("stack",), layers=tuple(allowed)), 80, 1)
    held = set().union(*(set(_kinds_of(spec.layers)) for spec, *_ in drawn))
    assert held - {"linear", "flatten", "activation"} <= allowed and {"batchnorm", "conv2d"} <= held


def test_an_implementations_supported_layers_restrict_its_sweep():
    from handimpl.stack import stack_backprop

    def mine(*args):
        return stack_backprop(*args)
    mine.supports = {"layers": ["layernorm"]}
    result = verify.api.sweep_implementation(mine, architectures=["stack"], examples=20, seed=2)
    assert result.passed
    assert all(set(_kinds_of(c.spec.layers)) <= {"linear", "flatten", "activation", "layernorm"}
               for c in result.results)


@pytest.mark.parametrize("args, says", [
    (["--layers", "batchnorm,bogus"], "unknown layer kind 'bogus'; valid: linear, flatten, activation, batchnorm"),
])
def test_an_unknown_layer_kind_is_one_line_and_exit_2(args, says, capsys, tmp_path):
    assert main(["run", *args, "--examples", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
