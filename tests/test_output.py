"""Reports are all-or-nothing: written beside --out, swapped in whole, signals held meanwhile."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from verify.cli.app import main
from verify.harness.trace import check
from verify.mutants.run import write_mutant_report
from verify.report import html as report_html
from verify.report import output
from verify.report.frames import FILES
from verify.report.output import OutError, check_out_dir, signals_held, write_dir
from verify.report.write import write_reports
from verify.sweep.run import SweepResult


def _result(n: int, seed: int = 0) -> SweepResult:
    cases = tuple(check("2-2-1:sigmoid:quadratic", seed=seed + i, batch=2) for i in range(n))
    return SweepResult(cases, (), {"seed": seed, "examples": n}, False, 0.1)


def _n_cases(out: Path) -> int:
    """The number of cases every file of the report in ``out`` agrees on (AssertionError if not)."""
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    n = len(pd.read_csv(out / "cases.csv"))
    assert json.loads((out / "report.json").read_text())["counts"]["cases"] == n
    assert pd.read_csv(out / "discrepancies.csv")["case_id"].nunique() == n
    assert f"all {n} cases agree" in (out / "report.html").read_text()
    return n


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.rglob("*") if p.name.endswith(".tmp")]


def test_a_new_report_replaces_the_previous_one_whole_and_leaves_nothing_beside_it(tmp_path):
    out = tmp_path / "report"
    write_reports(_result(3), out)
    write_reports(_result(2, seed=7), out)
    assert _n_cases(out) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_previous_report_with_a_killed_writers_temporary_file_in_it_is_replaced_whole(tmp_path):
    out = tmp_path / "report"
    write_reports(_result(3), out)
    (out / ".discrepancies.csv.k2j4.tmp").write_text("cut sh")
    write_reports(_result(2), out)
    assert _n_cases(out) == 2


def test_without_an_atomic_exchange_a_new_report_still_replaces_the_previous_one_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_exchange", lambda a, b: False)
    out = tmp_path / "report"
    write_reports(_result(3), out)
    write_reports(_result(2), out)
    assert _n_cases(out) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_staging_directory_of_a_running_process_is_left_alone(tmp_path):
    out = tmp_path / "report"
    live = tmp_path / f".report.{os.getppid()}.abcd.tmp"
    live.mkdir()
    write_reports(_result(2), out)
    assert live.is_dir()


def test_verify_run_leaves_no_hypothesis_directory_where_it_is_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "verify.cli", "run", "--examples", "4", "--max-depth", "1",
                           "--out", str(tmp_path / "report")], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_report_that_fails_while_being_written_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_reports(_result(3), out)
    monkeypatch.setattr(report_html, "render_html", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_reports(_result(2), out)
    assert _n_cases(out) == 3 and not _leftovers(tmp_path)


def test_a_signal_while_a_report_is_written_is_delivered_once_it_is_in_place(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        write_dir(out, ["a"], lambda d: (d.joinpath("a").write_text("x"), os.kill(os.getpid(), signal.SIGINT)))
    assert (out / "a").read_text() == "x"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored_while_signals_are_held():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("make,words", [
    (lambda p: p.joinpath("f").write_text("x") and p / "f", "is a file, not a directory"),
    (lambda p: Path("/dev/null"), "is a device"),
    (lambda p: Path("/proc/x"), "cannot write a report there"),
    (lambda p: p.joinpath("notes.txt").write_text("x") and p, "holds files that are not part of a report"),
    (lambda p: Path.cwd(), "is the current directory or one above it"),
], ids=["file", "dev-null", "proc", "foreign-files", "cwd"])
def test_an_out_that_cannot_take_a_report_is_refused_in_one_line(tmp_path, make, words):
    with pytest.raises(OutError, match=words) as info:
        check_out_dir(make(tmp_path), FILES.values())
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused_as_out(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutError, match="cannot write a report there"):
            check_out_dir(tmp_path / "report", FILES.values())
    finally:
        tmp_path.chmod(0o755)


def test_verify_run_refuses_an_unusable_out_before_sweeping(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["run", "--examples", "4", "--out", str(tmp_path / "f")]) == 2
    captured = capsys.readouterr()
    assert "is a file" in captured.err and len(captured.err.splitlines()) == 1
    assert "checked" not in captured.err and captured.out == ""


def test_mutants_replace_their_previous_report_whole(tmp_path):
    out = tmp_path / "mutants"
    out.mkdir()
    (out / "mutants.csv").write_text("old")
    paths = write_mutant_report([], out)
    assert paths["csv"].read_text() != "old" and sorted(p.name for p in out.iterdir()) == \
        ["mutants.csv", "mutants.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mutants"]


def test_explain_out_replaces_the_file_by_rename_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "e.md"
    out.write_text("old")
    inode = out.stat().st_ino
    assert main(["explain", "2-2-1:sigmoid:binary_cross_entropy", "--format", "md", "--out", str(out)]) == 0
    assert out.read_text().startswith("# Why") and out.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["e.md"]


# -- signals and kills while a real `verify run` writes its report (subprocesses) -----------------

def _run_until_writing(tmp_path: Path, out: Path, examples: int) -> subprocess.Popen:
    """`verify run` in a fresh cwd, writing slowly (VERIFY_WRITE_DELAY_S), returned as soon as
    its staging directory has summary.csv in it (the directory beside it that the sweep's CSV
    files are spooled to as the cases come never holds one)."""
    env = {**os.environ, "VERIFY_WRITE_DELAY_S": "0.4"}
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "verify.cli", "run", "--examples", str(examples),
                             "--max-depth", "2", "--out", str(out)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any((p / "summary.csv").exists() for p in out.parent.glob(f".{out.name}.*.tmp")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the report was never being written"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_verify_run_writes_finishes_the_report_and_exits_128_plus_it(tmp_path, signum, status):
    out = tmp_path / "report"
    write_reports(_result(3), out)
    proc = _run_until_writing(tmp_path, out, examples=12)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status and "Traceback" not in err
    assert _n_cases(out) == 12
    assert not _leftovers(tmp_path)


def test_sigkill_while_verify_run_writes_leaves_the_previous_report_and_nothing_inside_it(tmp_path):
    out = tmp_path / "report"
    write_reports(_result(3), out)
    proc = _run_until_writing(tmp_path, out, examples=12)
    proc.kill()
    proc.communicate(timeout=60)
    assert _n_cases(out) == 3
    assert _leftovers(tmp_path / "report") == []
    write_reports(_result(2), out)           # the next write clears what the killed one left
    assert _n_cases(out) == 2 and not _leftovers(tmp_path)
