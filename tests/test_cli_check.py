"""`verify check SPEC`: a table, exit 0 when all agree, 2 with one line for bad input."""
import subprocess
import sys
from pathlib import Path

import pytest

import handimpl
import verify
from verify.cli.app import main
from verify.harness import trace


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
    check_module = trace
    real_check = check_module.check

    def doubled_dW1(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out["dW1"] = out["dW1"] * 2
        return out

    monkeypatch.setattr(check_module, "check",
                        lambda *a, impl=None, **k: real_check(*a, impl=doubled_dW1, **k))
    assert main(["check", "2-2-1:sigmoid:quadratic"]) == 1
    assert "first to diverge: dW1" in capsys.readouterr().out


# The console script pip installed beside this interpreter, found without PATH (the venv need
# not be activated).
SCRIPT = Path(sys.executable).parent / ("verify.exe" if sys.platform == "win32" else "verify")
LAUNCHERS = {"console script": [str(SCRIPT)],
             "python -m verify.cli": [sys.executable, "-m", "verify.cli"],
             "python -m verify": [sys.executable, "-m", "verify"]}


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

    from verify.sweep.execute import run_block
    spec, seed, batch = THREAD_SENSITIVE
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)                               # as sweep() runs its cases
        swept = next(run_block(None, [(verify.NetSpec.parse(spec), seed, batch)])).records
        torch.set_num_threads(2)
        if verify.check(spec, seed, batch).records == swept:
            pytest.skip("this machine's torch gives the same numbers with two threads")
        seen = []
        monkeypatch.setattr(trace, "OBSERVERS", [seen.append])
        assert main(["check", spec, "--seed", str(seed), "--batch", str(batch)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert seen[0].records == swept


MINE = """import handimpl


def mine(spec, params, x, y):
    return handimpl.backprop(spec, params, x, y)
"""


def test_a_repro_line_is_safe_to_paste_whatever_the_implementations_file_is_called(tmp_path, monkeypatch):
    from verify.byo.call import load_target
    (tmp_path / "a;touch PWNED;b.py").write_text(MINE)
    monkeypatch.chdir(tmp_path)
    result = verify.check("2-2-1:sigmoid:quadratic", seed=1, batch=2,
                          impl=load_target("a;touch PWNED;b.py:mine"))
    assert result.repro == ("verify check '2-2-1:sigmoid:quadratic' --impl 'a;touch PWNED;b.py:mine' "
                            "--seed 1 --batch 2")
    env = {"PATH": f"{SCRIPT.parent}:/usr/bin:/bin"}
    pasted = subprocess.run(["bash", "-c", result.repro], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert pasted.returncode == 0 and "PASS" in pasted.stdout, pasted.stdout + pasted.stderr
    assert not (tmp_path / "PWNED").exists()


def test_impl_module_function_imports_from_the_current_directory(tmp_path):
    (tmp_path / "mymlp.py").write_text(MINE)
    ran = subprocess.run([str(SCRIPT), "check", "2-2-1:sigmoid:quadratic", "--impl", "mymlp:mine"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0 and "PASS" in ran.stdout, ran.stdout + ran.stderr


def test_verify_version_is_the_installed_packages_version(capsys):
    from importlib.metadata import version
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"verify {version('backprop-verify')}"
    assert verify.__version__ == version("backprop-verify")
