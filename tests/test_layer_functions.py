"""verify layers: a module of layer functions in the CS231n convention, swept against torch.

Two correct reference modules of our own (tests/fixtures/cs231n_vectorised.py and
cs231n_loops.py, in the convention's usual NumPy styles) pass every sweep; one planted bug per
family (tests/fixtures/cs231n_bugs.py) is caught with the default budget; what a user module can
do wrong (crash, hang, None, a wrong shape, a modified dout, a failing import) is a row or one
line, never a traceback."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import budget
import numpy as np
import pytest
import torch

from verify.cli.app import main
from verify.errors import UsageError
from verify.layers.families import binomial_p_value, p_convention, p_names_both
from verify.layers.run import DEFAULT_EXAMPLES, check_layers, find, load_module

FIXTURES = Path(__file__).parent / "fixtures"
VECTORISED = FIXTURES / "cs231n_vectorised.py"
LOOPS = FIXTURES / "cs231n_loops.py"


@pytest.fixture(scope="module")
def good():
    return load_module(str(VECTORISED))


@pytest.fixture(scope="module")
def bugs():
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_bugs
    finally:
        sys.path.remove(str(FIXTURES))
    return cs231n_bugs.BUGS


def module_with(base, name: str = "user_layers", **functions) -> types.ModuleType:
    """A module holding ``base``'s functions with ``functions`` swapped in (None: removed)."""
    module = types.ModuleType(name)
    module.__dict__.update({k: v for k, v in vars(base).items() if not k.startswith("__")})
    for k, v in functions.items():
        if v is None:
            module.__dict__.pop(k, None)
        else:
            module.__dict__[k] = v
    return module


def only_pair(result):
    (pair,) = result.present
    return pair


def failing_problems(pair) -> list[str]:
    return [r.problem for r in (pair.minimal or pair.first).failing]


# -- the references -------------------------------------------------------------------------------

def test_the_vectorised_reference_agrees_on_every_family(good):
    n = budget.examples(DEFAULT_EXAMPLES)
    result = check_layers(good, examples=n)
    assert len(result.present) == 12 and not [p.family for p in result.pairs if not p.present]
    assert [p.label for p in result.present if not p.passed] == []
    assert all(p.cases == n for p in result.present)


def test_the_loop_reference_agrees_on_every_family_it_defines_and_lists_the_others():
    result = check_layers(str(LOOPS), examples=budget.examples(DEFAULT_EXAMPLES))
    assert [p.label for p in result.present if not p.passed] == []
    assert {p.family for p in result.present} == {"affine", "relu", "batchnorm", "dropout", "conv", "max_pool",
                                                  "softmax_loss", "svm_loss"}
    absent = [p for p in result.pairs if not p.present]
    assert {p.family for p in absent} == {"spatial_batchnorm", "layernorm", "spatial_groupnorm"}
    assert all(p.passed is None and p.note.startswith("absent: no ") for p in absent)


# -- one planted bug per family --------------------------------------------------------------------

@pytest.mark.parametrize("bug", ["affine", "relu", "batchnorm", "batchnorm_momentum", "dropout", "conv", "conv_flipped",
                                 "max_pool", "softmax_loss", "svm_loss", "spatial_batchnorm", "layernorm",
                                 "spatial_groupnorm"])
def test_each_planted_bug_is_caught_with_the_default_budget(good, bugs, bug):
    family = bug.removesuffix("_momentum").removesuffix("_flipped")
    module = module_with(good, **bugs[bug])
    result = check_layers(module, only=[family], examples=DEFAULT_EXAMPLES)
    assert not result.passed
    failing = [p for p in result.present if not p.passed]
    assert failing and all(p.minimal is not None and p.minimal.failing for p in failing)


def test_the_affine_bug_is_said_as_a_missing_transpose(good, bugs):
    pair = only_pair(check_layers(module_with(good, **bugs["affine"]), only=["affine"]))
    assert any("a missing transpose?" in p for p in failing_problems(pair))


def test_torchs_momentum_convention_fails_on_the_running_statistics(good, bugs):
    result = check_layers(module_with(good, **bugs["batchnorm_momentum"]), only=["batchnorm"])
    failing = [r for p in result.present for r in p.minimal.failing]
    assert {r.name for r in failing} == {"running_mean", "running_var"}
    assert all("matches torch's momentum convention (momentum weighs the new value)" in r.note for r in failing)


