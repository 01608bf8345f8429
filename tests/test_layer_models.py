"""verify layers --model: whole models in the CS231n convention, swept against a torch twin.

The correct reference models (tests/fixtures/cs231n_models.py: FullyConnectedNet, TwoLayerNet,
ThreeLayerConvNet, in the convention's usual style) agree; one-line planted bugs
(tests/fixtures/cs231n_model_bugs.py) are each caught with the default budget; what a model class
can do wrong (fail to construct, raise, hang, return garbage, miss a grads key) is a failing row,
and a bad --model or --init is one line and exit 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import budget
import numpy as np
import pytest

from verify.cli.app import main
from verify.errors import UsageError
from verify.layers.model import check_model, parse_init
from verify.layers.run import DEFAULT_EXAMPLES

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "cs231n_models.py"
ISSUE_INIT = "hidden_dims=[8,8],normalization=batchnorm,dropout_keep_ratio=0.8,reg=0.1"


@pytest.fixture(scope="module")
def fixtures():
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_model_bugs
        import cs231n_models
    finally:
        sys.path.remove(str(FIXTURES))
    return cs231n_models, cs231n_model_bugs


def the_pair(result):
    (pair,) = result.pairs
    return pair


def problems(pair) -> list[str]:
    return [r.problem for r in (pair.minimal or pair.first).failing]


# -- the references -------------------------------------------------------------------------------

def test_the_reference_fully_connected_net_agrees_with_the_issues_keywords():
    n = budget.examples(DEFAULT_EXAMPLES)
    pair = the_pair(check_model(f"{MODELS}:FullyConnectedNet", ISSUE_INIT, examples=n))
    assert pair.passed and pair.cases == n
    assert "cannot be read" not in pair.note


def test_the_reference_fully_connected_net_agrees_on_drawn_keywords():
    n = budget.examples(60)
    pair = the_pair(check_model(f"{MODELS}:FullyConnectedNet", examples=n, seed_value=1))
    assert pair.passed and pair.cases == n


@pytest.mark.parametrize("name", ["TwoLayerNet", "ThreeLayerConvNet"])
def test_the_reference_two_layer_and_conv_nets_agree(name):
    n = budget.examples(40)
    pair = the_pair(check_model(f"{MODELS}:{name}", examples=n))
    assert pair.passed and pair.cases == n


def test_a_model_whose_batch_norm_uses_the_textbook_variance_passes_as_imprecise_and_a_real_bug_still_fails(fixtures):
    _, bugs = fixtures
    textbook = bugs.buggy("bn_textbook_variance")
    pair = the_pair(check_model(textbook, ISSUE_INIT, examples=40))
    assert pair.passed and pair.imprecise >= 1 and "mean(x²) − μ²" in pair.precision
    assert not the_pair(check_model(bugs.buggy("bn_textbook_variance_float32"), ISSUE_INIT, examples=40)).passed


# -- planted bugs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bug", ["reg_without_half", "reg_forgotten_in_dW", "bn_params_wiring",
                                 "dropout_mask_not_reused", "gamma_beta_grads_swapped", "dropout_on_at_test_time",
                                 "conv_reg_forgotten", "two_layer_reg_without_half"])
def test_each_planted_model_bug_is_caught_with_the_default_budget(fixtures, bug):
    _, bugs = fixtures
    pair = the_pair(check_model(bugs.buggy(bug), examples=DEFAULT_EXAMPLES))
    assert pair.passed is False and pair.minimal is not None and pair.minimal.failing


def test_the_l2_term_without_its_half_is_named(fixtures):
    _, bugs = fixtures
    pair = the_pair(check_model(bugs.buggy("reg_without_half"), "reg=0.5"))
    (record,) = pair.minimal.failing
    assert record.name == "loss" and record.note == "matches the L2 term without its ½ (reg·ΣW²)"


def test_a_forgotten_reg_in_dw_is_named(fixtures):
    _, bugs = fixtures
    pair = the_pair(check_model(bugs.buggy("reg_forgotten_in_dW"), "reg=0.5"))
    notes = {r.name: r.note for r in pair.minimal.failing}
    assert notes["grads['W1']"] == "matches the data gradient alone (reg·W missing)"


def test_the_smallest_cases_snippet_runs_and_shows_the_bug(fixtures):
    from verify.layers.report import inputs_text
    _, bugs = fixtures
    cls = bugs.buggy("reg_forgotten_in_dW")
    pair = the_pair(check_model(cls, "reg=0.5"))
    scope = {cls.__name__: cls}
    exec(inputs_text(pair.minimal, pair), scope)
    record = [r for r in pair.minimal.failing if r.name == "grads['W1']"][0]
    assert scope["grads"]["W1"][tuple(record.worst_index)] == record.hand_value


# -- what a model class can do wrong ---------------------------------------------------------------

def test_a_class_that_fails_to_construct_is_a_failing_row_naming_the_line(fixtures):
    models, _ = fixtures

    class Broken(models.TwoLayerNet):
        def __init__(self, **kwargs):
            raise RuntimeError("no weights file")

    pair = the_pair(check_model(Broken, examples=5))
    assert pair.passed is False
    assert any(p.startswith("Broken(...) raised RuntimeError: no weights file") and 'raise RuntimeError("no w' in p
               for p in problems(pair))


def test_a_loss_that_raises_hangs_or_returns_garbage_is_a_failing_row(fixtures):
    models, _ = fixtures

    class Raises(models.TwoLayerNet):
        def loss(self, X, y=None):
            return {}["W1"]

    class Hangs(models.TwoLayerNet):
        def loss(self, X, y=None):
            while True:
                pass

    class Garbage(models.TwoLayerNet):
        def loss(self, X, y=None):
            return "loss"

    class ListGrads(models.TwoLayerNet):
        def loss(self, X, y=None):
            loss, grads = super().loss(X, y)
            return loss, list(grads.values())

    assert any(p.startswith("Raises.loss raised KeyError: 'W1'") for p in problems(the_pair(check_model(Raises,
                                                                                                        examples=3))))
    hung = the_pair(check_model(Hangs, examples=3, time_limit=0.2))
    assert hung.cases == 1 and any("did not return within 0.2 s" in p for p in problems(hung))
    assert "Garbage.loss returned a str where (loss, grads) is expected" in problems(the_pair(check_model(Garbage,
                                                                                                          examples=3)))
    assert any("a dict of gradients is expected" in p for p in problems(the_pair(check_model(ListGrads, examples=3))))


def test_a_missing_grads_key_and_a_transposed_gradient_are_failing_records(fixtures):
    models, _ = fixtures

    class Missing(models.TwoLayerNet):
        def loss(self, X, y=None):
            out = super().loss(X, y)
            if y is not None:
                out[1].pop("b2")
            return out

    class Transposed(models.TwoLayerNet):
        def loss(self, X, y=None):
            out = super().loss(X, y)
            if y is not None:
                out[1]["W2"] = out[1]["W2"].T
            return out

    assert any("grads has no 'b2'" in p for p in problems(the_pair(check_model(Missing, examples=10))))
    assert any("is expected: a missing transpose?" in p
               for p in problems(the_pair(check_model(Transposed, "input_dim=3,hidden_dim=4,num_classes=2"))))


def test_params_that_the_keywords_do_not_imply_fail(fixtures):
    models, _ = fixtures

    class NoBias(models.TwoLayerNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            del self.params["b2"]

    assert any("model.params has no 'b2'" in p for p in problems(the_pair(check_model(NoBias, examples=3))))


class InlineDropout:
    """A one-hidden-layer net whose dropout is written inline in loss (no dropout_forward call)."""

    def __init__(self, hidden_dims, input_dim=5, num_classes=3, dropout_keep_ratio=1, reg=0.0, weight_scale=1e-2):
        (H,) = hidden_dims
        self.reg, self.p = reg, dropout_keep_ratio
        self.params = {"W1": weight_scale * np.random.randn(input_dim, H), "b1": np.zeros(H),
                       "W2": weight_scale * np.random.randn(H, num_classes), "b2": np.zeros(num_classes)}

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        a = X @ W1 + b1
        h = np.maximum(a, 0)
        mask = (np.random.rand(*h.shape) < self.p) / self.p if y is not None else np.ones_like(h)
        hd = h * mask
        scores = hd @ W2 + b2
        if y is None:
            return scores
        z = scores - scores.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        N = X.shape[0]
        loss = -logp[np.arange(N), y].mean() + 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dscores = np.exp(logp)
        dscores[np.arange(N), y] -= 1
        dscores /= N
        da = (dscores @ W2.T) * mask * (a > 0)
        grads = {"W2": hd.T @ dscores + self.reg * W2, "b2": dscores.sum(axis=0),
                 "W1": X.T @ da + self.reg * W1, "b1": da.sum(axis=0)}
        return loss, grads


def test_a_model_whose_dropout_cannot_be_read_says_so_and_is_checked_in_test_mode():
    pair = the_pair(check_model(InlineDropout, "hidden_dims=[4],dropout_keep_ratio=0.5", examples=10))
    assert pair.passed and "its dropout masks cannot be read" in pair.note
    pair = the_pair(check_model(InlineDropout, "hidden_dims=[4],dropout_keep_ratio=1", examples=10))
    assert pair.passed and "cannot be read" not in pair.note


# -- the command ----------------------------------------------------------------------------------

def test_the_command_exits_0_on_the_reference_and_writes_its_reports(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["layers", "--model", f"{MODELS}:TwoLayerNet", "--init", "reg=0.1", "--examples", "10",
                 "--out", str(out)]) == 0
    assert "TwoLayerNet agrees with torch (10 cases)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"functions.csv", "discrepancies.csv", "report.html", "report.json"}
    assert json.loads((out / "report.json").read_text())["passed"] is True
    assert "The model" in (out / "report.html").read_text()


def test_the_command_exits_1_on_a_bug_with_a_repro_line(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    bug = tmp_path / "fc_net.py"
    bug.write_text("from cs231n_model_bugs import buggy\nFullyConnectedNet = buggy('reg_without_half')\n")
    out = tmp_path / "rep"
    assert main(["layers", "--model", f"{bug}:FullyConnectedNet", "--init", "hidden_dims=[3],reg=0.5",
                 "--out", str(out)]) == 1
    assert "DISAGREES" in capsys.readouterr().out
    functions = (out / "functions.csv").read_text()
    assert f"verify layers --model {bug}:FullyConnectedNet --init 'hidden_dims=[3],reg=0.5' --seed 0" in functions


@pytest.mark.parametrize("argv, message", [
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "hidden_dims=[8,8"], "unbalanced brackets"),
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "hidden_dims"], "is not KEY=VALUE"),
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "colour=blue"], "FullyConnectedNet takes no colour"),
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "reg=1 +"], "neither a Python literal nor a word"),
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "normalization=batch"], "expected None, 'batchnorm'"),
    (["--model", f"{MODELS}:FullyConnectedNet", "--init", "hidden_dims=[4,0]"], "hidden_dims=0: expected a positive"),
    (["--model", f"{MODELS}:ThreeLayerConvNet", "--init", "filter_size=4"], "needs an odd filter size"),
    (["--model", f"{MODELS}:Nope"], "has no Nope"),
    (["--model", str(MODELS)], "expected FILE:ClassName"),
    (["--model", f"{MODELS}:np"], "np is a module, not a class"),
    (["--init", "reg=1"], "--init applies to --model"),
    ([], "give FILE_OR_MODULE (layer functions) or --model"),
])
def test_a_bad_model_or_init_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["layers", *argv, "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_the_result_renders_as_a_table_in_a_notebook(fixtures):
    import verify
    _, bugs = fixtures
    page = verify.check_model(bugs.buggy("reg_without_half"), "reg=0.5")._repr_html_()
    assert "<table>" in page and "disagrees" in page and "matches the L2 term without its ½" in page


def test_init_values_are_literals_or_words():
    assert parse_init("hidden_dims=[8, 8],normalization=batchnorm,reg=0.1,seed=None") == \
        {"hidden_dims": [8, 8], "normalization": "batchnorm", "reg": 0.1, "seed": None}
    assert parse_init("dtype=np.float64") == {} and parse_init("") == {}
    with pytest.raises(UsageError, match="only float64"):
        parse_init("dtype=float32")


class Stubborn:
    """A model whose loss swallows the time limit's exception (module-level: --isolate pickles the
    model it sends back)."""

    def __init__(self, input_dim=3, hidden_dim=2, num_classes=2, weight_scale=1e-3, reg=0.0):
        self.params = {"W1": np.zeros((input_dim, hidden_dim)), "b1": np.zeros(hidden_dim),
                       "W2": np.zeros((hidden_dim, num_classes)), "b2": np.zeros(num_classes)}

    def loss(self, X, y=None):
        while True:
            try:
                while True:
                    pass
            except BaseException:         # noqa: BLE001 - swallows the time limit's CallTimedOut
                pass


def test_isolate_kills_a_loss_that_swallows_the_alarm():
    pair = the_pair(check_model(Stubborn, examples=2, time_limit=0.3, isolate=True))
    assert problems(pair) == ["Stubborn.loss did not return within 0.3 s (the time limit): its process was killed"]


def test_isolate_still_reads_the_dropout_masks_and_the_running_statistics():
    pair = the_pair(check_model(f"{MODELS}:FullyConnectedNet", ISSUE_INIT, examples=10, isolate=True))
    assert pair.passed and pair.cases == 10 and "cannot be read" not in pair.note


def test_a_loss_that_exits_names_the_users_line(fixtures):
    models, _ = fixtures

    class Exits(models.TwoLayerNet):
        def loss(self, X, y=None):
            sys.exit(3)

    (problem,) = problems(the_pair(check_model(Exits, examples=2)))
    assert problem.startswith("Exits.loss raised SystemExit: 3 at test_layer_models.py:") and "sys.exit(3)" in problem
