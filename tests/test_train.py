"""verify train: both sides trained on the same data, compared at every step (docs/training.md)."""
import csv
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verify.cli.app import main
from verify.mutants.run import run_mutant
from verify.mutants.zoo import OPTIM_ZOO
from verify.sweep.strategies import cases, optimizer_specs
from verify.train import model
from verify.train.report import COLUMNS, write_train_reports
from verify.train.run import ONE_STEP, TRAJECTORY, train

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "optim_steps.py")
BATCHNORM = "6>linear:5>batchnorm>relu>linear:3|cross_entropy"


@settings(max_examples=10)
@given(case=cases(max_depth=2, max_width=4, max_batch=3, architectures=("dense", "stack")),
       optimizer=optimizer_specs())
def test_handimpl_trains_as_torch_does_on_drawn_networks_and_hyperparameters(case, optimizer):
    spec, seed, batch = case
    result = train(spec, optimizer, steps=3, seed=seed, batch=batch)
    assert result.passed, [(s, r.name, r.max_abs_err, r.allowed) for s, _, _, r in result.failures]


def test_every_parameter_state_tensor_and_running_statistic_is_compared_at_every_step():
    result = train(BATCHNORM, "adam:amsgrad=true", steps=2, seed=1, batch=4)
    names = {(step, check, r.name) for step, check, _, r in result.records}
    params = model.param_names(result.spec)
    assert {"W1", "b1", "gamma2", "beta2", "W4", "b4"} <= set(params)
    for step in (1, 2):
        for check in (ONE_STEP, TRAJECTORY):
            expected = {"loss", "running_mean2", "running_var2"} | set(params) | \
                {f"{p}.{k}" for p in params for k in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
            assert expected <= {n for s, c, n in names if s == step and c == check}


@pytest.mark.parametrize("spec, optimizer", [
    ("1x6x6>conv2d:2,k3,p1>relu>maxpool:2>flatten>linear:3|cross_entropy:dtype=float32", "rmsprop:centered=true"),
    ("4>embedding:10,3>flatten>linear:2|cross_entropy", "adagrad:lr_decay=0.1,initial_accumulator_value=0.1"),
    ("5>linear:4>layernorm>tanh>residual(linear:4>relu>linear:4)>linear:2|mse_loss",
     "sgd:momentum=0.9,nesterov=true,weight_decay=0.01"),
])
def test_kernels_embedding_tables_and_residual_blocks_train_as_torch_does(spec, optimizer):
    result = train(spec, optimizer, steps=3, seed=0, batch=4)
    assert result.passed and len(result.hand_loss) == len(result.torch_loss) == 3


def test_rounding_noise_amplified_along_a_trajectory_is_drift_not_a_failure():
    # b1 before batch norm has a zero gradient in exact arithmetic; RMSprop divides its rounding
    # noise by its own size: the momentum buffers of b1 part at once (relative differences of order 1).
    result = train(BATCHNORM, "rmsprop:centered=true,momentum=0.5", steps=8, seed=0, batch=4)
    b1 = [r.norm_rel_err for _, check, _, r in result.records if check == TRAJECTORY and r.name == "b1.momentum_buffer"]
    assert result.passed and max(b1) > 0.5 and result.drift_rate is not None


@pytest.mark.parametrize("mutant", [m.name for m in OPTIM_ZOO])
def test_each_optimizer_mutant_is_killed_at_the_first_or_second_step_of_its_first_training(mutant):
    # (tests/test_mutants.py checks that the whole zoo, these included, dies within the default budget)
    result = run_mutant(mutant, examples=1, shrink=False)
    assert result.killed and result.minimal.first_diverging_step in (1, 2), result.kill_text


def test_a_wrong_update_fails_the_one_step_comparison_at_the_step_it_first_changes():
    from verify.mutants.run import build
    result = train("2-3-2:tanh,identity:mse_loss", "sgd:momentum=0.9,dampening=0.5", steps=3,
                   step_fn=build("sgd_dampening_forgotten"), impl="mutant")
    assert result.first_diverging_step == 2          # the first step's buffer is g itself


def test_a_correct_user_step_in_torchs_layout_is_judged_at_every_step():
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "adam:lr=0.01", steps=4, step_fn=load_target(f"{FIXTURES}:adam"),
                   impl="adam")
    assert result.passed and not result.note
    assert any(r.name == "W1.exp_avg_sq" for _, _, _, r in result.records)


def test_a_user_step_with_its_own_state_is_compared_on_its_parameters_with_a_note():
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "sgd:lr=0.1", steps=3,
                   step_fn=load_target(f"{FIXTURES}:sgd_opaque_state"), impl="opaque")
    assert result.passed and "not in torch.optim's layout" in result.note