def test_the_smallest_failing_case_is_no_larger_than_the_first(good, bugs):
    pair = only_pair(check_layers(module_with(good, **bugs["relu"]), only=["relu"]))
    assert pair.minimal.case.size() <= pair.first.case.size()
    assert pair.minimal.case.arrays["x"].shape[0] == 1


# -- the finder ----------------------------------------------------------------------------------

def test_the_finder_ignores_unrelated_functions(good):
    found = find(good)
    names = {n for _, names, _, _ in found for n in names}
    assert "unrelated_helper" not in names and "rel_error" not in names
    assert all(fns is not None for _, _, fns, _ in found)


def test_a_missing_backward_is_listed_not_an_error(good):
    module = module_with(good, relu_backward=None)
    result = check_layers(module, only=["relu", "affine"], examples=5)
    relu = [p for p in result.pairs if p.family == "relu"][0]
    assert not relu.present and relu.missing == ("relu_backward",)
    assert result.passed


def test_a_module_that_fails_to_import_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "broken_layers.py"
    bad.write_text("import numpy as np\nraise RuntimeError('no data directory')\n")
    with pytest.raises(UsageError, match="importing .* failed: RuntimeError: no data directory"):
        load_module(str(bad))
    assert main(["layers", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: no data directory" in err and "Traceback" not in err


def test_a_missing_file_and_an_unknown_family_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["layers", str(tmp_path / "nope.py"), "--out", str(tmp_path / "o")]) == 2
    assert main(["layers", str(VECTORISED), "--only", "affine,softmax", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no file" in err[0] and "unknown softmax" in err[1]


# -- robustness ----------------------------------------------------------------------------------

def test_a_crash_is_a_failing_row_naming_the_line(good):
    def affine_forward(x, w, b):
        N, D = x.shape                    # fails for x (N, d1, d2)
        return x @ w + b, (x, w, b)

    pair = only_pair(check_layers(module_with(good, affine_forward=affine_forward), only=["affine"], examples=30))
    assert not pair.passed
    assert any(p.startswith("affine_forward raised ValueError: too many values to unpack")
               and "test_layer_functions.py" in p and "N, D = x.shape" in p for p in failing_problems(pair))


def test_a_hang_is_stopped_at_the_time_limit(good):
    def relu_forward(x):
        while True:
            pass

    pair = only_pair(check_layers(module_with(good, relu_forward=relu_forward), only=["relu"], examples=5,
                                  time_limit=0.2))
    assert not pair.passed and pair.cases == 1
    assert any("did not return within 0.2 s" in p for p in failing_problems(pair))


def test_none_returned_is_a_failing_row(good):
    def relu_backward(dout, cache):
        dx = dout * (cache > 0)           # noqa: F841 - the forgotten return

    pair = only_pair(check_layers(module_with(good, relu_backward=relu_backward), only=["relu"], examples=5))
    assert any("relu_backward returned None where dx is expected" in p for p in failing_problems(pair))


def test_layer_functions_are_checked_on_one_torch_thread_and_the_setting_is_restored(good):
    seen = []

    def relu_forward(x):
        seen.append(torch.get_num_threads())
        return good.relu_forward(x)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert only_pair(check_layers(module_with(good, relu_forward=relu_forward), only=["relu"], examples=3)).passed
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_keepdims_gradient_gets_a_hint(good):
    def layernorm_backward(dout, cache):
        dx, dgamma, dbeta = good.layernorm_backward(dout, cache)
        return dx, dgamma, dbeta[None, :]

    pair = only_pair(check_layers(module_with(good, layernorm_backward=layernorm_backward), only=["layernorm"],
                                  examples=5))
    problems = failing_problems(pair)
    assert any(p.startswith("(1, ") and p.endswith("is expected: keepdims?") for p in problems)


def test_a_backward_that_modifies_its_dout_is_reported(good):
    def relu_backward(dout, x):
        dout[x <= 0] = 0                  # the common in-place shortcut
        return dout

    pair = only_pair(check_layers(module_with(good, relu_backward=relu_backward), only=["relu"], examples=30))
    assert "relu_backward modified its dout argument" in failing_problems(pair)


def test_groupnorm_gradients_compare_by_value_in_either_layout(good):
    def spatial_groupnorm_backward(dout, cache):
        dx, dgamma, dbeta = good.spatial_groupnorm_backward(dout, cache)
        return dx, dgamma.reshape(-1), dbeta.reshape(-1)

    module = module_with(good, spatial_groupnorm_backward=spatial_groupnorm_backward)
    assert check_layers(module, only=["spatial_groupnorm"], examples=20).passed


# -- dropout's convention ------------------------------------------------------------------------

def test_dropouts_p_is_read_from_the_docstring():
    assert p_convention("p: Dropout parameter. We keep each neuron output with probability p.") is True
    assert p_convention("p: Dropout parameter. We drop each neuron output with probability p.") is False
    assert p_convention("Performs dropout.") is None and p_convention(None) is None


def test_a_docstring_naming_both_conventions_is_read_by_its_first_statement_of_p():
    cs231n = ("p: Dropout parameter. We keep each neuron output with probability p.\n"
              "NOTE 2: p is the probability of keeping; some sources use it as the probability of dropping.")
    older = "p: We drop each neuron output with probability p. (Newer versions keep each with probability p.)"
    assert (p_convention(cs231n), p_names_both(cs231n)) == (True, True)
    assert (p_convention(older), p_names_both(older)) == (False, True)


def test_the_drop_convention_fails_under_keep_and_passes_under_drop(good):
    def dropout_forward(x, dropout_param):
        """p: the probability of zeroing out each unit."""
        p, mode = dropout_param["p"], dropout_param["mode"]
        np.random.seed(dropout_param["seed"])
        if mode == "test":
            return x, (dropout_param, None)
        mask = (np.random.rand(*x.shape) >= p) / (1 - p)
        return x * mask, (dropout_param, mask)

    module = module_with(good, dropout_forward=dropout_forward)
    assert not check_layers(module, only=["dropout"], dropout_p="keep", examples=50).passed
    result = check_layers(module, only=["dropout"], dropout_p="drop", examples=50)
    assert result.passed and "drop probability (--dropout-p)" in result.present[0].note


def test_the_binomial_bound_is_two_sided():
    assert binomial_p_value(50, 100, 0.5) > 0.9
    assert binomial_p_value(20, 100, 0.5) < 1e-6 and binomial_p_value(80, 100, 0.5) < 1e-6


# -- the command ---------------------------------------------------------------------------------

def test_the_command_exits_0_on_the_reference_and_writes_its_reports(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["layers", str(VECTORISED), "--only", "relu,svm_loss", "--examples", "20", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 of 2 function pairs agree with torch (40 cases)" in text
    assert {p.name for p in out.iterdir()} == {"functions.csv", "discrepancies.csv", "report.html", "report.json"}
    assert json.loads((out / "report.json").read_text())["passed"] is True


def test_a_disagreeing_pairs_terminal_lines_say_its_note(tmp_path, capsys):
    bug = tmp_path / "relu_ge.py"
    bug.write_text(VECTORISED.read_text() + "\n\ndef relu_backward(dout, cache):\n"
                   "    return dout * (cache >= 0)\n")        # relu'(0) = 1: torch's is 0
    assert main(["layers", str(bug), "--only", "relu", "--out", str(tmp_path / "rep")]) == 1
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if "DISAGREES" in line)
    assert lines[at + 2].strip() == "note: at x = 0 the gradient is 0 (torch's)"


def test_the_command_exits_1_on_a_bug_with_the_smallest_case_and_a_repro(tmp_path, capsys):
    bug = tmp_path / "my_layers.py"
    bug.write_text(VECTORISED.read_text() + "\n\ndef svm_loss(x, y):\n    return 0.0, np.zeros_like(x)\n")
    out = tmp_path / "rep"
    assert main(["layers", str(bug), "--only", "svm_loss", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "DISAGREES" in text and "smallest case: x (1, 2), y (1,)" in text
    functions = (out / "functions.csv").read_text()
    assert f"verify layers {bug} --only svm_loss --seed 0" in functions
    assert "smallest failing case" in functions.splitlines()[0]
    assert "svm_loss" in (out / "report.html").read_text()


def test_the_help_says_loading_runs_top_level_code(capsys):
    assert main(["layers", "--help"]) == 0
    assert "runs its top-level code" in " ".join(capsys.readouterr().out.split())


def test_a_dropout_that_ignores_its_seed_passes_with_a_remark(good):
    def dropout_forward(x, dropout_param):
        """p: keep each unit with probability p."""
        p = dropout_param["p"]
        if dropout_param["mode"] == "test":
            return x, (dropout_param, None)
        mask = (np.random.rand(*x.shape) < p) / p
        return x * mask, (dropout_param, mask)

    result = check_layers(module_with(good, dropout_forward=dropout_forward), only=["dropout"], examples=30)
    assert result.passed and "ignores dropout_param['seed']" in result.present[0].note
    assert "ignores" not in check_layers(good, only=["dropout"], examples=30).present[0].note


def test_isolate_kills_a_call_that_swallows_the_alarm_and_keeps_bn_params_side_effects(good):
    def relu_forward(x):
        while True:
            try:
                while True:
                    pass
            except BaseException:         # noqa: BLE001 - swallows the time limit's CallTimedOut
                pass

    pair = only_pair(check_layers(module_with(good, relu_forward=relu_forward), only=["relu"], examples=3,
                                  time_limit=0.3, isolate=True))
    assert any("its process was killed" in p for p in failing_problems(pair))
    result = check_layers(good, only=["batchnorm", "relu"], examples=15, isolate=True)
    assert result.passed


def test_isolate_reports_a_function_that_ends_the_process(good):
    def svm_loss(x, y):
        import os
        os._exit(3)

    pair = only_pair(check_layers(module_with(good, svm_loss=svm_loss), only=["svm_loss"], examples=3, isolate=True))
    assert any("svm_loss ended its process (exit status 3)" in p for p in failing_problems(pair))


def test_the_result_renders_as_a_compact_table_in_a_notebook(good, bugs):
    import verify
    result = verify.check_layers(module_with(good, **bugs["svm_loss"]), only=["svm_loss", "relu"], examples=10)
    page = result._repr_html_()
    assert "<table>" in page and "disagrees" in page and "agrees" in page and "smallest failing case" in page
    assert "x (1, 2), y (1,)" in page


def test_gradescope_results_give_one_test_per_pair_with_its_counterexample(tmp_path, capsys):
    bug = tmp_path / "submission.py"
    bug.write_text(VECTORISED.read_text() + "\n\ndef svm_loss(x, y):\n    return 0.0, np.zeros_like(x)\n"
                   "\n\ndel layernorm_forward\n")
    out = tmp_path / "results"
    status = main(["layers", str(bug), "--only", "svm_loss,relu,layernorm", "--examples", "10", "--format",
                   "gradescope", "--out", str(out)])
    assert status == 1
    results = json.loads((out / "results.json").read_text())
    tests = {t["name"]: t for t in results["tests"]}
    assert tests["relu_forward/relu_backward"]["score"] == 1.0
    assert tests["svm_loss"]["score"] == 0.0 and "smallest failing case: x (1, 2)" in tests["svm_loss"]["output"]
    assert tests["layernorm_forward/layernorm_backward"]["output"] == "not found: layernorm_forward"
    assert results["score"] == 1.0 and all(t["max_score"] == 1.0 for t in tests.values())


@pytest.mark.parametrize("bug", ["batchnorm", "conv", "max_pool", "spatial_groupnorm", "dropout"])
def test_the_smallest_cases_snippet_runs_and_shows_the_bug(good, bugs, bug):
    from verify.layers.report import inputs_text
    family = bug
    module = module_with(good, **bugs[bug])
    pair = [p for p in check_layers(module, only=[family]).present if not p.passed][0]
    scope = dict(vars(module))
    exec(inputs_text(pair.minimal, pair), scope)       # the user's functions in scope, as the snippet says
    record = [r for r in pair.minimal.failing if not r.problem][0]
    value = scope[record.name] if record.name in scope else scope["bn_param"][record.name]
    assert np.asarray(value)[tuple(record.worst_index)] == record.hand_value
