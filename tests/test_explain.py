"""`verify explain`: the explanation is right (numbers agree, real node names) and renders safely."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest

from verify.cli import main
from verify.explain import DOCS, explain, render, tutorial_markdown
from verify.explain_graph import run_torch
from verify.explain_render import render_html
from verify.explain_seed import seed_example, seed_formulas
from verify.explain_steps import Explanation, Section, Step, fmt_array
from verify.spec import NetSpec
from verify.data import draw_case


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


def test_seed_example_matches_the_seeds_formulas_numerically():
    s = seed_formulas()
    assert s["yhat"].item() == pytest.approx(0.75136507, abs=1e-8)     # the classic example's numbers
    assert s["d2"].item() == pytest.approx((s["yhat"] - 0.01).item() * s["yhat"].item() * (1 - s["yhat"].item()))
    assert s["W2_new"] == pytest.approx(np.array([[0.35891648, 0.40866619]]), abs=1e-8)
    ex = seed_example()
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
        "run: python -m verify.explain --write-docs"
