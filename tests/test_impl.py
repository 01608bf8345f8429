"""Bring your own backprop: loading a TARGET, calling user code safely, sweeping it."""
from __future__ import annotations

import multiprocessing
import signal
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import handimpl
import verify
from verify.byo.call import ImplementationWarning, _same, load_target
from verify.cli.app import UsageError, main
from verify.harness.trace import check
from verify.sweep import execute

FIXTURES = Path(__file__).parent / "fixtures"
USER = FIXTURES / "user_impls.py"


def user(name: str):
    return load_target(f"{USER}:{name}")


def failing(result) -> dict:
    return {r.name: r for r in result.records if not r.passed}


SPEC = "3-4-2:sigmoid:mse_loss"


def test_a_correct_implementation_agrees_on_every_record():
    result = check(SPEC, seed=1, impl=user("correct"))
    assert result.passed and len(result.records) == 16


def test_a_student_implementation_written_from_scratch_passes_a_sweep_within_what_it_supports():
    frame = verify.check_implementation(f"{FIXTURES / 'student_mlp.py'}:backprop", examples=25)
    assert frame.attrs["passed"] and frame["passed"].all()
    assert set(frame["spec"].str.split(":").str[2]) <= {"mse_loss", "quadratic"}


def test_code_without_label_smoothing_fails_a_sweep_that_draws_it():
    frame = verify.check_implementation(f"{USER}:no_label_smoothing", examples=30, losses=["cross_entropy"])
    assert not frame.attrs["passed"] and frame["spec"].str.contains("label_smoothing").any()


def test_a_loss_declared_with_a_pinned_option_is_drawn_with_that_option_only():
    frame = verify.check_implementation(f"{USER}:no_label_smoothing_declared", examples=30)
    assert frame.attrs["passed"] and not frame["spec"].str.contains("label_smoothing").any()
    assert set(frame["spec"].str.split(":").str[2].str.split("|").str[-1]) == {"cross_entropy"}


def test_verify_check_impl_pins_a_loss_option_given_in_losses(tmp_path):
    args = ["check", "--impl", f"{USER}:no_label_smoothing", "--examples", "30", "--out", str(tmp_path),
            "--losses", "cross_entropy:label_smoothing=0,target=index,mse_loss"]
    assert main(args) == 0
    specs = " ".join(pd.read_csv(tmp_path / "cases.csv")["spec"])
    assert "label_smoothing" not in specs and "target=prob" not in specs and "mse_loss" in specs


