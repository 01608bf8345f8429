"""verify run --optimizers: each drawn case also draws an optimizer and its hyperparameters, and
handimpl.optim is trained against torch.optim on the case's data (docs/training.md)."""
import csv
import functools
import shlex

import pytest

import verify.train.run as train_run
from verify.cli.app import main
from verify.harness.trace import OPTIMIZER
from verify.mutants.run import build
from verify.sweep.run import sweep
from verify.train.sweep import check_trained

SMALL = ["--max-depth", "2", "--max-width", "4", "--max-batch", "3", "--architectures", "dense,stack"]


def test_a_sweep_with_optimizers_draws_one_per_case_and_every_training_agrees_with_torch_optim():
    result = sweep(examples=10, seed=1, max_depth=2, max_width=4, max_batch=3, architectures=["dense", "stack"],
                   optimizers=["sgd", "adam", "rmsprop"], check_fn=functools.partial(check_trained))
    assert result.passed and result.n_cases == 10
    assert {r.optimizer.partition(":")[0] for r in result.results} <= {"sgd", "adam", "rmsprop"}
    assert all(any(rec.quantity.startswith(OPTIMIZER) for rec in r.records) for r in result.results)
    assert len({r.optimizer for r in result.results}) > 1        # hyperparameters are drawn, not fixed


def test_verify_run_names_each_cases_optimizer_and_hyperparameters_in_cases_csv(tmp_path, capsys):
    status = main(["run", "--optimizers", "all", "--examples", "8", "--seed", "2", *SMALL,
                   "--out", str(tmp_path / "r")])
    rows = list(csv.DictReader(open(tmp_path / "r" / "cases.csv")))
    assert status == 0 and len(rows) == 8
    assert all(row["optimizer"] in ("sgd", "adam", "adamw", "rmsprop", "adagrad") for row in rows)
    drawn = [f"{row['optimizer']}:{row['optimizer_hyper']}".rstrip(":") for row in rows]
    from verify.core.optim_spec import OptimizerSpec
    assert all(str(OptimizerSpec.parse(d)) == d for d in drawn)      # the two columns read back as the spec
    quantities = {row["quantity"] for row in csv.DictReader(open(tmp_path / "r" / "discrepancies.csv"))}
    assert {"optimizer:param", "optimizer:state", "optimizer:loss"} <= quantities


def test_a_planted_optimizer_bug_is_found_by_verify_run_shrunk_and_its_repro_line_trains_that_optimizer(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_run, "handimpl_step", build("adam_no_bias_correction"))
    status = main(["run", "--optimizers", "adam", "--examples", "10", "--out", str(tmp_path / "r"), *SMALL])
    out = capsys.readouterr().out
    repro = next(line.strip() for line in out.splitlines() if line.strip().startswith("verify train '"))
    assert status == 1 and "1 distinct failure" in out and "look at the adam update" in out
    widths = shlex.split(repro)[2].split(":")[0].split("-")
    assert len(widths) == 2 and widths[0] == "1" and int(widths[1]) <= 2      # shrunk to one layer, one input
    assert "--optimizer 'adam'" in repro and "--batch 1" in repro
    argv = shlex.split(repro)[1:] + ["--out", str(tmp_path / "again")]
    assert main(argv) == 1                       # the repro line fails with the bug planted ...
    monkeypatch.undo()
    assert main(argv[:-2] + ["--out", str(tmp_path / "fixed")]) == 0     # ... and passes without it


def test_an_unknown_optimizer_for_verify_run_is_one_line_with_the_valid_choices(capsys, tmp_path):
    status = main(["run", "--optimizers", "sgd,adm", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "unknown optimizer 'adm'; valid: sgd, adam, adamw, rmsprop, adagrad, or all" in err
    assert not (tmp_path / "r").exists()


def test_a_sweep_asked_for_optimizers_without_a_check_that_trains_is_refused():
    with pytest.raises(ValueError, match="optimizers need a check_fn"):
        sweep(examples=1, optimizers=["sgd"])
