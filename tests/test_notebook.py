"""In a notebook: a CaseResult, a SweepResult and an explanation render as compact HTML
(_repr_html_), styled by rules scoped to themselves."""
from __future__ import annotations

import re

import pandas as pd

import handimpl
import verify
from verify.api import sweep_implementation
from verify.explain.page import explain
from verify.mutants.impl import hidden_fprime_dropped
from verify.report.notebook import SCOPE, scoped_style


def test_a_passing_cases_summary_says_every_tensor_agrees_and_counts_them():
    result = verify.check("3-2-1:tanh:mse_loss", seed=0, batch=2)
    page = result._repr_html_()
    assert "every tensor agrees with torch" in page and 'class="banner pass"' in page
    assert f"<b>{len(result.records)}</b><span>tensors compared</span>" in page
    assert 'class="cx' not in page                      # no counterexample card


def test_a_failing_cases_summary_names_the_first_diverging_tensor_and_shows_its_card():
    result = verify.check("3-2-1:tanh:mse_loss", seed=0, batch=2, impl=hidden_fprime_dropped)
    page = result._repr_html_()
    assert "delta1 is the first tensor to diverge" in page and 'class="banner fail"' in page
    assert '<b>1</b><span>diverge</span>' in page
    assert 'class="cx' in page and "worst element delta1" in page
    assert "verify check &#39;3-2-1:tanh:mse_loss&#39; --impl" in page    # the repro line, escaped


def test_a_sweeps_summary_gives_the_verdict_and_one_card_per_distinct_failure():
    result = sweep_implementation(hidden_fprime_dropped, examples=10, seed=0)
    page = result._repr_html_()
    assert f"verify: {result.n_failed} of 10 cases disagree" in page
    assert page.count('<div class="cx') == len(result.minimal) >= 1
    passing = sweep_implementation(handimpl.backprop, examples=5, seed=0)
    assert "all 5 cases agree" in passing._repr_html_() and 'class="cx' not in passing._repr_html_()


def test_check_implementations_frame_shows_the_sweeps_summary_above_its_table():
    frame = verify.check_implementation(hidden_fprime_dropped, examples=6, seed=0)
    page = frame._repr_html_()
    assert page.index('class="banner fail"') < page.index("<table")   # the summary, then the rows
    assert f"{frame.attrs['n_failed']} of 6 cases disagree" in page and '<div class="cx' in page


def test_a_frame_derived_from_check_implementations_is_a_plain_table():
    frame = verify.check_implementation(handimpl.backprop, examples=3, seed=0)
    assert "all 3 cases agree" in frame._repr_html_()
    derived = frame[frame["status"] == "agrees"]
    assert type(derived) is pd.DataFrame and "banner" not in (derived._repr_html_() or "")


def test_the_summarys_stylesheet_styles_nothing_outside_the_summary():
    rules = re.findall(r"([^{}]+)\{", scoped_style())
    assert rules and all(s.strip().startswith(f".{SCOPE} ") for rule in rules for s in rule.split(","))


def test_an_explanation_renders_inline_as_one_element_whose_styles_stay_inside_it():
    page = explain("2-2-1:sigmoid:quadratic")._repr_html_()
    assert page.startswith('<div class="verify-explain">') and page.rstrip().endswith("</div>")
    assert "<html" not in page and "<body" not in page and "Why δ is what autograd computes" in page
    style = page[page.index("<style>") + 7:page.index("</style>")]
    assert all(s.strip().startswith(".verify-explain") for rule in re.findall(r"([^{}]+)\{", style)
               for s in rule.split(","))


def test_a_sweeps_result_renders_as_html_when_only_verify_api_was_imported():
    import subprocess
    import sys
    code = ("from verify.api import sweep_implementation\n"
            "import handimpl\n"
            "page = sweep_implementation(handimpl.backprop, examples=2, seed=0)._repr_html_()\n"
            "print(page is not None and 'all 2 cases agree' in page)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr[-2000:]
