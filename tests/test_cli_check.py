"""`verify check SPEC`: a table, exit 0 when all agree, 2 with one line for bad input."""
import shutil
import subprocess
import sys

import pytest

import handimpl
import verify.check  # noqa: F401  (the module, for monkeypatching)

from verify.cli import main


def test_check_prints_every_tensor_and_exits_0(capsys):
    assert main(["check", "2-2-1:sigmoid:quadratic", "--seed", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("z1", "a2", "loss", "delta2", "dW1", "db1", "dx", "W2_after", "PASS"):
        assert name in out


@pytest.mark.parametrize("argv,message", [
    (["check", "2-2-1:sigmod:quadratic"], "unknown activation 'sigmod'"),
    (["check", "2-2-1:identity:binary_cross_entropy"], "output activations that fit"),
    (["check"], "give a SPEC"),
])
def test_bad_input_gets_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_batch_is_rejected_by_the_parser_with_exit_2(capsys):
    assert main(["check", "2-2-1:sigmoid:quadratic", "--batch", "0"]) == 2


def test_a_failing_case_is_reported_with_its_first_diverging_tensor_and_exit_1(monkeypatch, capsys):
    check_module = sys.modules["verify.check"]
    real_check = check_module.check

    def doubled_dW1(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out["dW1"] = out["dW1"] * 2
        return out

    monkeypatch.setattr(check_module, "check",
                        lambda *a, impl=None, **k: real_check(*a, impl=doubled_dW1, **k))
    assert main(["check", "2-2-1:sigmoid:quadratic"]) == 1
    assert "first to diverge: dW1" in capsys.readouterr().out


LAUNCHERS = {"console script": [shutil.which("verify") or "verify-not-installed"],
             "python -m": [sys.executable, "-m", "verify.cli"]}


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=list(LAUNCHERS))
def test_the_command_checks_a_spec_and_reports_bad_input_in_one_line(launcher):
    ok = subprocess.run([*LAUNCHERS[launcher], "check", "2-2-1:sigmoid:quadratic"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "PASS" in ok.stdout
    bad = subprocess.run([*LAUNCHERS[launcher], "check", "2-2-1:sigmoid:quadratic", "--impl",
                          "handimpl:nothing"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "verify: error: --impl 'handimpl:nothing': handimpl has no attribute 'nothing'"


# A float32 case whose numbers differ between one and two torch threads on a 2-core machine.
THREAD_SENSITIVE = ("28-6:gelu:poisson_nll_loss:dtype=float32,init=kaiming_uniform,reduction=sum",
                    233766053, 9)


def test_a_repro_line_reproduces_the_numbers_of_the_sweeps_single_threaded_check(monkeypatch, capsys):
    import torch

    from verify.sweep import run_block
    spec, seed, batch = THREAD_SENSITIVE
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)                               # as sweep() runs its cases
        swept = next(run_block(None, [(verify.NetSpec.parse(spec), seed, batch)])).records
        torch.set_num_threads(2)
        if verify.check(spec, seed, batch).records == swept:
            pytest.skip("this machine's torch gives the same numbers with two threads")
        seen = []
        monkeypatch.setattr(sys.modules["verify.check"], "OBSERVERS", [seen.append])
        assert main(["check", spec, "--seed", str(seed), "--batch", str(batch)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert seen[0].records == swept
