"""The `verify` command ends when its work is done, whatever threads user code left running."""
from __future__ import annotations

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
