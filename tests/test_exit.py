"""The `verify` command ends when its work is done, whatever threads user code left running."""
from __future__ import annotations

import os
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

def _children() -> dict[int, list[int]]:
    """Each process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_bytes().rpartition(b")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            alive.add(pid)
    return alive


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
            below = _descendants(proc.pid)
        assert len(below) >= at_least and after in err.read_text(), "the command never got that far"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(below):
        time.sleep(0.05)
    left = _alive(below)
    for pid in left:                      # a failing test leaves nothing running either
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return below, left


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
