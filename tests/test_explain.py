"""`verify explain`: the explanation is right (numbers agree, real node names) and renders safely."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest

from handimpl import ACTIVATIONS, LOSSES
from verify.cli.app import main
from verify.core.data import draw_case
from verify.core.spec import NetSpec
from verify.explain.graph import run_torch
from verify.explain.page import DOCS, explain, render, tutorial_markdown
from verify.explain.render import render_html
from verify.explain.steps import Explanation, Section, Step, fmt_array
from verify.explain.tutorial import tutorial_example, tutorial_formulas


def _steps(ex, startswith):
    return [s for s in ex.all_steps() if s.formula.startswith(startswith)]


def test_explain_names_the_autograd_nodes_torch_really_built():
    ex = explain("4-3-3:tanh,identity:cross_entropy")
    nodes = " ".join(n for s in ex.all_steps() for n in s.nodes)
    for name in ("NllLossBackward0", "LogSoftmaxBackward0", "TanhBackward0", "AddmmBackward0", "TBackward0"):
        assert name in nodes
    assert "SigmoidBackward0" not in nodes          # not in this spec, so never named
    no_bias = run_torch(NetSpec.parse("2-2-1:sigmoid:quadratic:bias=false"),
                        *_case("2-2-1:sigmoid:quadratic:bias=false"))
    assert {lin.node for lin in no_bias.linear.values()} == {"MmBackward0"}
    assert no_bias.loss_nodes[0] == "DivBackward0" and all(lin.to_b == () for lin in no_bias.linear.values())


def _case(text):
    c = draw_case(NetSpec.parse(text), 11, 2)
    return c.params, c.x, c.y


def test_every_hand_value_in_an_explanation_agrees_with_torch():
    for spec in ("3-3-2:relu,sigmoid:mse_loss", "3-4-3:gelu,log_softmax:nll_loss", "2-3-2:tanh:mse_loss:dtype=float32"):
        tol = 1e-5 if "float32" in spec else 1e-12
        checked = 0
        for step in explain(spec, seed=1).all_steps():
            for label, d in step.diffs:
                if label.startswith(("max |hand", "max |general", "max |mean", "max |quadratic", "max |column",
                                     "max |Σ")):
                    assert d <= tol, (spec, step.formula, label, d)
                    checked += 1
        assert checked >= 10, (spec, checked)          # the labels still name the hand-vs-torch diffs


def test_tutorial_example_matches_the_tutorials_formulas_numerically():
    s = tutorial_formulas()
    assert s["yhat"].item() == pytest.approx(0.75136507, abs=1e-8)     # the classic example's numbers
    assert s["d2"].item() == pytest.approx((s["yhat"] - 0.01).item() * s["yhat"].item() * (1 - s["yhat"].item()))
    assert s["W2_new"] == pytest.approx(np.array([[0.35891648, 0.40866619]]), abs=1e-8)
    ex = tutorial_example()
    formulas = [st.formula for st in ex.all_steps()]
    for f in ("δ₂ = (ŷ − y)·ŷ(1 − ŷ)", "δ₁ = (W₂)ᵀδ₂ ⊙ a₁(1 − a₁)", "∂J/∂W₂ = δ₂a₁ᵀ", "∂J/∂W₁ = δ₁xᵀ",
              "W₁ := W₁ − η ∂J/∂W₁"):
        assert f in formulas
    diffs = [d for st in ex.all_steps() for _, d in st.diffs]
    assert diffs and all(d <= 1e-15 for d in diffs)


def test_canonical_pairs_show_the_shortcut_equals_the_general_product():
    for spec in ("2-2-1:sigmoid:binary_cross_entropy", "4-3-3:tanh,identity:cross_entropy",
                 "3-3-3:tanh,log_softmax:nll_loss"):
        ex = explain(spec, seed=11)
        (short,) = _steps(ex, "shortcut:")
        assert short.diffs and all(d <= 1e-12 for _, d in short.diffs), spec
        assert any(s.formula == "the cancellation" for s in ex.all_steps())


def test_non_canonical_pair_shows_the_shortcut_is_wrong():
    ex = explain("3-3-2:relu,sigmoid:mse_loss", seed=11)
    (short,) = _steps(ex, "shortcut:")
    assert dict(short.diffs)["max |shortcut − torch|"] > 1e-3
    (wrong,) = _steps(ex, "what goes wrong")
    assert "σ′(z) = a(1 − a)" in wrong.note and "off by up to" in wrong.note


def test_large_matrices_are_summarised_small_ones_printed_whole():
    assert len(fmt_array(np.arange(6.0).reshape(2, 3))) == 2
    (line,) = fmt_array(np.arange(50.0).reshape(5, 10))
    assert line.startswith("shape 5×10") and "max 49" in line


def test_html_output_is_self_contained_and_escaped():
    ex = Explanation("<title & x>", ("a < b",), (Section("h<2>", "", (Step("δ < 1", ("<Node>",), note="x&y"),)),))
    page = render_html(ex)
    assert "<title & x>" not in page and html.escape("<title & x>") in page and "&lt;Node&gt;" in page
    real = render(explain("2-2-1:sigmoid:binary_cross_entropy"), "html")
    assert real.startswith("<!DOCTYPE html>") and "<style>" in real
    assert not re.search(r"<script|<link|src=|https?://", real)


def test_the_three_formats_say_the_same_things():
    ex = explain("2-2-1:sigmoid:binary_cross_entropy")
    outs = {fmt: render(ex, fmt) for fmt in ("text", "md", "html")}
    for step in ex.all_steps():
        assert step.formula in outs["text"] and step.formula in outs["md"]
        assert html.escape(step.formula) in outs["html"]


def test_explain_shows_the_formulas_an_activation_and_a_loss_carry(capsys):
    assert main(["explain", "3-4-2:mish,hardswish:smooth_l1_loss", "--seed", "11"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (ACTIVATIONS["mish"].derivative, ACTIVATIONS["hardswish"].derivative,
                  LOSSES["smooth_l1_loss"].grad_formula):
        assert " ".join(shown.split()) in text
    assert "mish′(z)" not in text and "hardswish′(z)" not in text


def test_cli_explain_writes_a_file_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "e.md"
    assert main(["explain", "2-2-1:sigmoid:binary_cross_entropy", "--format", "md", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Why δ is what autograd computes")
    assert main(["explain", "2-2-1:nope:mse_loss"]) == 2
    assert main(["explain"]) == 2
    assert main(["explain", "2-2-1:sigmoid:quadratic", "--seed-example"]) == 2
    assert capsys.readouterr().err.count("verify: error:") == 3


def test_tutorial_in_docs_is_up_to_date():
    assert DOCS.read_text(encoding="utf-8") == tutorial_markdown(), \
        "run: python -m verify.explain.page --write-docs"


def test_mse_loss_shortcut_states_the_factor_2_and_shows_both_forms():
    ex = explain("2-2-1:tanh,identity:mse_loss", seed=11)
    (short,) = _steps(ex, "shortcut:")
    assert short.formula.startswith("shortcut: δ⁽ᴸ⁾ = 2(a − y)/N") and "factor 2" in short.formula
    values = dict(short.values)
    np.testing.assert_array_equal(values["2(a − y)/N"], 2 * values["(a − y)/N"])
    np.testing.assert_allclose(values["2(a − y)/N"], values["torch"], rtol=1e-12, atol=1e-15)


def test_the_mean_divisor_is_written_n_and_defined_once():
    text = " ".join(render(explain("2-2-1:sigmoid:binary_cross_entropy", seed=11), "text").split())
    assert text.count("N is the divisor of the loss's mean") == 1
    assert "collapses to (a − y)/N" in text
    shortcut_part = text[text.index("Why δ⁽ᴸ⁾ collapses"):]
    assert "/m" not in shortcut_part and "(m·k)" not in shortcut_part
    docs = DOCS.read_text(encoding="utf-8")
    assert docs.count("N is the divisor of the loss's mean") == 1


@pytest.mark.parametrize("spec", ["2-2-1:sigmoid:binary_cross_entropy", "3-8-8-2:tanh:mse_loss",
                                  "4-16-3:relu,identity:cross_entropy"])
def test_the_default_case_is_one_a_student_can_follow(spec):
    import handimpl
    from verify.core.data import draw_case
    from verify.explain.page import SATURATION, followable_seed
    seed = followable_seed(spec)
    case = draw_case(NetSpec.parse(spec), seed, 2)
    assert case.scale == 1 and case.zero_fraction == 0 and np.any(case.x, axis=1).all()
    zs, _ = handimpl.forward(NetSpec.parse(spec), case.params, case.x)
    assert max(np.abs(z).max() for z in zs[1:]) <= SATURATION
    assert f"seed {seed} (chosen as the first seed" in " ".join(render(explain(spec), "text").split())


def test_an_asked_for_seed_is_used_as_given():
    assert "seed 0, batch" in render(explain("2-2-1:sigmoid:binary_cross_entropy", seed=0), "text")


def test_the_tutorial_is_defined_once_and_never_called_the_seed():
    definition = "the backpropagation tutorial whose notation this project follows"
    docs = DOCS.read_text(encoding="utf-8")
    assert docs.count(definition) == 1
    for text in (docs, render(explain("2-2-1:sigmoid:mse_loss"), "text"),
                 render(tutorial_example(), "text")):
        assert not re.search(r"\bthe seed\b|\bseed's\b", text, re.IGNORECASE)
    assert " ".join(render(tutorial_example(), "text").split()).count(definition) == 1


def test_no_source_or_document_a_reader_studies_calls_the_tutorial_the_seed():
    root = DOCS.parents[1]
    read = [*root.glob("handimpl/*.py"), *root.glob("docs/*.md"), root / "README.md", root / "CONTRIBUTING.md",
            root / "benchmarks" / "styles.py"]
    assert len(read) > 10
    assert [p.name for p in read if re.search(r"\bthe seed\b", p.read_text(encoding="utf-8"), re.IGNORECASE)] == []


def test_tutorial_example_and_its_old_name_both_work(capsys):
    assert main(["explain", "--tutorial-example"]) == 0
    new = capsys.readouterr().out
    assert main(["explain", "--seed-example"]) == 0
    assert capsys.readouterr().out == new and "The tutorial's example" in new
