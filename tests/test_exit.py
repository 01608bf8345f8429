"""The `verify` command ends when its work is done, whatever threads user code left running."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

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
