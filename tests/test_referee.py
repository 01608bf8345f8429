"""The finite-difference referee (verify.core.referee, verify.harness.referee): a third opinion,
from J alone, with its own error bar."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import verify
from verify.cli.app import main
from verify.core.custom import unregister
from verify.core.referee import Probe, central, estimate
from verify.errors import SpecError, UsageError
from verify.harness import trace as trace_module
from verify.harness.referee import referee_case, referee_run
from verify.harness.trace import check, compare_many, trace
from verify.layers.report import function_frame, verdict_text
from verify.layers.run import check_layers, parse_reference
from verify.mutants.impl import __getattr__ as mutant

# Smooth functions of one variable with their exact derivatives, and points to take them at.
SMOOTH = [
    (math.sin, math.cos, [-2.0, 0.0, 0.3, 1e3]),
    (math.exp, math.exp, [-5.0, 0.0, 1.0, 20.0]),
    (lambda t: t ** 3, lambda t: 3 * t ** 2, [-7.0, 0.0, 1e-3, 50.0]),
    (lambda t: math.log1p(t * t), lambda t: 2 * t / (1 + t * t), [-3.0, 0.5, 1e4]),
    (lambda t: 1 / (1 + math.exp(-t)), lambda t: math.exp(-t) / (1 + math.exp(-t)) ** 2, [-4.0, 0.0, 2.5]),
]


@pytest.mark.parametrize("f, df, points", SMOOTH, ids=["sin", "exp", "cube", "log1p_square", "sigmoid"])
def test_the_error_bar_covers_the_actual_error_on_smooth_functions(f, df, points):
    for t in points:
        value, trunc, rounding, corner, _ = central(f, t)
        assert not corner
        assert abs(value - df(t)) <= trunc + rounding, (t, value, df(t), trunc, rounding)


def test_the_error_bar_covers_the_actual_error_against_autograd_in_float64():
    run = trace("3-4-2:tanh,sigmoid:mse_loss", seed=1, batch=3)
    probe = Probe(run.spec, run.case)
    exact = run.refs[0]                     # float64: torch's own autograd values
    for name in ("delta1", "dW1", "db2", "dx", "W2_after"):
        est = estimate(probe, name, run.lr)
        assert not est.corner.any()
        assert (np.abs(est.value - exact[name]) <= est.error).all(), name


def test_a_corner_is_detected_and_its_one_sided_slopes_reported():
    value, half_spread, _, corner, _ = central(abs, 0.0)
    assert corner and value == 0.0 and half_spread == pytest.approx(1.0)


def test_the_referee_supports_torch_where_the_implementation_is_wrong():
    impl = mutant("hidden_fprime_dropped")
    judged = referee_case(check("1-1-1:softplus:mse_loss", 0, 1, impl=impl), impl)
    first = judged.first_divergence
    assert first.name == "delta1" and first.referee == "torch's"
    assert "truncation" in first.referee_note and "rounding" in first.referee_note
    assert abs(first.referee_value - first.torch_value) <= first.referee_error


def test_the_referee_supports_yours_where_torch_is_wrong():
    run = trace("3-4-2:tanh,sigmoid:mse_loss", seed=1, batch=3)
    ref = dict(run.refs[0])
    ref["delta1"] = ref["delta1"] * 1.5              # a planted bug on torch's side
    bad = dataclasses.replace(run, refs=(ref, None))
    records = referee_run(bad, compare_many([bad])[0])
    delta1 = next(r for r in records if r.name == "delta1")
    assert not delta1.passed and delta1.referee == "yours"


def test_the_referee_supports_neither_where_both_sides_are_wrong():
    run = trace("3-4-2:tanh,sigmoid:mse_loss", seed=1, batch=3, impl=mutant("hidden_fprime_dropped"))
    ref = dict(run.refs[0])
    ref["delta1"] = ref["delta1"] * 1.5              # torch's side wrong too, differently
    bad = dataclasses.replace(run, refs=(ref, None))
    records = referee_run(bad, compare_many([bad])[0])
    delta1 = next(r for r in records if r.name == "delta1")
    assert not delta1.passed and delta1.referee == "neither"


def test_the_referee_says_both_for_values_that_agree():
    judged = referee_case(check("3-4-2:tanh,sigmoid:mse_loss", seed=1, batch=3), every=True)
    opinions = {r.name: r.referee for r in judged.records if r.referee}
    assert opinions and set(opinions.values()) == {"both"}
    assert {"delta1", "dW1", "db1", "dx", "W1_after"} <= set(opinions)


def test_the_referee_supports_torch_on_a_stack_mutant():
    impl = mutant("batchnorm_mean_term_dropped")
    result = check("2>linear:3>batchnorm>relu>linear:1|mse_loss", seed=1, batch=3, impl=impl)
    judged = referee_case(result, impl)
    assert {r.referee for r in judged.records if not r.passed} == {"torch's"}


def test_at_a_kink_the_referee_names_the_convention_instead_of_siding():
    impl = mutant("relu_prime_at_zero_is_one")
    judged = referee_case(check("2-3-1:relu,identity:mse_loss", seed=1, batch=3, impl=impl), impl)
    first = judged.first_divergence
    assert first.referee == "kink"
    assert "z¹ = 0 exactly" in first.referee_note and "torch uses 0" in first.referee_note


def test_at_a_kink_the_sentence_on_a_parameter_after_the_step_gives_the_two_steps_not_slopes():
    impl = mutant("relu_prime_at_zero_is_one")
    judged = referee_case(check("2-3-1:relu,identity:mse_loss", seed=1, batch=3, impl=impl), impl)
    after = [r for r in judged.records if r.name.endswith("_after") and r.referee == "kink"]
    assert after and all("a step along each one-sided slope gives" in r.referee_note for r in after)


def test_referee_fd_all_on_a_large_sweep_is_refused_in_one_line(capsys):
    assert main(["run", "--referee", "fd-all", "--examples", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fd-all" in err


def test_referee_fd_appears_in_every_report(tmp_path, capsys):
    out = tmp_path / "rep"
    status = main(["check", "--impl", "verify.mutants.impl:hidden_fprime_dropped", "--examples", "6",
                   "--activations", "softplus", "--max-depth", "2", "--max-width", "3", "--max-batch", "2",
                   "--referee", "fd", "--out", str(out)])
    assert status == 1
    assert "supports torch's value" in capsys.readouterr().out
    cases = pd.read_csv(out / "cases.csv")
    assert "torch's" in set(cases["referee"].dropna())
    disc = pd.read_csv(out / "discrepancies.csv")
    assert {"referee", "referee_value", "referee_error", "referee_note"} <= set(disc.columns)
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["referee"] == "fd"
    assert report["minimal"][0]["referee"][0]["supports"] == "torch's"
    assert "supports torch&#39;s value" in (out / "report.html").read_text()


def test_the_probe_evaluates_torchs_own_loss():
    run = trace("2>linear:3>batchnorm>relu>linear:1|mse_loss", seed=1, batch=3)
    assert Probe(run.spec, run.case).J0 == pytest.approx(run.refs[0]["loss"], rel=1e-15)
    assert torch.get_default_dtype() == torch.float32      # the probe changed no global state


# -- verify layers --reference fd: functions with no torch counterpart ------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def test_makemores_unbiased_batch_norm_is_judged_by_finite_differences_alone():
    result = check_layers(str(FIXTURES / "makemore_batchnorm.py"), only=["batchnorm"], examples=20,
                          reference={"batchnorm": "fd"})
    verdicts = {p.functions[1]: p.passed for p in result.present}
    assert verdicts == {"batchnorm_backward": True, "batchnorm_backward_alt": False}
    assert {p.reference for p in result.present} == {"fd"}
    assert "judged by finite differences alone" in verdict_text(result)
    assert set(function_frame(result)["reference"]) == {"fd"}


def test_against_torch_the_unbiased_batch_norm_fails():
    result = check_layers(str(FIXTURES / "makemore_batchnorm.py"), only=["batchnorm"], examples=5)
    assert not any(p.passed for p in result.present) and {p.reference for p in result.present} == {"torch"}


def test_a_backward_bug_is_caught_by_finite_differences_alone():
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_bugs
        import cs231n_vectorised
    finally:
        sys.path.remove(str(FIXTURES))
    module = types.ModuleType("user_layers")
    module.__dict__.update({k: v for k, v in vars(cs231n_vectorised).items() if not k.startswith("__")})
    module.__dict__.update(affine_backward=cs231n_bugs.BUGS["affine"]["affine_backward"])
    result = check_layers(module, only=["affine"], examples=20, reference={"affine": "fd"})
    assert [p.passed for p in result.present] == [False]


@pytest.mark.parametrize("text, words", [("dropout=fd", "cannot be judged"), ("nosuch=fd", "unknown nosuch"),
                                         ("batchnorm=maybe", "expected fd")])
def test_a_bad_reference_is_one_line(text, words):
    with pytest.raises(UsageError) as e:
        parse_reference(text)
    assert words in str(e.value) and "\n" not in str(e.value)


# -- @verify.activation: activations with no torch counterpart ---------------------------------------

@pytest.fixture
def registered(monkeypatch):
    """The names registered by a test, unregistered after it (the registries are the process's);
    its checks are not recorded by the pytest gate (whose report, written at the end of the session,
    would look the activation up after it is gone)."""
    monkeypatch.setattr(trace_module, "OBSERVERS", [])
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_a_decorated_numpy_activation_is_checked_in_specs(registered):
    @verify.activation
    def scaled_tanh(z):
        return 1.7159 * np.tanh(2 * z / 3)
    registered.append("scaled_tanh")
    assert verify.check("4-3-1:scaled_tanh,sigmoid:mse_loss", seed=0, batch=4).passed
    assert verify.check("4-3-1:scaled_tanh,sigmoid:mse_loss:dtype=float32", seed=1, batch=4).passed


def test_a_wrong_derivative_of_a_decorated_activation_is_caught(registered):
    @verify.activation(name="lecun_tanh", derivative=lambda z: 1.7159 / np.cosh(2 * z / 3) ** 2)  # the 2/3 lost
    def forward(z):
        return 1.7159 * np.tanh(2 * z / 3)
    registered.append("lecun_tanh")
    result = verify.check("4-3-1:lecun_tanh,sigmoid:mse_loss", seed=0, batch=4)
    assert not result.passed and result.first_divergence.name == "delta1"


def test_a_sweep_over_a_decorated_activation_with_its_right_derivative_agrees(registered):
    def derivative(z):
        return 1.7159 * 2 / 3 / np.cosh(np.clip(2 * z / 3, -300, 300)) ** 2
    verify.activation(name="lecun_ok", derivative=derivative)(lambda z: 1.7159 * np.tanh(2 * z / 3))
    registered.append("lecun_ok")
    frame = verify.check_implementation("handimpl:backprop", activations=["lecun_ok", "sigmoid"], examples=15,
                                        max_width=4, max_depth=2)
    assert frame.attrs["passed"], frame.attrs["message"]


def test_a_spec_naming_an_activation_registered_in_the_impl_file_is_checked(capsys):
    target = str(Path(__file__).parent / "fixtures" / "registers_activation.py") + ":backprop"
    try:
        status = main(["check", "3-4-2:lecun_tanh_from_file,identity:mse_loss", "--impl", target])
    finally:
        unregister("lecun_tanh_from_file")
    assert status == 0 and "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("misuse, words", [
    (lambda: verify.activation(3), "takes a function"),
    (lambda: verify.activation(name="relu")(lambda z: z), "'relu' is a built-in activation"),
    (lambda: verify.activation(derivative=5)(lambda z: z), "derivative must be a function"),
    (lambda: verify.activation(name="not a name")(lambda z: z), "not a plain identifier"),
])
def test_misusing_the_decorator_is_one_clear_error(misuse, words):
    with pytest.raises(SpecError) as e:
        misuse()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_decorated_activation_is_refused_in_a_layer_stack_in_one_line(registered):
    verify.activation(name="my_act")(np.tanh)
    registered.append("my_act")
    with pytest.raises(SpecError, match="dense specs"):
        verify.check("2>linear:3>my_act>linear:1|mse_loss")


def test_an_embeddings_padding_row_is_left_out_as_a_convention():
    judged = referee_case(check("1>embedding:10,3,pad=0>flatten>linear:1>selu|quadratic:mode=eval,reduction=sum",
                                0, 4), every=True)
    dW1 = next(r for r in judged.records if r.name == "dW1")
    assert dW1.referee == "both" and "padding_idx" in dW1.referee_note


# -- the complex step (verify.core.referee: where J is analytic) -----------------------------------

def test_the_complex_step_gives_an_analytic_derivative_to_rounding_where_central_differences_do_not():
    import cmath

    from verify.core.referee import complex_step
    t = 0.7
    exact = math.exp(t) * (math.sin(t) + math.cos(t))                 # d/dt eᵗ sin t
    value, trunc, rounding = complex_step(lambda d: (cmath.exp(t + d) * cmath.sin(t + d), 0.0), t)
    central_value, *_ = central(lambda s: math.exp(s) * math.sin(s), t)
    assert abs(value - exact) <= 1e-15 * abs(exact) and abs(value - exact) <= trunc + rounding
    assert trunc + rounding <= 1e-14 * abs(exact)
    assert abs(central_value - exact) > 1e-13 * abs(exact)               # differences lose about 1e-11


def test_on_an_analytic_case_the_referee_takes_the_complex_step_and_its_bar_covers_the_exact_value():
    mpmath = pytest.importorskip("mpmath")       # a dependency of torch (through sympy)
    run = trace("2-2-1:sigmoid:quadratic", seed=0, batch=4)
    probe = Probe(run.spec, run.case)
    W = [lin.weight.detach().numpy() for lin in list(probe.model)[0::2]]
    b = [lin.bias.detach().numpy() for lin in list(probe.model)[0::2]]
    x, y = np.asarray(run.case.x, float), np.asarray(run.case.y, float)

    def J(w):                                   # the tutorial's network in 40 digits, W¹₀₀ = w
        total = mpmath.mpf(0)
        for xi, yi in zip(x, y):
            a = [mpmath.mpf(v) for v in xi]
            for l in range(2):
                rows = [[w if (l, j, q) == (0, 0, 0) else mpmath.mpf(W[l][j, q]) for q in range(len(a))]
                        for j in range(W[l].shape[0])]
                a = [1 / (1 + mpmath.exp(-(sum(r * v for r, v in zip(row, a)) + mpmath.mpf(b[l][j]))))
                     for j, row in enumerate(rows)]
            total += sum((ai - mpmath.mpf(yi_)) ** 2 / 2 for ai, yi_ in zip(a, yi))
        return total / len(x)

    with mpmath.workdps(40):
        exact = float(mpmath.diff(J, mpmath.mpf(W[0][0, 0])))
    est = probe.derivative("W1", [0])
    assert est.method_at(0) == "complex step, complex128"
    value, bar = float(est.value.flat[0]), float(est.error.flat[0])
    assert abs(value - exact) <= bar <= 1e-14 * abs(exact)
    probe.complex = None                                                 # central differences alone
    assert float(probe.derivative("W1", [0]).error.flat[0]) > 1e-9 * abs(exact)


@pytest.mark.parametrize("name", ["identity", "sigmoid", "tanh", "silu", "tanhshrink"])
def test_each_activation_the_complex_step_trusts_is_analytic_as_torch_evaluates_it(name):
    from verify.core.referee import COMPLEX_ACTIVATIONS, complex_step
    from verify.core.torch_ops import TORCH_ACTIVATIONS
    assert name in COMPLEX_ACTIVATIONS
    f = TORCH_ACTIVATIONS[name]()
    for t in (-2.3, -0.4, 0.9, 3.1):
        z = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        (exact,) = torch.autograd.grad(f(z), z)
        value, _, _ = complex_step(lambda d: (complex(f(torch.tensor(t + d, dtype=torch.complex128))), 0.0), t)
        assert value == pytest.approx(float(exact), rel=1e-13, abs=1e-300)


@pytest.mark.parametrize("name, target", [
    ("quadratic", "real"), ("mse_loss", "real"), ("cross_entropy", "classes"), ("poisson_nll_loss", "counts"),
    ("soft_margin_loss", "signs")])
def test_each_loss_the_complex_step_trusts_sums_torchs_own_loss_and_is_analytic(name, target):
    from verify.core.referee import COMPLEX_LOSSES
    from verify.core.torch_ops import TORCH_LOSSES
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.uniform(-1.5, 1.5, (3, 4)), dtype=torch.float64, requires_grad=True)
    y = {"real": torch.tensor(rng.uniform(-1, 1, (3, 4))), "classes": torch.tensor([0, 3, 1]),
         "counts": torch.tensor(rng.integers(0, 4, (3, 4)), dtype=torch.float64),
         "signs": torch.tensor(rng.choice([-1.0, 1.0], (3, 4)))}[target]
    J = TORCH_LOSSES[name](a, y)
    (grad,) = torch.autograd.grad(J, a)
    terms = COMPLEX_LOSSES[name](a.detach().to(torch.complex128), y if target == "classes" else y.to(torch.complex128))
    assert complex(terms.sum()).real == pytest.approx(float(J.detach()), rel=1e-14)
    h = 1e-20
    for k in range(12):
        moved = a.detach().to(torch.complex128).clone()
        moved.view(-1)[k] += 1j * h
        c = COMPLEX_LOSSES[name](moved, y if target == "classes" else y.to(torch.complex128)).sum()
        assert float(c.imag) / h == pytest.approx(float(grad.view(-1)[k]), rel=1e-13, abs=1e-300)


@pytest.mark.parametrize("spec", ["3-4-2:relu,identity:mse_loss", "2-3-1:softsign,sigmoid:mse_loss",
                                  "3-4-2:tanh,identity:l1_loss", "2>linear:3>tanh>linear:1|mse_loss"])
def test_where_some_function_is_not_analytic_the_referee_keeps_central_differences(spec):
    from verify.core.referee import METHOD
    run = trace(spec, seed=1, batch=3)
    probe = Probe(run.spec, run.case)
    est = probe.derivative("W1")
    assert probe.complex is None and est.method == METHOD and est.complex_step is None
    assert est.method_at(0) == "central differences, float64"


def test_the_referees_sentence_names_the_method_and_its_much_smaller_bar():
    impl = mutant("hidden_fprime_dropped")
    analytic = referee_case(check("1-1-1:sigmoid:mse_loss", 0, 1, impl=impl), impl).first_divergence
    smooth = referee_case(check("1-1-1:softplus:mse_loss", 0, 1, impl=impl), impl).first_divergence
    assert analytic.referee == smooth.referee == "torch's"
    assert "referee (complex step, complex128) supports torch's value" in analytic.referee_note
    assert "referee (central differences, float64) supports torch's value" in smooth.referee_note
    assert analytic.referee_error < 1e-14 * abs(analytic.torch_value) < smooth.referee_error


def test_the_referee_says_plainly_that_it_does_not_judge_forward_values_the_loss_or_buffers():
    from verify.harness.referee import summary_lines
    judged = referee_case(check("2>linear:3>batchnorm>tanh>linear:1|mse_loss", seed=0, batch=3), every=True)
    first, unjudged = summary_lines(judged.spec, judged.records)
    assert first.startswith("referee (central differences, float64): ")
    named = unjudged.split(": ", 1)[1].split(" (")[0].split(", ")
    assert {"out1", "running_mean2", "running_var2", "loss"} <= set(named)
    assert not {"dW1", "grad2", "dx"} & set(named)
