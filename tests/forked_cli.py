"""Several `python -m verify.cli ARGS` commands for the price of one interpreter start.

A test file that runs the command in child processes pays each time for a fresh interpreter and
for importing torch (1-3 s of CPU each on a 2-core machine). ``run_all`` starts one Python that
imports the command (as ``python -m verify.cli`` does, torch with it) and forks one process per
command from it; each runs the command's ``__main__`` as ``python -m verify.cli`` would, on its own
stdout and stderr (files, read back), with its own cwd and exit status, and ends through the
interpreter's normal exit (its streams flushed as a fresh process's are). Forking after importing
torch is what verify's own fork-started workers do. A command still running at ``timeout`` is
killed and comes back with returncode None (a hang fails the test that reads it).

Used by a module-scoped fixture: its commands run together, in parallel, once per test file."""
from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_all(commands: dict[str, dict[str, Any]], where: Path, timeout: float = 240
            ) -> dict[str, subprocess.CompletedProcess]:
    """``commands``: name -> {"args": [...], "cwd": str}. Returns name -> the completed command
    (args, returncode (None: killed at ``timeout``), stdout, stderr)."""
    runs = [{"name": name, "args": list(c["args"]), "cwd": str(c["cwd"]),
             "stdout": str(where / f"{name}.out"), "stderr": str(where / f"{name}.err")}
            for name, c in commands.items()]
    plan = where / "forked_cli.json"
    plan.write_text(json.dumps(runs))
    done = subprocess.run([sys.executable, __file__, str(plan), str(timeout)], capture_output=True, text=True,
                          timeout=timeout + 60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    statuses = json.loads(done.stdout.splitlines()[-1])
    return {r["name"]: subprocess.CompletedProcess(["verify", *r["args"]], statuses[r["name"]],
                                                   Path(r["stdout"]).read_text(), Path(r["stderr"]).read_text())
            for r in runs}


def _child(run: dict[str, Any]) -> None:
    """In the forked process: the command's streams and cwd, then ``python -m verify.cli``'s main."""
    for fd, path in ((1, run["stdout"]), (2, run["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.chdir(run["cwd"])
    sys.path[0] = os.getcwd()    # where `python -m` puts the directory it was started in
    sys.argv = ["verify", *run["args"]]
    runpy.run_module("verify.cli", run_name="__main__", alter_sys=True)
    raise SystemExit(0)          # as `python -m` ends when the module returns


def _main(plan: str, timeout: float) -> None:
    runs = json.loads(Path(plan).read_text())
    import verify.cli.app  # noqa: F401  what `python -m verify.cli` imports first, and torch with it
    sys.stdout.flush()
    sys.stderr.flush()
    pids = {}
    for run in runs:
        pid = os.fork()
        if pid == 0:
            _child(run)          # never returns: SystemExit (or an exception) ends this process
        pids[pid] = run["name"]
    statuses: dict[str, int | None] = {}
    deadline = time.monotonic() + timeout
    while pids:
        for pid in list(pids):
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                statuses[pids.pop(pid)] = os.waitstatus_to_exitcode(status)
        if pids and time.monotonic() > deadline:
            for pid in list(pids):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                statuses[pids.pop(pid)] = None
        time.sleep(0.05)
    print(json.dumps(statuses))


if __name__ == "__main__":
    _main(sys.argv[1], float(sys.argv[2]))
