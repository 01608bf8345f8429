"""The mutation zoo: every planted bug is a one-line variant of handimpl, and the harness kills each."""
from __future__ import annotations

import difflib
import importlib
import inspect
import re
import shlex

import pytest

import handimpl
from verify import check
from verify.cli.app import main
from verify.core.data import draw_stack_case
from verify.core.stack import StackSpec
from verify.mutants import run as mutants_module
from verify.mutants.run import build, kill_stats, mutated_source, run_mutant, run_zoo
from verify.mutants.zoo import BY_NAME, ZOO, Mutant


def test_the_zoo_holds_at_least_thirty_distinct_named_bugs():
    assert len(ZOO) >= 30 and len(BY_NAME) == len(ZOO)
    assert len({(m.module, m.old, m.new) for m in ZOO}) == len(ZOO)


@pytest.mark.parametrize("mutant", ZOO, ids=lambda m: m.name)
def test_each_mutant_changes_exactly_one_place_in_handimpl(mutant):
    source = inspect.getsource(importlib.import_module(f"handimpl.{mutant.module}"))
    assert source.count(mutant.old) == 1
    matcher = difflib.SequenceMatcher(None, source.splitlines(), mutated_source(mutant).splitlines())
    hunks = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    assert len(hunks) == 1


def test_building_mutants_leaves_handimpl_itself_untouched():
    for mutant in ZOO:
        build(mutant.name)
    assert handimpl.ACTIVATIONS["relu"].df.__code__.co_filename.endswith("activations.py")
    assert check("2-3-3:relu,softmax:mse_loss", seed=3).passed
    assert check("2-3-2:sigmoid:quadratic:dtype=float32", seed=4).passed


def test_every_mutant_is_killed_within_the_default_budget():
    results = run_zoo(shrink=False)
    survivors = [r.mutant.name for r in results if not r.killed]
    assert survivors == []
    assert all(r.examples_to_kill <= mutants_module.DEFAULT_EXAMPLES for r in results)
    assert kill_stats(results)["kill_rate"] == 1.0


def test_the_tied_element_mutant_dies_at_dx_on_a_max_pools_exact_ties_where_handimpl_passes():
    spec, batch = "1x4x4>maxpool:2>flatten>linear:2|mse_loss", 3
    seed = next(s for s in range(50) if draw_stack_case(StackSpec.parse(spec), s, batch).zero_fraction > 0)
    assert check(spec, seed=seed, batch=batch).passed
    result = check(spec, seed=seed, batch=batch, impl=build("maxpool_gradient_to_every_tied_element"))
    assert not result.passed and result.first_divergence.name == "dx"


def test_a_killed_mutant_reports_its_minimal_counterexample_and_first_diverging_tensor():
    result = run_mutant("weight_grad_transposed", examples=10)
    assert result.killed and result.minimal is not None
    assert result.counterexample.startswith(f"verify check '{result.minimal.spec}' "
                                            "--impl 'verify.mutants.impl:weight_grad_transposed'")
    assert "missing transpose" in result.first_diverging or result.first_diverging.startswith("dW")


def test_a_mutant_that_changes_nothing_survives_and_verify_mutants_exits_1(tmp_path, monkeypatch, capsys):
    equivalent = Mutant("equivalent", "a comment reworded", "-", "-", "network",
                        "# ∂J/∂x = δ⁽¹⁾W⁽¹⁾", "# ∂J/∂x = δ¹W¹", activations=("identity",),
                        losses=("mse_loss",), max_depth=1)
    monkeypatch.setattr(mutants_module, "ZOO", (BY_NAME["update_wrong_sign"], equivalent))
    monkeypatch.setitem(BY_NAME, "equivalent", equivalent)
    assert main(["mutants", "--examples", "5", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "equivalent" in out and "SURVIVED" in out


def test_verify_mutants_writes_the_table_as_csv_and_html_and_exits_0_when_all_die(tmp_path, monkeypatch):
    monkeypatch.setattr(mutants_module, "ZOO", (BY_NAME["relu_prime_at_zero_is_one"],
                                                BY_NAME["float32_upcast"]))
    assert main(["mutants", "--examples", "10", "--out", str(tmp_path)]) == 0
    csv = (tmp_path / "mutants.csv").read_text()
    assert "relu_prime_at_zero_is_one" in csv and "relu′(z) = [z > 0] → relu′(z) = [z ≥ 0]" in csv
    html = (tmp_path / "mutants.html").read_text()
    assert "2 of 2 mutants killed" in html


def test_a_mutants_counterexample_command_fails_against_that_mutant(capsys):
    result = run_mutant("weight_grad_transposed", examples=10)
    argv = shlex.split(result.counterexample)
    assert argv[0] == "verify" and main(argv[1:]) == 1
    assert "first to diverge: dW" in capsys.readouterr().out


def _two_mutants(monkeypatch):
    monkeypatch.setattr(mutants_module, "ZOO", (BY_NAME["relu_prime_at_zero_is_one"],
                                                BY_NAME["bias_grad_averaged"]))


def test_the_mutants_terminal_table_fits_100_columns(tmp_path, monkeypatch, capsys):
    _two_mutants(monkeypatch)
    assert main(["mutants", "--examples", "10", "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("report: ")]
    assert "killed after 1 example " in "\n".join(lines) + " "
    assert max(map(len, lines)) <= 100


def test_mutants_html_has_the_reports_stylesheet_a_coloured_verdict_and_no_raw_dicts(tmp_path, monkeypatch):
    from verify.report.html import STYLE
    _two_mutants(monkeypatch)
    assert main(["mutants", "--examples", "10", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "mutants.html").read_text()
    assert STYLE in page and '<div class="banner pass">2 of 2 mutants killed' in page
    assert '<span class="formula">relu′(z) = [z &gt; 0]</span>' in page
    assert "<pre class=\"cmd\">verify check &#39;" in page
    assert not re.search(r"\{['\"]\w+['\"]:", page)