def test_a_loss_option_that_cannot_be_pinned_is_one_usage_line(capsys, tmp_path):
    assert main(["check", "--impl", f"{USER}:correct", "--losses", "cross_entropy:beta=1",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'beta' cannot be pinned" in err and "label_smoothing" in err


def test_a_function_that_raises_becomes_a_failing_case_with_its_line():
    result = check(SPEC, seed=1, impl=user("raises"))
    assert not result.passed
    assert result.error.startswith("ValueError")
    assert "user_impls.py:16 in raises: return out[\"dW1\"] @ np.ones" in result.error


def test_a_file_target_imports_the_files_beside_it_as_a_script_would(tmp_path):
    (tmp_path / "helpers_beside.py").write_text("from handimpl import backprop as own\n")
    (tmp_path / "mine_beside.py").write_text("from helpers_beside import own\n\n"
                                             "def backprop(*args, **kwargs):\n    return own(*args, **kwargs)\n")
    assert check(SPEC, seed=1, impl=load_target(f"{tmp_path / 'mine_beside.py'}:backprop")).passed


def test_a_file_inside_a_package_is_imported_as_its_module_so_relative_imports_work(tmp_path):
    package = tmp_path / "course_pkg" / "classifiers"
    package.mkdir(parents=True)
    (tmp_path / "course_pkg" / "__init__.py").write_text("")
    (tmp_path / "course_pkg" / "layers.py").write_text("from handimpl import backprop as own\n")
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text("from ..layers import own\n\n"
                                    "def backprop(*args, **kwargs):\n    return own(*args, **kwargs)\n")
    fn = load_target(f"{package / 'net.py'}:backprop")
    assert fn.__module__ == "course_pkg.classifiers.net" and check(SPEC, seed=1, impl=fn).passed


def test_a_float32_loss_in_a_float64_case_is_named_as_a_dtype_problem_and_a_float64_one_in_float32_is_fine():
    def loss_as(dtype):
        def backprop(*args, **kwargs):
            out = handimpl.backprop(*args, **kwargs)
            return {**out, "loss": np.dtype(dtype).type(out["loss"])}
        return backprop
    low = check("3-4-2:tanh,identity:mse_loss", seed=1, batch=3, impl=loss_as("float32"))
    first = low.first_divergence
    assert first.name == "loss" and first.problem == "dtype float32 where torch has float64"
    assert check("3-4-2:tanh,identity:mse_loss:dtype=float32", seed=1, batch=3, impl=loss_as("float64")).passed


def test_code_compiled_from_a_string_is_located_by_its_file_name_without_brackets():
    namespace: dict = {}
    exec(compile("def backprop(*args, **kwargs):\n    raise ValueError('no')\n",  # noqa: S102
                 "<mutant x handimpl/network.py>", "exec"), namespace)
    result = check(SPEC, seed=1, impl=namespace["backprop"])
    assert "at network.py:2 in backprop" in result.error


def test_a_raising_implementation_is_a_failing_row_of_the_sweep_not_a_crash():
    frame = verify.check_implementation(user("raises"), examples=5)
    assert not frame.attrs["passed"] and len(frame) == 5
    assert frame["note"].str.contains("in raises").all()


def test_a_transposed_gradient_is_reported_as_a_missing_transpose():
    bad = failing(check(SPEC, seed=1, impl=user("transposed")))
    assert bad["dW1"].problem == "shape (3, 4) where torch has (4, 3): a missing transpose?"


def test_a_float64_result_for_a_float32_spec_fails_on_its_dtype():
    bad = failing(check(SPEC + ":dtype=float32", seed=1, impl=user("upcast")))
    assert "dtype float64 where torch has float32" in bad["dW1"].problem


def test_nan_in_a_result_fails_that_tensor():
    bad = failing(check(SPEC, seed=1, impl=user("nan_delta")))
    assert "dW1" in bad and bad["dW1"].n_mismatched == 12


def test_a_non_array_value_is_a_failing_row_naming_its_type():
    bad = failing(check(SPEC, seed=1, impl=user("lists")))
    assert bad["dW1"].problem.startswith("list where torch has a float64 array of shape (4, 3)")


def test_a_return_value_that_is_not_a_mapping_is_a_failing_row():
    result = check(SPEC, seed=1, impl=user("not_a_mapping"))
    assert not result.passed
    assert "returned list where a mapping" in result.first_divergence.problem


def test_a_missing_required_key_is_a_failing_row_naming_the_key():
    bad = failing(check(SPEC, seed=1, impl=user("missing_bias_grad")))
    assert bad["db1"].problem == "missing: missing_bias_grad did not return required key 'db1'"


def test_optional_keys_may_be_left_out():
    result = check(SPEC, seed=1, impl=user("only_required"))
    assert result.passed
    assert {r.name for r in result.records} == {"loss", "dW1", "db1", "dW2", "db2",
                                                "W1_after", "b1_after", "W2_after", "b2_after"}


def test_an_implementation_that_modifies_its_inputs_is_caught_and_the_input_named():
    result = check(SPEC, seed=1, impl=user("mutates_inputs"))
    bad = failing(result)
    assert list(bad) == ["W1"] and "modified its input W1 in place" in bad["W1"].problem
    assert not result.passed


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_input_counts_as_modified_when_any_bit_changed_even_where_the_values_compare_equal(dtype):
    x = np.array([[0.0, 1.0], [np.nan, 2.0]], dtype=dtype)
    assert _same(x, x.copy()) and _same(x, np.asfortranarray(x))      # the same bits, either layout
    for index, value in (((0, 0), -0.0), ((1, 0), -np.nan), ((1, 1), np.nextafter(x[1, 1], x.dtype.type(3)))):
        changed = x.copy()
        changed[index] = value
        assert not _same(x, changed) and not _same(x, np.asfortranarray(changed)), (index, value)


def test_unknown_extra_keys_are_ignored_with_one_warning_per_sweep():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = verify.check_implementation(user("extra_keys"), examples=6)
    assert frame.attrs["passed"]
    mine = [w for w in caught if issubclass(w.category, ImplementationWarning)]
    assert len(mine) == 1 and "grad_norm, my_cache" in str(mine[0].message)


def test_the_step_attribute_replaces_handimpl_sgd_step():
    assert check(SPEC, seed=1, impl=user("with_right_step")).passed
    bad = failing(check(SPEC, seed=1, impl=user("with_wrong_step")))
    assert set(bad) == {"W1_after", "b1_after", "W2_after", "b2_after"}


def test_assert_matches_torch_names_the_first_diverging_tensor_and_its_equation_for_a_student():
    with pytest.raises(AssertionError) as info:
        verify.assert_matches_torch(user("wrong_hidden_delta"), examples=15, activations=["sigmoid"],
                                    losses=["mse_loss"], max_depth=3)
    message = str(info.value)
    assert "minimal counterexample: 1-1-1:sigmoid:mse_loss" in message
    assert ("delta1 is the first to diverge while z1, a1 and delta2 agree: look at the backward "
            "step of layer 1: δ¹ = (δ²W²) ⊙ f′(z¹)") in message


def test_assert_matches_torch_is_silent_for_a_correct_implementation():
    verify.assert_matches_torch(handimpl.backprop, examples=8)


@pytest.mark.parametrize("target", ["handimpl:backprop", "handimpl.network:backprop",
                                    f"{USER}:correct"])
def test_a_target_loads_from_a_module_name_or_a_file_path(target):
    assert check(SPEC, seed=2, impl=load_target(target)).passed


@pytest.mark.parametrize("target, words", [
    ("no_such_package.mod:fn", "importing no_such_package.mod failed"),
    ("handimpl:no_such_function", "has no attribute"),
    (f"{USER}:NOT_CALLABLE", "not callable"),
    ("tests/fixtures/missing.py:fn", "no file"),
    ("handimpl", "expected package.module:function"),
])
def test_a_bad_target_is_a_one_line_usage_error(target, words):
    with pytest.raises(UsageError, match=words) as info:
        load_target(target)
    assert "\n" not in str(info.value)


def test_a_sweep_outside_what_the_implementation_supports_is_a_usage_error():
    with pytest.raises(UsageError, match="supports activations"):
        verify.check_implementation(f"{FIXTURES / 'student_mlp.py'}:backprop", examples=2,
                                    activations=["softmax"])


def test_verify_check_impl_exits_0_when_all_agree_1_on_a_discrepancy_2_on_bad_input(tmp_path, capsys):
    common = ["--examples", "6", "--max-depth", "2", "--losses", "mse_loss"]
    assert main(["check", "--impl", "handimpl:backprop", "--out", str(tmp_path / "ok"), *common]) == 0
    assert (tmp_path / "ok" / "report.html").exists()
    assert main(["check", "--impl", f"{USER}:transposed", "--out", str(tmp_path / "bad"), *common]) == 1
    assert "missing transpose" in capsys.readouterr().out
    assert (tmp_path / "bad" / "discrepancies.csv").exists()
    assert main(["check", "--impl", "handimpl:nothing_here"]) == 2
    assert main(["check", "--impl", "handimpl:backprop", "--activations", "bogus"]) == 2


def test_verify_check_with_a_spec_and_impl_checks_that_one_case(capsys):
    assert main(["check", SPEC, "--impl", f"{USER}:transposed", "--seed", "1"]) == 1
    assert "dW1: shape (3, 4) where torch has (4, 3)" in capsys.readouterr().out


def test_handimpl_still_agrees_through_the_safe_caller():
    result = check("2-3-3-2:tanh,relu,identity:cross_entropy", seed=5, batch=3)
    assert result.passed and not result.error
    assert np.isfinite([r.max_abs_err for r in result.records]).all()


def test_a_call_past_the_time_limit_fails_the_case_naming_the_line_it_was_stopped_at():
    result = check(SPEC, seed=1, batch=3, impl=user("hangs_on_big_batches"), time_limit=0.2)
    assert not result.passed and result.timed_out
    assert result.error.startswith("CallTimedOut: did not return within 0.2 s")
    assert "in hangs_on_big_batches" in result.error


def test_the_time_limit_leaves_the_previous_alarm_handler_in_place():
    before = signal.getsignal(signal.SIGALRM)
    check(SPEC, seed=1, batch=3, impl=user("hangs_on_big_batches"), time_limit=0.1)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("jobs, method", [(1, None)] + [(2, m) for m in multiprocessing.get_all_start_methods()])
def test_a_sweep_stops_at_the_first_case_past_the_time_limit_and_is_marked_partial(jobs, method, monkeypatch):
    if method:
        monkeypatch.setattr(execute, "START_METHODS", (method,))
    result = verify.api.sweep_implementation(user("hangs_on_big_batches"), examples=200,
                                                    jobs=jobs, time_limit=0.2)
    assert result.partial and not result.passed
    assert result.results[-1].timed_out and len(result.results) < 200
    assert result.stopped == f"case {len(result.results) - 1} ran past the time limit"


@pytest.mark.parametrize("args", [["check", SPEC, "--time-limit", "1"],
                                  ["check", "--impl", "handimpl:backprop", "--time-limit", "soon"]])
def test_a_time_limit_without_impl_or_not_a_number_is_bad_input(args):
    assert main(args) == 2


def test_ctrl_c_makes_verify_check_impl_write_the_partial_report_and_exit_130(tmp_path):
    code = main(["check", "--impl", f"{USER}:interrupted_on_the_fourth_call", "--examples", "10",
                 "--out", str(tmp_path)])
    assert code == 130
    assert "PARTIAL (interrupted)" in (tmp_path / "report.html").read_text()


def test_verify_check_with_a_spec_and_an_impl_that_raises_names_the_line_and_exits_1(capsys):
    assert main(["check", SPEC, "--impl", f"{USER}:raises", "--seed", "1"]) == 1
    assert "the implementation raised ValueError" in capsys.readouterr().out