@pytest.mark.parametrize("fn, step, problem", [
    ("raises", 1, "RuntimeError: no step today at optim_steps.py"),
    ("returns_list", 1, "expected a pair (params, state)"),
    ("wrong_shape", 1, "where the parameter is (4, 3)"),
    ("state_that_raises_when_read", 1, "RuntimeError: no"),
    ("state_that_cannot_be_copied", 2, "TypeError"),
])
def test_a_user_step_that_misbehaves_fails_its_step_with_a_row_saying_how(fn, step, problem):
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "sgd", steps=3, step_fn=load_target(f"{FIXTURES}:{fn}"), impl=fn)
    assert not result.passed and result.first_diverging_step == step
    assert problem in result.first_divergence.problem


def test_a_nan_parameter_from_a_user_step_fails_its_row_with_a_problem_naming_the_element():
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "sgd:lr=0.01", steps=4,
                   step_fn=load_target(f"{FIXTURES}:nan_from_step_3"), impl="nan")
    assert not result.passed and result.first_diverging_step == 3
    assert re.match(r"not finite: yours W1\[0, 0\] is nan where torch's is -?\d", result.first_divergence.problem)


def test_an_infinite_state_tensor_fails_its_one_step_row_saying_so():
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "adam", steps=2, step_fn=load_target(f"{FIXTURES}:infinite_exp_avg"),
                   impl="inf")
    first = result.first_divergence
    assert result.first_diverging_step == 1 and first.name.endswith(".exp_avg")
    assert "is -inf where torch's is" in first.problem or "is inf where torch's is" in first.problem


def test_a_nan_along_the_trajectory_is_a_failing_csv_row_with_its_problem_and_the_page_says_it(tmp_path):
    from verify.byo.call import load_target
    result = train("3-4-2:tanh,identity:mse_loss", "sgd:lr=0.01", steps=4,
                   step_fn=load_target(f"{FIXTURES}:nan_from_step_3"), impl="nan")
    paths = write_train_reports(result, tmp_path / "out")
    with open(paths["csv"], newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["check"] == TRAJECTORY and r["step"] == "3" and r["tensor"] == "W1"]
    assert rows[0]["status"] == "diverges" and rows[0]["problem"].startswith("not finite: yours W1[0, 0] is nan")
    page = paths["html"].read_text()
    assert "not finite: yours W1[0, 0] is nan" in page and "first diverging step: 3" in page


def test_a_training_whose_torch_side_overflows_stops_there_and_correct_code_passes():
    result = train("3-8-2:relu,identity:mse_loss", "sgd:lr=50", steps=20)
    assert result.passed and result.overflow == 5 and len(result.torch_loss) == 4
    assert "overflowed at step 5" in result.note


def _interrupt_at(step):
    def progress(t):
        if t == step:
            raise KeyboardInterrupt
    return progress


def test_an_interrupted_training_keeps_the_steps_before_it():
    result = train("2-3-2:tanh,identity:mse_loss", "adam", steps=10, progress=_interrupt_at(3), partial=True)
    assert result.interrupted == 3 and {step for step, _, _, _ in result.records} == {1, 2, 3}


def test_without_partial_an_interrupt_propagates_so_that_a_search_stops_on_it():
    with pytest.raises(KeyboardInterrupt):
        train("2-3-2:tanh,identity:mse_loss", "adam", steps=10, progress=_interrupt_at(3))


def test_verify_train_interrupted_writes_its_partial_report_and_exits_130(monkeypatch, capsys, tmp_path):
    import verify.train.command as command
    monkeypatch.setattr(command, "train", lambda *a, **k: train(*a, **k, progress=_interrupt_at(2)))
    status = main(["train", "2-3-2:tanh,identity:mse_loss", "--steps", "10", "--out", str(tmp_path / "r")])
    assert status == 130 and "PARTIAL: interrupted during step 2 of 10" in capsys.readouterr().out
    assert "PARTIAL" in (tmp_path / "r" / "report.html").read_text()


def test_the_verdict_line_counts_the_steps_judged_when_a_users_state_is_its_own(tmp_path):
    from verify.byo.call import load_target
    from verify.train.report import summary_text
    result = train("3-4-2:tanh,identity:mse_loss", "sgd:lr=0.1", steps=3,
                   step_fn=load_target(f"{FIXTURES}:sgd_opaque_state"), impl="opaque")
    assert summary_text(result).startswith("PASS: 1 of 3 steps judged")


def test_a_user_step_that_hangs_is_stopped_at_its_time_limit_and_ends_the_run():
    from verify.byo.call import load_target
    result = train("2-2-1:sigmoid:mse_loss", "sgd", steps=5, step_fn=load_target(f"{FIXTURES}:hangs"),
                   impl="hangs", time_limit=0.2)
    assert "CallTimedOut" in result.error and len(result.torch_loss) == 1


def test_the_report_is_a_trajectory_csv_and_a_page_marking_the_first_diverging_step(tmp_path):
    from verify.mutants.run import build
    result = train("2-3-2:tanh,identity:mse_loss", "adam", steps=3, step_fn=build("adam_no_bias_correction"),
                   impl="mutant")
    paths = write_train_reports(result, tmp_path / "out")
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert {r["status"] for r in rows if r["check"] == TRAJECTORY} == {"drift"}
    assert any(r["status"] == "diverges" and r["step"] == "1" for r in rows)
    page = paths["html"].read_text()
    assert "<svg" in page and "first diverging step: 1" in page and "<script" not in page


