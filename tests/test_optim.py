"""handimpl.optim against torch.optim: each optimizer, step after step from torch's own state,
within the a priori bound of its update equations (docs/verdict.md, "Optimizers")."""
import inspect

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from handimpl.network import sgd_step
from handimpl.optim import OPTIMIZERS
from verify.core.compare import UNIT_ROUNDOFF, Pair, compare_all, tolerances
from verify.core.optim_spec import OptimizerSpec
from verify.errors import SpecError
from verify.sweep.strategies import optimizer_specs

STEPS = 6


def _torch_state(opt, tensor) -> dict:
    return {k: (float(v) if k == "step" else v.detach().numpy().copy())
            for k, v in opt.state.get(tensor, {}).items() if v is not None}


@given(optimizer=optimizer_specs(), dtype=st.sampled_from(["float64", "float32"]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 1e-3, 1e3]))
def test_each_optimizer_matches_torch_optim_within_its_bound_over_many_drawn_steps(optimizer, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    hyper = optimizer.hyper
    theta = rng.standard_normal((3, 2)).astype(dtype)
    tensor = torch.from_numpy(theta.copy())
    opt = getattr(torch.optim, optimizer.optimizer.torch_class)([tensor], **hyper)
    u = UNIT_ROUNDOFF[dtype]
    for _ in range(STEPS):
        g = (rng.standard_normal((3, 2)) * scale).astype(dtype)
        before, state = tensor.detach().numpy().copy(), _torch_state(opt, tensor)
        tensor.grad = torch.from_numpy(g.copy())
        opt.step()
        new, new_state = optimizer.optimizer.step({"p": before}, {"p": g}, {"p": state}, hyper)
        E = optimizer.optimizer.update_error(before.astype(float), g.astype(float), np.zeros(g.shape),
                                             {k: v if k == "step" else np.asarray(v, float) for k, v in state.items()},
                                             hyper, u)
        after = _torch_state(opt, tensor)
        pairs = [Pair("p", new["p"], tensor.detach().numpy(), None, 2 * E["param"])]
        pairs += [Pair(f"p.{k}", np.asarray(new_state["p"][k], dtype=np.float64 if k == "step" else None),
                       np.asarray(v), None, 0.0 if k == "step" else 2 * E[k]) for k, v in after.items()]
        failed = [r for r in compare_all(pairs, dtype=dtype, rtol=tolerances(dtype)[0], atol=tolerances(dtype)[1])
                  if not r.passed]
        assert not failed, f"{optimizer}: {[(r.name, r.max_abs_err, r.allowed) for r in failed]}"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_bound_of_a_default_step_lies_far_below_any_bugs_size(name):
    # Adam's early steps are the loosest: 1 − β₂ᵗ loses digits to cancellation (docs/verdict.md)
    rng = np.random.default_rng(0)
    optimizer = OPTIMIZERS[name]
    theta, g = rng.standard_normal(50), rng.standard_normal(50)
    hyper = optimizer.filled({})
    new, _ = optimizer.step({"p": theta}, {"p": g}, {}, hyper)
    E = optimizer.update_error(theta, g, np.zeros(50), {}, hyper, UNIT_ROUNDOFF["float64"])["param"]
    assert np.all(E <= 1e4 * UNIT_ROUNDOFF["float64"] * (np.abs(theta) + np.abs(new["p"] - theta)))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_leaves_its_arguments_untouched(name):
    rng = np.random.default_rng(1)
    params, grads = {"W1": rng.standard_normal((2, 3))}, {"W1": rng.standard_normal((2, 3))}
    optimizer = OPTIMIZERS[name]
    hyper = optimizer.filled({"momentum": 0.9} if "momentum" in optimizer.hyper else {})
    _, state = optimizer.step(params, grads, {}, hyper)
    kept = {k: {n: np.copy(v) for n, v in s.items()} for k, s in state.items()}
    p0, g0 = params["W1"].copy(), grads["W1"].copy()
    optimizer.step(params, grads, state, hyper)
    assert np.array_equal(params["W1"], p0) and np.array_equal(grads["W1"], g0)
    assert all(np.array_equal(state[k][n], v) for k, s in kept.items() for n, v in s.items())


def test_sgd_without_momentum_is_the_tutorials_update_bit_for_bit():
    rng = np.random.default_rng(2)
    params = [(rng.standard_normal((3, 2)), rng.standard_normal(3))]
    grads = {"dW1": rng.standard_normal((3, 2)), "db1": rng.standard_normal(3)}
    new, _ = OPTIMIZERS["sgd"].step({"W1": params[0][0], "b1": params[0][1]},
                                    {"W1": grads["dW1"], "b1": grads["db1"]}, {}, {"lr": 0.1})
    (W, b), = sgd_step(params, grads, 0.1)
    assert np.array_equal(new["W1"], W) and np.array_equal(new["b1"], b)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_registry_names_a_torch_optimizer_with_the_same_defaults(name):
    optimizer = OPTIMIZERS[name]
    signature = inspect.signature(getattr(torch.optim, optimizer.torch_class))
    for key, default in optimizer.hyper.items():
        assert signature.parameters[key].default == default, key


@given(optimizer_specs())
def test_an_optimizer_spec_reads_back_from_its_string(optimizer):
    assert OptimizerSpec.parse(str(optimizer)) == optimizer


def test_an_optimizer_spec_written_out_keeps_every_digit_of_its_hyperparameters():
    optimizer = OptimizerSpec.parse("adam:lr=0.0123456789,betas=0.91234567/0.999")
    assert str(optimizer) == "adam:lr=0.0123456789,betas=0.91234567/0.999"


@pytest.mark.parametrize("text, named", [
    ("adm", "valid: sgd, adam, adamw, rmsprop, adagrad"),
    ("adam:foo=1", "valid: lr, betas, eps"),
    ("adam:betas=0.9", "betas"),
    ("adam:betas=0.9/1.5", "[0, 1)"),
    ("adam:lr=-1", "lr"),
    ("adam:amsgrad=maybe", "true or false"),
    ("sgd:nesterov=true", "momentum > 0"),
    ("sgd:lr", "KEY=VALUE"),
    ("adam:lr=0.1,lr=0.2", "lr given twice"),
])
def test_a_bad_optimizer_spec_names_the_bad_part_and_the_choices(text, named):
    with pytest.raises(SpecError, match=None) as e:
        OptimizerSpec.parse(text)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_the_hyperparameter_strategy_refuses_an_unknown_name_first():
    with pytest.raises(ValueError, match="valid: sgd"):
        optimizer_specs(names=["adm"])
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        optimizer_specs(names=["adam"], fixed={"momentum": 0.9})
