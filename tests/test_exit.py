"""The `verify` command ends when its work is done, whatever threads user code left running."""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

HOSTILE = Path(__file__).parent / "fixtures" / "hostile_impls.py"


def test_verify_exits_with_its_status_although_the_implementation_left_a_thread_running(tmp_path):
    done = subprocess.run([sys.executable, "-m", "verify.cli", "check", "--impl", f"{HOSTILE}:leaves_a_thread",
                           "--examples", "4", "--max-depth", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "verify: all 4 cases agree" in done.stdout
    assert (tmp_path / "report.json").is_file()


def test_the_installed_verify_command_is_the_entry_that_does_not_wait_for_threads():
    (script,) = entry_points(group="console_scripts", name="verify")
    assert script.value == "verify.cli:entry"


def _while_importing_torch(proc: subprocess.Popen) -> None:
    """Once the process has loaded torch's library, with seconds of torch's Python left to import."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="finds torch loading in /proc")
@pytest.mark.parametrize("launcher", [["-m", "verify.cli"], ["-m", "verify"], ["the installed command"]])
def test_ctrl_c_while_the_command_is_still_importing_torch_is_one_line_and_exit_status_130(launcher, tmp_path):
    command = [str(Path(sys.executable).parent / "verify")] if launcher == ["the installed command"] \
        else [sys.executable, *launcher]
    proc = subprocess.Popen([*command, "run", "--examples", "5", "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _while_importing_torch(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "verify: interrupted\n")


# -- no process outlives the command -------------------------------------------------------------

def _fuzz():
    """benchmarks/fuzz.py, for its listing of the processes below one (from /proc)."""
    path = Path(__file__).parents[1] / "benchmarks" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("benchmark_fuzz", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module              # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz()


def _killed_with_children(args: list[str], tmp_path, *, at_least: int = 1,
                          after: str = "") -> tuple[set[int], set[int]]:
    """Start `verify ARGS`; once ``at_least`` processes run below it and its stderr holds ``after``,
    SIGKILL it: (the processes below it, those of them still running 5 s later)."""
    err = tmp_path / "stderr"
    with open(err, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "verify.cli", *args, "--out", str(tmp_path / "out")],
                                stdout=subprocess.DEVNULL, stderr=err_file, cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 60
        below: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None and \
                (len(below) < at_least or after not in err.read_text()):
            time.sleep(0.05)
            below = FUZZ.descendants(proc.pid)
        assert len(below) >= at_least and after in err.read_text(), "the command never got that far"
    finally:
        proc.kill()
        proc.wait()
    return below, FUZZ.left_running(below)     # (killed then: a failing test leaves nothing running)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes in /proc")
def test_the_worker_processes_of_jobs_2_end_soon_after_the_command_is_killed_mid_sweep(tmp_path):
    below, left = _killed_with_children(["run", "--jobs", "2", "--examples", "2000", "--max-depth", "3"],
                                        tmp_path, at_least=2, after="checked")
    assert below and not left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes in /proc")
def test_the_child_process_of_an_isolated_call_ends_soon_after_the_command_is_killed(tmp_path):
    below, left = _killed_with_children(["check", "--impl", f"{HOSTILE}:sleeps_a_minute", "--isolate",
                                         "--time-limit", "120", "--examples", "4", "--max-depth", "2"],
                                        tmp_path)
    assert below and not left


def test_output_piped_into_a_reader_that_stops_early_ends_without_a_traceback_and_keeps_the_reports(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "cs231n_vectorised.py"
    command = (f"{sys.executable} -m verify.cli layers {fixture} --only affine,relu,batchnorm --examples 3 "
               f"--out {tmp_path / 'out'} | head -c 1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0
    assert (tmp_path / "out" / "functions.csv").is_file()