@pytest.mark.parametrize("argv, named", [
    (["--optimizer", "adm"], "unknown optimizer 'adm'; valid: sgd, adam, adamw, rmsprop, adagrad"),
    (["--optimizer", "adam:foo=1"], "unknown hyperparameter 'foo'; valid: lr, betas"),
    (["--optimizer", "adam:betas=0.9"], "betas='0.9': expected 2 numbers"),
    (["--optimizer", "sgd:nesterov=true"], "nesterov=true needs momentum > 0"),
    (["--steps", "0"], "--steps: expected a positive integer"),
])
def test_bad_training_input_is_one_line_and_exit_status_2(argv, named, capsys, tmp_path):
    status = main(["train", "2-2-1:sigmoid:mse_loss", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert status == 2 and named in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_verify_train_exits_0_when_every_step_agrees_and_1_when_one_diverges(capsys, tmp_path):
    ok = main(["train", "2-2-1:sigmoid:mse_loss", "--optimizer", "adam:lr=0.01", "--steps", "3",
               "--out", str(tmp_path / "ok")])
    bad = main(["train", "2-3-2:tanh,identity:mse_loss", "--optimizer", "adam", "--steps", "3",
                "--impl", "verify.mutants.impl:adam_eps_inside_sqrt", "--out", str(tmp_path / "bad")])
    out = capsys.readouterr().out
    assert (ok, bad) == (0, 1)
    assert re.search(r"FAIL: first diverging step 1: W1", out)
    assert (tmp_path / "ok" / "report.html").is_file() and (tmp_path / "bad" / "trajectory.csv").is_file()


@given(st.data())
@settings(max_examples=5)
def test_the_drawn_hyperparameters_are_always_valid_for_torch_too(data):
    import torch
    optimizer = data.draw(optimizer_specs())
    getattr(torch.optim, optimizer.optimizer.torch_class)([torch.zeros(1, requires_grad=True)], **optimizer.hyper)


def test_verify_check_passes_a_correct_user_step_on_drawn_hyperparameters(capsys, tmp_path):
    status = main(["check", "--impl", f"{FIXTURES}:adam", "--optimizers", "adam,adamw", "--examples", "8",
                   "--out", str(tmp_path / "r")])
    assert status == 0 and "PASS: all 8 trainings agree" in capsys.readouterr().out


def test_verify_check_finds_and_shrinks_a_user_steps_bug(capsys, tmp_path):
    status = main(["check", "--impl", f"{FIXTURES}:adam_without_bias_correction", "--optimizers", "adam",
                   "--examples", "8", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert status == 1 and "FAIL at training 1" in out and "verify train '1-1:identity" in out
    assert (tmp_path / "r" / "trajectory.csv").is_file()


def test_verify_check_stops_at_a_user_step_that_hangs_and_reports_it_without_a_traceback(capsys, tmp_path):
    status = main(["check", "--impl", f"{FIXTURES}:hangs", "--optimizers", "sgd", "--examples", "3",
                   "--time-limit", "0.3", "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert status == 1 and "FAIL: the step could not be run: CallTimedOut" in captured.out
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("argv", [["train", "2-2-1:sigmoid:mse_loss"], ["check", "--optimizers", "sgd"]])
def test_a_step_whose_signature_cannot_take_the_four_arguments_is_one_line_and_exit_status_2(argv, capsys, tmp_path):
    status = main([*argv, "--impl", f"{FIXTURES}:one_step_signature", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and "its signature (params, grads, lr) cannot take step(params, grads, state, hyper)" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_empty_optimizers_list_is_one_line_and_exit_status_2(command, capsys, tmp_path):
    impl = ["--impl", f"{FIXTURES}:adam"] if command == "check" else []
    status = main([command, *impl, "--optimizers", "", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and "--optimizers: unknown optimizer '(none given)'" in err and err.count("\n") == 1


def test_verify_check_refuses_an_unknown_optimizer_in_one_line(capsys):
    status = main(["check", "--impl", f"{FIXTURES}:adam", "--optimizers", "sgd,adm"])
    err = capsys.readouterr().err
    assert status == 2 and "unknown optimizer 'adm'; valid: sgd, adam" in err and err.count("\n") == 1


@pytest.mark.parametrize("fn, problem", [
    ("ends_the_process", "ProcessEnded: the step ended the process (exit status 3)"),
    ("ignores_the_time_limit", "did not stop when told to: its process was killed (--isolate)"),
])
def test_with_isolate_a_step_that_ends_its_process_or_ignores_the_limit_fails_and_the_command_goes_on(fn, problem):
    from verify.byo.call import load_target
    result = train("2-2-1:sigmoid:mse_loss", "sgd", steps=2, step_fn=load_target(f"{FIXTURES}:{fn}"), impl=fn,
                   time_limit=0.3, isolate=True)
    assert not result.passed and problem in (result.first_divergence.problem or "") + result.error
