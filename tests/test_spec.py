"""NetSpec: the string form round-trips, bad specs get one clear error, from_torch inverts the twin,
the twin's SGD step is torch.optim.SGD's."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import verify
from verify import NetSpec, SpecError, from_torch
from verify.core.data import draw_case
from verify.core.twin import build_twin, forward_twin, reload_twin, sgd_step
from verify.sweep.strategies import cases, net_specs


@given(net_specs())
def test_parsing_a_specs_string_gives_back_the_same_spec(spec):
    assert NetSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", [
    "2-2-1:sigmoid:quadratic",
    "4-16-3:relu,identity:cross_entropy:label_smoothing=0.2",
    "8-4-4:softsign,softmax:mse_loss:dtype=float32,bias=false",
    "3-3-3:tanh,softplus:huber_loss:reduction=sum,delta=2",
    "3-2:identity:smooth_l1_loss:beta=0.5",
    "5-3:identity:cross_entropy:target=prob",
])
def test_the_issues_example_specs_are_already_canonical(text):
    assert str(NetSpec.parse(text)) == text


def test_one_activation_name_applies_to_every_layer():
    assert NetSpec.parse("2-3-3-1:tanh:mse_loss").activations == ("tanh", "tanh", "tanh")


@pytest.mark.parametrize("text,message", [
    ("2-2-1:sigmod:quadratic", "unknown activation 'sigmod'; valid: identity, sigmoid"),
    ("2-2-1:sigmoid:mse", "unknown loss 'mse'; valid: mse_loss"),
    ("2-x-1:sigmoid:mse_loss", "widths '2-x-1'"),
    ("2-2-1:relu,relu,relu:mse_loss", "3 activations for 2 layers"),
    ("2-2-1:identity:binary_cross_entropy", "output activations that fit: sigmoid, hardsigmoid, softmax"),
    ("2-2-1:relu:mse_loss:dtype=float16", "dtype 'float16'; valid: float32, float64"),
    ("2-2-1:relu:mse_loss:delta=2", "unknown option 'delta' for mse_loss"),
    ("2-2-1:relu:huber_loss:delta=-1", "delta=-1.0: must be > 0"),
    ("2-2-1:relu:mse_loss:reduction=batchmean", "reduction 'batchmean' for mse_loss; valid: mean, sum"),
    ("2-2-1:relu:mse_loss:bias=maybe", "expected true or false"),
    ("2-2-1:relu:mse_loss:init=zeros", "unknown init 'zeros'; valid: default, xavier_uniform"),
    ("2-2-1:relu", "expected WIDTHS:ACTIVATIONS:LOSS"),
    ("0-2:relu:mse_loss", "need at least two positive integers"),
])
def test_a_bad_spec_gets_one_error_naming_the_bad_part_and_the_choices(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NetSpec.parse(text)


@given(net_specs(max_depth=3, max_width=5))
def test_from_torch_recovers_spec_and_parameters_of_a_twin(spec):
    params = draw_case(spec, 0, 2).params
    model = build_twin(spec, params)
    options = dict(spec.options, reduction=spec.reduction, init=spec.init, target=spec.target)
    back, back_params = from_torch(model, spec.loss, **options)
    assert back == spec
    assert all((W == W2).all() for (W, _), (W2, _) in zip(params, back_params))


def test_from_torch_accepts_a_hand_built_sequential():
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 2))
    spec, params = from_torch(model, "mse_loss")
    assert str(spec) == "3-4-2:gelu_tanh,identity:mse_loss:dtype=float32"
    assert verify.check(spec, seed=1).passed


def test_from_torch_rejects_an_unsupported_module_and_lists_the_supported_ones():
    with pytest.raises(SpecError, match="supported here.*relu, leaky_relu"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Dropout()), "mse_loss")


def test_from_torch_rejects_non_default_activation_settings():
    with pytest.raises(SpecError, match="LeakyReLU"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(0.2)), "mse_loss")


def test_twin_copies_the_numpy_parameters_rather_than_redrawing_them():
    spec = NetSpec.parse("3-4-2:relu,identity:mse_loss")
    params = draw_case(spec, 5, 2).params
    model = build_twin(spec, params)
    assert torch.equal(model[2].weight, torch.from_numpy(params[1][0]))


@given(cases(max_depth=3, max_width=6, max_batch=5), st.sampled_from([False, True]))
def test_the_twins_sgd_step_is_bit_identical_to_torch_optim_sgd(case, foreach):
    spec, seed, batch = case
    data = draw_case(spec, seed, batch)
    ours, theirs = (forward_twin(spec, data.params, data.x, data.y) for _ in range(2))
    ours.J.backward()
    theirs.J.backward()
    sgd_step(ours.model.parameters(), 0.37)
    torch.optim.SGD(theirs.model.parameters(), lr=0.37, foreach=foreach).step()
    for p, q in zip(ours.model.parameters(), theirs.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_twin_reloaded_in_float64_holds_the_float32_parameters_exactly_and_no_gradients():
    spec = NetSpec.parse("3-4-2:tanh,identity:mse_loss:dtype=float32")
    data = draw_case(spec, 3, 2)
    run = forward_twin(spec, data.params, data.x, data.y)
    run.J.backward()
    model = reload_twin(run.model, data.params, "float64")
    for linear, (W, b) in zip(model[0::2], data.params, strict=True):
        assert linear.weight.dtype == torch.float64 and linear.weight.grad is None
        assert torch.equal(linear.weight, torch.from_numpy(W).double())
        assert torch.equal(linear.bias, torch.from_numpy(b).double())
