"""The textbook allowance (handimpl.textbook, docs/verdict.md): each declared textbook form,
evaluated as written on a grid in both dtypes, stays within it, is beyond the tight
allowance somewhere (so the form really loses digits), and a bug of 10× the allowance is
not excused; end to end, code written with the textbook formulas passes as 'imprecise' with
a precision note, and fails in strict mode."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import handimpl
import verify
from handimpl import ACTIVATIONS, LOSSES
from handimpl.activations import LIBRARY_ULPS
from verify.core.bounds import output_delta_error
from verify.core.compare import UNIT_ROUNDOFF
from verify.core.verdict import precision_level_note
from verify.harness import trace
from verify.harness.diagnose import describe_case, worst_sentence

DTYPES = ("float32", "float64")
# z from -40 to 40 with many small magnitudes, where the cancellations are
GRID = np.concatenate([-np.logspace(-12, 1.6, 400), [0.0], np.logspace(-12, 1.6, 400)])

ACTIVATION_FORMS = [(name, t) for name, act in ACTIVATIONS.items() for t in act.textbook]
LOSS_FORMS = [(name, t) for name, loss in LOSSES.items() for t in loss.textbook]


def _form_id(item) -> str:
    name, t = item
    return f"{name}-{t.part}"


def _activation_errors(name: str, part: str, dtype: str):
    """(|naive - stable float64|, the tight allowance, the textbook allowance) over GRID rounded to dtype."""
    act = ACTIVATIONS[name]
    form = next(t for t in act.textbook if t.part == part)
    u = UNIT_ROUNDOFF[dtype]
    z = GRID.astype(dtype)
    z64 = z.astype(np.float64)
    a64 = act.f(z64)
    with np.errstate(all="ignore"):
        naive = np.asarray(form.evaluate(z)).astype(np.float64)
    if part == "f":
        exact = a64
        tight, loose = (view.forward_error(z64, a64, np.zeros_like(z64), u) for view in (act, act.textbook_view))
    else:
        exact = act.df(z64, a64)
        tight, loose = (LIBRARY_ULPS * u * view.df_terms(z64, a64) for view in (act, act.textbook_view))
    # the float64 stable evaluation is itself off by up to the tight allowance scaled to float64
    own = tight * UNIT_ROUNDOFF["float64"] / u
    return np.abs(naive - exact), tight + own, loose + own


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("item", ACTIVATION_FORMS, ids=_form_id)
def test_an_activations_textbook_form_stays_within_its_textbook_allowance_on_a_grid(item, dtype):
    name, form = item
    error, _, loose = _activation_errors(name, form.part, dtype)
    over = error > loose
    assert not over.any(), (GRID[over], error[over], loose[over])


@pytest.mark.parametrize("item", ACTIVATION_FORMS, ids=_form_id)
def test_an_activations_textbook_form_needs_its_allowance_somewhere_in_float32(item):
    name, form = item
    error, tight, _ = _activation_errors(name, form.part, "float32")
    assert (error > tight).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("item", ACTIVATION_FORMS, ids=_form_id)
def test_a_bug_of_ten_times_the_textbook_allowance_is_not_excused(item, dtype):
    name, form = item
    error, _, loose = _activation_errors(name, form.part, dtype)
    some = loose > 0                       # (mish at 0: exact, nothing allowed)
    assert (error + 10 * loose > loose)[some].all()
    assert (np.abs(error - 10 * loose) > loose)[some].all()


def _loss_data(name: str, dtype: str):
    rng = np.random.default_rng(0)
    if name == "binary_cross_entropy":
        a = np.concatenate([np.logspace(-11, -0.31, 200), 1 - np.logspace(-11, -0.31, 200)])
        y = rng.uniform(0, 1, a.shape)
    else:
        a = np.concatenate([-np.logspace(-10, 1.5, 200), np.logspace(-10, 1.5, 200)])
        y = rng.choice([-1.0, 1.0], a.shape) if name == "soft_margin_loss" else rng.uniform(0, 1, a.shape)
    return a.astype(dtype)[:, None], y.astype(dtype)[:, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("item", LOSS_FORMS, ids=_form_id)
def test_a_losss_textbook_form_stays_within_its_textbook_allowance_and_a_10x_bug_does_not(item, dtype):
    name, form = item
    loss = LOSSES[name]
    u = UNIT_ROUNDOFF[dtype]
    a, y = _loss_data(name, dtype)
    a64, y64 = a.astype(np.float64), y.astype(np.float64)
    with np.errstate(all="ignore"):
        naive = np.asarray(form.evaluate(a, y)).astype(np.float64)
    view = loss.textbook_view
    if form.part == "value":
        exact, tight, loose = loss.terms(a64, y64), loss.magnitudes(a64, y64), view.magnitudes(a64, y64)
    else:
        exact, tight, loose = loss.dterms(a64, y64), loss.dmagnitudes(a64, y64), view.dmagnitudes(a64, y64)
    clamped = np.zeros(a.shape, bool)
    for convention in loss.conventions:          # where torch clamps, the forms differ by its convention
        if convention.part == form.part:
            clamped |= np.asarray(convention.where(a64, y64))
    allowed = LIBRARY_ULPS * u * loose + LIBRARY_ULPS * UNIT_ROUNDOFF["float64"] * tight
    error = np.where(clamped, 0.0, np.abs(naive - exact))
    assert (error <= allowed).all()
    assert (np.abs(error - 10 * allowed)[~clamped] > allowed[~clamped]).all()


@pytest.mark.parametrize("kind", ["activation", "loss"])
def test_a_textbook_view_never_allows_less_than_the_tight_error_model(kind):
    z = GRID[:, None]
    if kind == "activation":
        for act in ACTIVATIONS._items.values():
            if act.elementwise:
                a = act.f(z)
                assert (act.textbook_view.f_terms(z, a) >= act.f_terms(z, a)).all(), act.name
                assert (act.textbook_view.df_terms(z, a) >= act.df_terms(z, a)).all(), act.name
    else:
        for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss"):
            a, y = _loss_data(name, "float64")
            view = LOSSES[name].textbook_view
            assert (view.magnitudes(a, y) >= LOSSES[name].magnitudes(a, y)).all()
            assert (view.dmagnitudes(a, y) >= LOSSES[name].dmagnitudes(a, y)).all()


# -- end to end ------------------------------------------------------------------------------------

def naive_elu(spec, params, x, y):
    """handimpl's backprop with ELU's forward written as the docs write it: α(eᶻ − 1)."""
    out = handimpl.backprop(spec, params, x, y)
    out["a1"] = ACTIVATIONS["elu"].textbook[0].evaluate(out["z1"])
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_written_as_the_docs_write_it_passes_as_imprecise_with_a_note_naming_expm1(dtype):
    spec = f"3-4-2:elu,identity:mse_loss:dtype={dtype}"
    imprecise = []
    for seed in range(30):
        result = verify.check(spec, seed=seed, batch=8, impl=naive_elu)
        assert result.passed, (seed, result.first_divergence)
        imprecise += [r for r in result.records if r.status == "imprecise" and r.name == "a1"]
    assert imprecise
    assert all("cancellation in eᶻ − 1" in r.note and "torch uses expm1" in r.note for r in imprecise)


def test_strict_mode_fails_what_passes_as_imprecise_and_the_session_default_does_too(monkeypatch):
    spec = "3-4-2:elu,identity:mse_loss:dtype=float32"
    seed = next(s for s in range(60) if any(r.status == "imprecise"
                                            for r in verify.check(spec, seed=s, batch=8, impl=naive_elu).records))
    strict = verify.check(spec, seed=seed, batch=8, impl=naive_elu, strict=True)
    assert not strict.passed and strict.first_divergence.name == "a1"
    monkeypatch.setattr(trace, "STRICT_DEFAULT", True)       # the pytest gate's --verify-strict
    assert not verify.check(spec, seed=seed, batch=8, impl=naive_elu).passed


def test_binary_cross_entropy_clamped_at_1e_12_as_written_agrees_in_float64():
    loss = LOSSES["binary_cross_entropy"]
    a = np.array([[1e-14, 1 - 2e-16, 0.3, 5e-13]])
    y = np.array([[0.7, 0.2, 0.3, 0.0]])
    written = (a - y) / np.maximum(a * (1 - a), 1e-12) / a.size
    torch_like = loss.grad(a, y)
    assert (written != torch_like).any()
    assert (np.abs(written - torch_like) <= loss.grad_error(a, y, np.zeros_like(a), 2.0**-53)).all()


def test_the_output_kinks_allowance_covers_a_gradient_held_rounded_up_in_float32():
    relu, loss = ACTIVATIONS["relu"], LOSSES["mse_loss"]
    u = UNIT_ROUNDOFF["float32"]
    y32 = np.float32(0.1) * np.arange(1, 4, dtype=np.float32)[None, :]
    a, y = np.zeros((1, 3)), y32.astype(np.float64)
    g = loss.grad(a, y)                                           # 2(a - y)/3, exact's neighbour
    g32 = loss.grad(np.zeros((1, 3), np.float32), y32).astype(np.float64)   # held in float32
    up = np.abs(g32) > np.abs(g)                                  # rounded away from 0
    assert up.any()
    z, Ez = np.zeros((1, 3)), np.full((1, 3), 1e-9)               # the kink inside z's interval
    E = output_delta_error(relu, loss, z, a, y, Ez, np.full((1, 3), 1e-9), u, "mean", {}, relu.ends(z, Ez), g)
    assert (np.abs(g32) <= E).all()              # relu′ taken as 1 on the other side: δ = g32


def _record(**changes):
    base = verify.check("2-2-1:sigmoid:quadratic", seed=0, batch=2).records[0]
    return dataclasses.replace(base, **changes)


def test_a_float64_error_of_31_ulps_is_counted_in_ulps_and_not_called_float32_level():
    r = _record(dtype="float64", reference_value=0.25, hand_value=0.25 + 31 * np.spacing(0.25),
                allowed=25 * np.spacing(0.25), max_rel_err=31 * np.spacing(0.25) / 0.25)
    note = precision_level_note(type("S", (), {"dtype": "float64"})(), r)
    assert "float32" not in note.split(":")[0] and note.startswith("31 ulps off")


def test_a_float64_error_at_float32_scale_is_called_float32_level():
    r = _record(dtype="float64", reference_value=0.25, hand_value=0.25 * (1 + 3e-8), allowed=1e-16,
                max_rel_err=3e-8)
    assert precision_level_note(type("S", (), {"dtype": "float64"})(), r).startswith("float32-level")


def test_the_worst_element_line_gives_that_elements_error_and_allowance_and_the_tensor_maximum_apart():
    r = _record(worst_index=(0, 1), hand_value=1.5, torch_value=1.0, reference_value=1.0, allowed=0.01,
                max_abs_err=7.0, n_mismatched=2, n_elements=4)
    text = worst_sentence(r)
    assert "off by 0.5 where 0.01 is allowed" in text
    assert "largest difference from torch in the tensor 7" in text


def bce_shortcut(spec, params, x, y):
    """δᴸ = (a − y)/N, the canonical shortcut of sigmoid with binary_cross_entropy, unclamped."""
    out = handimpl.backprop(spec, params, x, y)
    W, a = params[0][0], out["a1"]
    out["delta1"] = (a - y) / a.size
    out["dW1"], out["db1"], out["dx"] = out["delta1"].T @ x, out["delta1"].sum(axis=0), out["delta1"] @ W
    return out


def test_a_difference_only_where_torch_clamps_says_torch_clamps_there():
    notes = [r.first_divergence.note for seed in range(40)
             for r in [verify.check("3-1:sigmoid:binary_cross_entropy", seed=seed, batch=4, impl=bce_shortcut)]
             if not r.passed]
    assert notes and all(n.startswith("torch clamps the denominator a(1 − a)") for n in notes)


def test_a_difference_at_a_kink_names_torchs_derivative_there():
    def relu_prime_one_at_zero(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        z, g = out["z1"], out["delta2"] @ params[1][0]
        out["delta1"] = g * (z >= 0)
        out["dW1"], out["db1"], out["dx"] = out["delta1"].T @ x, out["delta1"].sum(axis=0), out["delta1"] @ params[0][0]
        return out
    failing = [r for seed in range(60)
               for r in [verify.check("3-4-1:relu,identity:mse_loss", seed=seed, batch=4, impl=relu_prime_one_at_zero)]
               if not r.passed]
    assert failing and all(r.first_divergence.at_kink for r in failing)
    assert "torch's is relu′(z) = 1 if z > 0 else 0" in describe_case(failing[0])


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.textbook])
def test_a_textbook_view_leaves_the_registered_activation_as_it_was(name):
    act = ACTIVATIONS[name]
    before = (act.f_terms, act.df_terms)
    view = act.textbook_view
    assert view is not act
    assert "f_terms" not in vars(act) and "df_terms" not in vars(act)
    assert (act.f_terms.__func__, act.df_terms.__func__) == (before[0].__func__, before[1].__func__)
    z = np.linspace(-3, 3, 7)[None, :]
    assert np.isfinite(view.f_terms(z, act.f(z))).all() and np.isfinite(act.f_terms(z, act.f(z))).all()


@pytest.mark.parametrize("name", [n for n, loss in LOSSES.items() if loss.textbook])
def test_a_textbook_view_leaves_the_registered_loss_as_it_was(name):
    loss = LOSSES[name]
    assert loss.textbook_view is not loss
    assert "magnitudes" not in vars(loss) and "dmagnitudes" not in vars(loss)


def test_a_tensor_beyond_its_tight_allowance_computed_from_a_failing_one_inherits_and_is_not_imprecise():
    from verify.core.spec import NetSpec
    from verify.core.verdict import refine
    spec = NetSpec.parse("3-4-2:elu,identity:mse_loss")
    z2 = _record(name="z2", quantity="z", layer=2, passed=False, status="diverges", problem="shape (1,) where …")
    a2 = _record(name="a2", quantity="a", layer=2, passed=True, status="imprecise", n_imprecise=3, n_elements=8)
    dW1 = _record(name="dW1", quantity="dW", layer=1, passed=True, status="imprecise", n_imprecise=1, n_elements=12)
    out = {r.name: r for r in refine(spec, None, {}, {}, 0.1, [z2, a2, dW1], textbook=True)}
    assert out["a2"].status == "inherits" and not out["a2"].passed and "computed from z2" in out["a2"].note
    assert out["dW1"].status == "imprecise" and out["dW1"].passed       # reads δ¹ and x, which agree
