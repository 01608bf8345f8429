"""Fuzz the `verify` command: spec strings, flag combinations, hostile implementations, signals.

Not a test: it prints counts, per group and in all,

    tried / clean / tracebacks / hangs / lost reports / wrong outcomes

- a *traceback* is a Python traceback on stdout or stderr, an uncaught exception, or an exit
  status other than 0, 1, 2, 130 and 143 (a process killed by a signal included);
- a *hang* is a command still running at its time limit (it is killed);
- a *lost report* is, for a command that writes a report, an --out that does not hold one whole,
  self-consistent report afterwards (the previous one, put there before each try, or a new
  one), a temporary file inside it, or, after exit 0 or 1, the previous report left unreplaced;
- a *wrong outcome* is an exit status other than the one a try expects (a hostile implementation
  whose results must fail, or must pass; 130 for a Ctrl-C at start-up), or a process the command
  started (a --jobs worker, an --isolate child) still running 5 s after the command was killed.

Spec strings are mutations of valid specs (random edits with hostile pieces: non-ASCII digits,
signs, underscores, inf/nan, huge numbers, separators) plus a fixed list; they are run by a
driver subprocess that calls verify.cli.app on each in turn (each call under an alarm), as
`verify check SPEC --max-memory 256M` does. A further sample of them, the flag
combinations, the hostile implementations and the signal scenarios each run as their own
`verify` subprocess, with a timeout, reports into temporary directories.

The runs marked LIMIT are the documented limits of a sweep without --isolate (an
implementation that ends the process at --jobs 1, or ignores SIGALRM and loops, is stopped only
by --isolate) and a Ctrl-C within Python's own start-up, before any code of verify's runs; their
counts are printed apart. The same implementations also run with --isolate,
among the others.

Groups: specs, flags, hostile (implementations that raise, hang, end their process, close or
redirect the standard streams, write into their frozen spec, return masked arrays or np.matrix),
signals (while a report is written, while a sweep runs, and while the command is still importing
torch), orphans (the command SIGKILLed while its --jobs workers or an --isolate child run).

    python benchmarks/fuzz.py [--specs N] [--seed S] [--parallel P] [--only GROUP ...]

The default run (2,000 spec strings) takes about eight minutes on this project's 2-core machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILES = {"cases.csv", "discrepancies.csv", "summary.csv", "report.html", "report.json"}
OK_STATUS = {0, 1, 2, 130, 143}
VERIFY = [sys.executable, "-m", "verify.cli"]

VALID_SPECS = [
    "2-2-1:sigmoid:quadratic", "4-16-3:relu,identity:cross_entropy:label_smoothing=0.2",
    "8-4-4:softsign,softmax:mse_loss:dtype=float32,bias=false",
    "3-3-3:tanh,softplus:huber_loss:reduction=sum,delta=2", "3-2:identity:smooth_l1_loss:beta=0.5",
    "5-3:identity:cross_entropy:target=prob", "3-3-2:tanh,log_softmax:nll_loss",
    "2-1:relu:poisson_nll_loss:log_input=false,eps=1e-6", "2-2:log_softmax:kl_div:reduction=batchmean",
]
PIECES = ["２", "٢", "１", "+", "_", "-", "--", ":", "::", ",", ",,", "=", "==", "inf", "-inf", "nan",
          "1e999", "1e-999", "0", "00", "9" * 30, "9" * 5000, "ｒｅｌｕ", " ", "\t", "é", "true", "TRUE",
          "reduction=sum", "target=prob", "dtype=float16", "bias=0", "x" * 1000, "relu", "softmax",
          "delta=", "=1", "eps=0", "label_smoothing=2", "1000000", "8000", "\\", "'", '"', "$(x)", ";"]
FIXED_SPECS = [
    "２-１:relu:mse_loss", "٢-١:relu:mse_loss", "+2-1:relu:mse_loss", "2_0-1:relu:mse_loss",
    "2-1:relu:huber_loss:delta=inf", "2-1:relu:poisson_nll_loss:eps=nan", "1000000-1000000-1:sigmoid:quadratic",
    "8000-8000-1:sigmoid:quadratic", "x" * 100000, "2-1:" + "relu," * 10000 + ":mse_loss", "", ":", ":::",
    "1" + "-1" * 3000 + ":relu:mse_loss", "2-1:relu:mse_loss:" + ",".join(["dtype=float32"] * 3),
]


@dataclass
class Tally:
    tried: int = 0
    clean: int = 0
    tracebacks: int = 0
    hangs: int = 0
    lost: int = 0
    wrong: int = 0
    examples: list = field(default_factory=list)

    def add(self, what: str, traceback: bool = False, hang: bool = False, lost: bool = False,
            wrong: bool = False) -> None:
        self.tried += 1
        self.tracebacks += traceback
        self.hangs += hang
        self.lost += lost
        self.wrong += wrong
        if traceback or hang or lost or wrong:
            if len(self.examples) < 5:
                kinds = [k for k, v in (("traceback", traceback), ("hang", hang), ("lost", lost),
                                        ("wrong", wrong)) if v]
                self.examples.append(f"{'/'.join(kinds)}: {what[:160]!r}")
        else:
            self.clean += 1

    def line(self, name: str) -> str:
        return (f"{name:<32} tried {self.tried:>5}  clean {self.clean:>5}  tracebacks {self.tracebacks:>3}  "
                f"hangs {self.hangs:>3}  lost reports {self.lost:>3}  wrong outcomes {self.wrong:>3}")


# -- running `verify` -----------------------------------------------------------------------------

@dataclass
class Run:
    status: int | None          # None: killed at its time limit
    out: str
    err: str


def run_verify(args: list[str], cwd: Path, *, timeout: float, env: dict | None = None,
               signal_when=None) -> Run:
    """`verify ARGS` in its own process group, its output in files (``signal_when(proc, err_path)``
    may watch its stderr and signal it meanwhile)."""
    with tempfile.TemporaryDirectory() as logs:
        out_path, err_path = Path(logs, "out"), Path(logs, "err")
        with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
            proc = subprocess.Popen([*VERIFY, *args], cwd=cwd, stdout=out_f, stderr=err_f, text=True,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
            if signal_when is not None:
                signal_when(proc, err_path)
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status = None
        return Run(status, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


def has_traceback(run: Run) -> bool:
    return run.status is not None and (run.status not in OK_STATUS or "Traceback (most recent call last)"
                                       in run.out + run.err)


def report_state(out: Path) -> str | None:
    """None when ``out`` holds one whole, self-consistent report and nothing else; else why not."""
    if not out.is_dir():
        return "no report directory"
    names = {p.name for p in out.iterdir()}
    if names != REPORT_FILES:
        return f"files {sorted(names)}"
    try:
        data = json.loads((out / "report.json").read_text())
        rows = (out / "cases.csv").read_text().count("\n") - 1
    except (OSError, ValueError) as e:
        return f"unreadable: {e}"
    if data["counts"]["cases"] != rows or not (out / "report.html").read_text().rstrip().endswith("</html>"):
        return "files from different runs or cut short"
    return None


def report_lost(out: Path, previous: bytes | None, run: Run) -> bool:
    """After a command that writes ``out`` (holding ``previous``'s report.json before it)."""
    if not out.exists():
        return previous is not None
    if report_state(out) is not None:
        return True
    replaced = (out / "report.json").read_bytes() != previous
    return run.status in (0, 1) and not replaced


# -- 1. spec strings, in one driver process ---------------------------------------------------------

DRIVER = textwrap.dedent("""
    import contextlib, io, json, signal, sys
    from verify.cli.app import main

    class Hang(BaseException):
        pass

    def alarm(signum, frame):
        raise Hang

    signal.signal(signal.SIGALRM, alarm)
    for line in sys.stdin:
        argv = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        raised = hang = False
        signal.alarm(60)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
        except Hang:
            status, hang = None, True
        except BaseException as e:
            status, raised = None, f"{type(e).__name__}: {e}"[:200]
        finally:
            signal.alarm(0)
        print(json.dumps({"status": status, "raised": raised, "hang": hang,
                          "err_lines": len(err.getvalue().splitlines()), "err_len": len(err.getvalue())}),
              flush=True)
""")


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(text))
        op = rng.random()
        if op < 0.4:
            text = text[:i] + rng.choice(PIECES) + text[i:]
        elif op < 0.7:
            text = text[:i] + text[i + rng.randint(1, 4):]
        else:
            text = text[:i] + rng.choice(PIECES) + text[i + rng.randint(1, 3):]
    return text


def spec_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    drawn = [mutate(rng, rng.choice(VALID_SPECS)) for _ in range(max(n - len(FIXED_SPECS), 0))]
    return FIXED_SPECS + drawn


def run_in_process(argvs: list[list[str]], cwd: Path, long_errors: list) -> list[dict]:
    """verify.cli.app.main on each argv in turn, in one driver process: for each, its exit status
    (None if it raised or hung), what it raised, whether it hung."""
    listing = cwd.parent / f"argvs-{time.monotonic_ns()}.jsonl"
    listing.write_text("".join(json.dumps(a) + "\n" for a in argvs))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=cwd, stdin=listing.open(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    results = []
    for argv in argvs:
        line = proc.stdout.readline()
        r = json.loads(line) if line else {"status": None, "raised": "the driver died", "hang": False}
        if r["status"] == 2 and (r["err_lines"] != 1 or r["err_len"] > 600):
            long_errors.append(" ".join(argv)[:80])
        results.append(r)
    proc.wait(timeout=60)
    return results


def in_process_traceback(r: dict) -> bool:
    return bool(r["raised"]) or (r["status"] is not None and r["status"] not in OK_STATUS)


# -- 2. flag combinations ---------------------------------------------------------------------------

def flag_cases(tmp: Path) -> list[tuple[list[str], bool]]:
    """(argv, writes a report to OUT) ; OUT in argv is replaced by the try's own directory."""
    afile = tmp / "a-file"
    afile.write_text("x")
    small = ["--examples", "6", "--max-depth", "2"]
    cases = [
        (["run", *small, "--out", "OUT"], True),
        (["run", "--examples", "0", "--out", "OUT"], True), (["run", "--examples", "-1", "--out", "OUT"], True),
        (["run", "--examples", str(10 ** 26), "--out", "OUT"], True),
        (["run", "--examples", "1e3", "--out", "OUT"], True), (["run", "--examples", "abc", "--out", "OUT"], True),
        (["run", *small, "--jobs", "0", "--out", "OUT"], True),
        (["run", *small, "--jobs", "1000", "--out", "OUT"], True),
        (["run", "--examples", "20", "--max-depth", "2", "--jobs", "2", "--out", "OUT"], True),
        (["run", *small, "--jobs", "8", "--out", "OUT"], True),
        (["run", "--max-depth", "0", "--out", "OUT"], True), (["run", "--max-depth", "33", "--out", "OUT"], True),
        (["run", "--max-width", "2000", "--out", "OUT"], True),
        (["run", "--max-batch", str(10 ** 9), "--out", "OUT"], True),
        (["run", "--max-width", "1024", "--max-depth", "32", "--max-batch", "4096", "--out", "OUT"], True),
        (["run", *small, "--activations", "", "--out", "OUT"], True),
        (["run", *small, "--activations", "bogus", "--out", "OUT"], True),
        (["run", *small, "--activations", "relu,,relu", "--out", "OUT"], True),
        (["run", *small, "--activations", "softmax", "--losses", "l1_loss", "--out", "OUT"], True),
        (["run", *small, "--losses", "binary_cross_entropy", "--activations", "relu", "--out", "OUT"], True),
        (["run", *small, "--dtypes", "float16", "--out", "OUT"], True),
        (["run", *small, "--activations", "x" * 100000, "--out", "OUT"], True),
        (["run", *small, "--seed", "-1", "--out", "OUT"], True),
        (["run", *small, "--seed", str(2 ** 64), "--out", "OUT"], True),
        (["run", *small, "--max-memory", "0", "--out", "OUT"], True),
        (["run", *small, "--max-memory", "1K", "--out", "OUT"], True),
        (["run", *small, "--max-memory", "lots", "--out", "OUT"], True),
        (["run", *small, "--out", "/proc/x"], False), (["run", *small, "--out", "/dev/null"], False),
        (["run", *small, "--out", str(afile)], False), (["run", *small, "--out", "."], False),
        (["run", *small, "--out", ""], False), (["run", *small, "--out", str(tmp)], False),
        (["check", "2-2-1:sigmoid:quadratic", "--examples", "5"], False),
        (["check", "2-2-1:sigmoid:quadratic", "--jobs", "2"], False),
        (["check", "2-2-1:sigmoid:quadratic", "--out", "OUT"], False),
        (["check", "2-2-1:sigmoid:quadratic", "--batch", str(10 ** 9)], False),
        (["check", "2-2-1:sigmoid:quadratic", "--batch", "0"], False),
        (["check", "2-2-1:sigmoid:quadratic", "--time-limit", "1"], False),
        (["check", "2-2-1:sigmoid:quadratic", "--seed", "nan"], False),
        (["check"], False), (["check", "--impl", "handimpl:backprop", "--batch", "3", "--out", "OUT"], True),
        (["check", "--impl", "handimpl:backprop", *small, "--out", "OUT"], True),
        (["check", "--impl", "handimpl:nothing", *small, "--out", "OUT"], True),
        (["check", "--impl", "no/such/file.py:fn", *small, "--out", "OUT"], True),
        (["check", "--impl", "handimpl:backprop", *small, "--time-limit", "inf", "--out", "OUT"], True),
        (["explain", "2-2-1:sigmoid:quadratic", "--out", "/dev/null"], False),
        (["explain", "2-2-1:sigmoid:quadratic", "--out", str(tmp)], False),
        (["explain", "8000-8000-1:sigmoid:quadratic"], False),
        (["explain", "--seed-example", "2-2-1:sigmoid:quadratic"], False),
        (["mutants", "--examples", str(10 ** 26), "--out", "OUT"], False),
        (["mutants", "--out", "/dev/null"], False),
        (["bogus"], False), ([], False), (["run", "--help"], False), (["--version"], False),
    ]
    return cases


# -- 3. hostile implementations ---------------------------------------------------------------------

HOSTILE = textwrap.dedent('''
    import io, os, signal, sys, time, warnings
    warnings.simplefilter("ignore", PendingDeprecationWarning)     # np.matrix
    import numpy as np
    import handimpl
    from handimpl.network import backprop as _bp

    def correct(spec, params, x, y):
        return _bp(spec, params, x, y)

    def appends_params_changes_x(spec, params, x, y):
        out = _bp(spec, params, x, y); params.append(params[0]); x *= 2; return out

    def huge_errors(spec, params, x, y):
        out = dict(_bp(spec, params, x, y)); out["dx"] = out["dx"] * 1e300 + 1e-300; return out

    def inf_and_nan(spec, params, x, y):
        out = dict(_bp(spec, params, x, y)); out["dW1"] = out["dW1"] * np.inf; out["loss"] = float("nan")
        out["z1"] = np.zeros_like(out["z1"]); return out

    def string_supports(spec, params, x, y):
        return _bp(spec, params, x, y)
    string_supports.supports = {"activations": "relu"}

    def misspelt_supports(spec, params, x, y):
        return _bp(spec, params, x, y)
    misspelt_supports.supports = {"activation": ["relu"]}

    def prints_a_lot(spec, params, x, y):
        print("x" * 100000); return _bp(spec, params, x, y)

    def not_a_mapping(spec, params, x, y):
        return 42

    def raises_value_error(spec, params, x, y):
        raise ValueError("<script>" + "y" * 10000)

    def sleeps_past_the_limit(spec, params, x, y):
        time.sleep(30); return _bp(spec, params, x, y)

    def exits(spec, params, x, y):
        os._exit(3)

    def keyboard_interrupt(spec, params, x, y):
        raise KeyboardInterrupt

    class Custom(BaseException):
        pass

    def custom_base_exception(spec, params, x, y):
        raise Custom("no")

    def generator_exit(spec, params, x, y):
        raise GeneratorExit

    class BadStr(Exception):
        def __str__(self):
            raise RuntimeError("str")

    def unprintable_exception(spec, params, x, y):
        raise BadStr()

    class BadMap(dict):
        def __iter__(self):
            raise RuntimeError("iter")

    def mapping_that_cannot_iterate(spec, params, x, y):
        return BadMap(_bp(spec, params, x, y))

    _calls = [0]

    def flaky(spec, params, x, y):
        _calls[0] += 1
        if _calls[0] <= 2:
            raise ValueError("only at first")
        return _bp(spec, params, x, y)

    def grad_off(spec, params, x, y):
        import torch
        torch.set_grad_enabled(False)
        return _bp(spec, params, x, y)

    def ignores_alarm(spec, params, x, y):
        signal.signal(signal.SIGALRM, signal.SIG_IGN); time.sleep(30); return _bp(spec, params, x, y)

    def swallows_everything(spec, params, x, y):
        while True:
            try:
                time.sleep(0.1)
            except BaseException:
                pass

    # the standard streams
    def closes_stdout(spec, params, x, y):
        sys.stdout.close(); return _bp(spec, params, x, y)

    def closes_stderr(spec, params, x, y):
        sys.stderr.close(); return _bp(spec, params, x, y)

    def closes_the_original_streams(spec, params, x, y):
        sys.__stdout__.close(); sys.__stderr__.close(); return _bp(spec, params, x, y)

    def closes_stdout_buffer(spec, params, x, y):
        sys.stdout.buffer.close(); return _bp(spec, params, x, y)

    def rewraps_stdout(spec, params, x, y):
        sys.stdout = io.TextIOWrapper(sys.stdout.buffer); return _bp(spec, params, x, y)

    def replaces_the_streams(spec, params, x, y):
        sys.stdout = sys.stderr = None; return _bp(spec, params, x, y)

    def closes_fds_1_and_2(spec, params, x, y):
        os.close(1); os.close(2); return _bp(spec, params, x, y)

    def redirects_fd_1(spec, params, x, y):
        null = os.open(os.devnull, os.O_WRONLY); os.dup2(null, 1); os.close(null); return _bp(spec, params, x, y)

    # the frozen spec
    def _writes(field, value):
        def impl(spec, params, x, y):
            out = _bp(spec, params, x, y)
            object.__setattr__(spec, field, value(spec) if callable(value) else value)
            return out
        return impl

    writes_spec_dtype = _writes("dtype", "float16")
    writes_spec_widths = _writes("widths", lambda s: (1,) * len(s.widths))
    writes_spec_activations = _writes("activations", lambda s: ("bogus",) * len(s.activations))
    writes_spec_loss = _writes("loss", "no_such_loss")
    writes_spec_bias = _writes("bias", "yes")
    writes_spec_options = _writes("options", (("delta", float("nan")),))

    def writes_spec_dict(spec, params, x, y):
        out = _bp(spec, params, x, y); object.__setattr__(spec, "__dict__", {}); return out

    def writes_spec_class(spec, params, x, y):
        class Other:
            pass
        out = _bp(spec, params, x, y); object.__setattr__(spec, "__class__", Other); return out

    # arrays that are not plain ndarrays
    def _returns(make, key="dW1"):
        def impl(spec, params, x, y):
            out = dict(_bp(spec, params, x, y)); out[key] = make(out[key]); return out
        return impl

    fully_masked = _returns(lambda a: np.ma.masked_array(a, mask=True))
    masked_nothing = _returns(np.ma.masked_array)
    masked_loss = _returns(lambda a: np.ma.masked, key="loss")
    as_matrix = _returns(lambda a: np.matrix(a))
    as_recarray = _returns(lambda a: a.view(np.recarray))

    class Units(np.ndarray):
        pass

    as_subclass = _returns(lambda a: a.view(Units))
    masked_step_result = _returns(lambda a: a)

    def _masked_step(params, grads, lr):
        return [(np.ma.masked_array(W - lr * grads[f"dW{l}"], mask=True), b)
                for l, (W, b) in enumerate(params, start=1)]

    masked_step_result.step = _masked_step
''')
# (function, extra flags, kind): HANDLED must be clean; LIMIT is a documented limit (see above).
HOSTILE_CASES = [
    ("correct", [], "HANDLED"), ("correct", ["--jobs", "2"], "HANDLED"),
    ("appends_params_changes_x", [], "HANDLED"), ("huge_errors", [], "HANDLED"), ("inf_and_nan", [], "HANDLED"),
    ("string_supports", [], "HANDLED"), ("misspelt_supports", [], "HANDLED"), ("prints_a_lot", [], "HANDLED"),
    ("not_a_mapping", [], "HANDLED"), ("raises_value_error", [], "HANDLED"),
    ("sleeps_past_the_limit", ["--time-limit", "0.5"], "HANDLED"),
    ("exits", ["--jobs", "2"], "HANDLED"), ("keyboard_interrupt", ["--jobs", "2"], "HANDLED"),
    ("custom_base_exception", ["--jobs", "2"], "HANDLED"), ("generator_exit", [], "HANDLED"),
    ("unprintable_exception", [], "HANDLED"), ("mapping_that_cannot_iterate", [], "HANDLED"),
    ("flaky", ["--jobs", "2"], "HANDLED"), ("grad_off", [], "HANDLED"),
    ("exits", ["--isolate"], "HANDLED"), ("ignores_alarm", ["--time-limit", "0.5", "--isolate"], "HANDLED"),
    ("swallows_everything", ["--time-limit", "0.5", "--isolate"], "HANDLED"),
    ("exits", [], "LIMIT"), ("ignores_alarm", ["--time-limit", "0.5"], "LIMIT"),
    ("swallows_everything", ["--time-limit", "0.5"], "LIMIT"),
]
STREAMS = ["closes_stdout", "closes_stderr", "closes_the_original_streams", "closes_stdout_buffer",
           "rewraps_stdout", "replaces_the_streams", "closes_fds_1_and_2", "redirects_fd_1"]
SPEC_WRITERS = ["writes_spec_dtype", "writes_spec_widths", "writes_spec_activations", "writes_spec_loss",
                "writes_spec_bias", "writes_spec_options", "writes_spec_dict", "writes_spec_class"]
NOT_PLAIN = ["fully_masked", "masked_nothing", "masked_loss", "as_matrix", "as_recarray", "as_subclass",
             "masked_step_result"]
HOSTILE_CASES += [(fn, flags, "HANDLED") for fn in STREAMS for flags in ([], ["--jobs", "2"], ["--isolate"])]
HOSTILE_CASES += [(fn, flags, "HANDLED") for fn in SPEC_WRITERS for flags in ([], ["--jobs", "2"], ["--isolate"])]
HOSTILE_CASES += [(fn, flags, "HANDLED") for fn in NOT_PLAIN for flags in ([], ["--jobs", "2"])]
# The exit status a hostile run must end with, where the implementation's results decide it: every
# case agrees whatever the code did to the streams; a written spec or a value that is not a plain
# array fails.
EXPECTED_STATUS = {**{fn: 0 for fn in STREAMS + ["correct"]}, **{fn: 1 for fn in SPEC_WRITERS + NOT_PLAIN}}


# -- 4. signals while a report is written -------------------------------------------------------------

def _when_writing(out: Path, signum: int):
    def send(proc: subprocess.Popen, err_path: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.is_dir() and any(p.iterdir()) for p in out.parent.glob(f".{out.name}.*.tmp")):
                proc.send_signal(signum)
                return
            time.sleep(0.02)
    return send


def _after(seconds: float, signum: int):
    def send(proc: subprocess.Popen, err_path: Path) -> None:
        time.sleep(seconds)
        if proc.poll() is None:
            proc.send_signal(signum)
    return send


def _while_sweeping(signum: int):
    """Once the sweep has printed its first progress line."""
    def send(proc: subprocess.Popen, err_path: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if "checked" in err_path.read_text(errors="replace"):
                time.sleep(0.3)
                proc.send_signal(signum)
                return
            time.sleep(0.02)
    return send


SLOW_WRITES = {"VERIFY_WRITE_DELAY_S": "0.3"}
# (name, examples, when to signal, environment); every one gets a previous report in OUT first.
SIGNAL_CASES = [
    ("SIGINT while writing", 60, lambda out: _when_writing(out, signal.SIGINT), SLOW_WRITES),
    ("SIGTERM while writing", 60, lambda out: _when_writing(out, signal.SIGTERM), SLOW_WRITES),
    ("SIGKILL while writing", 60, lambda out: _when_writing(out, signal.SIGKILL), SLOW_WRITES),
    ("SIGINT while sweeping", 3000, lambda out: _while_sweeping(signal.SIGINT), {}),
    ("SIGTERM while sweeping", 3000, lambda out: _while_sweeping(signal.SIGTERM), {}),
    ("SIGTERM while sweeping, --jobs 2", 3000, lambda out: _while_sweeping(signal.SIGTERM), {"JOBS": "2"}),
    ("SIGINT twice while writing", 60, lambda out: _twice(_when_writing(out, signal.SIGINT)), SLOW_WRITES),
]
# Ctrl-C while the command is still importing (torch takes seconds): one line, exit status 130.
STARTUP_CASES = [(f"SIGINT {delay} s into start-up", 60, (lambda d: lambda out: _after(d, signal.SIGINT))(delay),
                  {}) for delay in (0.3, 0.5, 0.8, 1.2, 2.0)]
# ... and within Python's own start-up (about 50 ms here, most of it site's .pth files), before any
# code of verify's runs: Python's handling, a LIMIT.
PYTHON_STARTUP_CASES = [("SIGINT 0.02 s into start-up", 60, lambda out: _after(0.02, signal.SIGINT), {})]


def _twice(send):
    def both(proc: subprocess.Popen, err_path: Path) -> None:
        send(proc, err_path)
        time.sleep(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    return both


# -- 5. processes left behind by a killed command -----------------------------------------------------

def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_bytes().rpartition(b")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """The processes below ``pid``, from /proc (tests/test_exit.py uses these too)."""
    children, found, todo = children_by_parent(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie, ended but not yet reaped, is not)."""
    running = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0] not in (b"Z", b"X"):
                running.add(pid)
        except (OSError, IndexError):
            pass
    return running


def left_running(pids: set[int], seconds: float = 5.0) -> set[int]:
    """Those of ``pids`` still running ``seconds`` from now (or sooner, once none is); each is
    then killed, so that nothing outlives the try."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and running(pids):
        time.sleep(0.05)
    left = running(pids)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


# (argv, processes below the command to wait for, seconds after that before the SIGKILL)
ORPHAN_CASES = [(["run", "--jobs", "2", "--examples", "100000", "--max-depth", "3"], 2, delay)
                for delay in (0.0, 0.5, 2.0)]
ORPHAN_CASES += [(["check", "--impl", "HOSTILE:sleeps_past_the_limit", "--isolate", "--time-limit", "60",
                   "--examples", "4", "--max-depth", "2"], 1, delay) for delay in (0.0, 0.5)]
ORPHAN_CASES += [(["check", "--impl", "HOSTILE:correct", "--isolate", "--jobs", "2", "--examples", "100000",
                   "--max-depth", "2"], 2, delay) for delay in (0.5, 2.0)]


def orphan_try(tally: Tally, argv: list[str], at_least: int, delay: float, cwd: Path, out: Path) -> None:
    """`verify ARGV`, SIGKILLed ``delay`` s after ``at_least`` processes run below it: wrong if any
    of them still runs 5 s later (each is killed then)."""
    proc = subprocess.Popen([*VERIFY, *argv, "--out", str(out)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    below: set[int] = set()
    while time.monotonic() < deadline and len(below) < at_least and proc.poll() is None:
        time.sleep(0.05)
        below = descendants(proc.pid)
    time.sleep(delay)
    below |= descendants(proc.pid)
    proc.kill()
    proc.wait()
    left = left_running(below)
    tally.add(f"{len(left)} of {len(below)} left after SIGKILL {delay} s in: {' '.join(argv)}",
              hang=len(below) < at_least, lost=report_state(out) is not None, wrong=bool(left))


# -- the run --------------------------------------------------------------------------------------

GROUPS = ["specs", "flags", "hostile", "signals", "orphans"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=2000, help="spec strings (in-process driver)")
    ap.add_argument("--spec-subprocesses", type=int, default=12, help="spec strings also run as `verify check`")
    ap.add_argument("--flag-subprocesses", type=int, default=8, help="flag combinations also run as `verify`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=2, help="subprocesses at once")
    ap.add_argument("--only", nargs="*", default=None,
                    choices=GROUPS, help="groups to run (default all)")
    args = ap.parse_args(argv)
    groups = args.only or GROUPS
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="verify-fuzz-"))
    cwd = tmp / "cwd"
    cwd.mkdir()
    tallies: dict[str, Tally] = {}
    long_errors: list[str] = []
    previous = tmp / "previous"
    first = run_verify(["run", "--examples", "4", "--max-depth", "1", "--out", str(previous)], cwd, timeout=120)
    assert first.status == 0 and report_state(previous) is None, first.err
    before = (previous / "report.json").read_bytes()
    counter = iter(range(10 ** 9))

    def fresh_out() -> Path:
        out = tmp / f"out{next(counter)}"
        shutil.copytree(previous, out)
        return out

    def subprocess_try(tally: Tally, argv: list[str], writes: bool, *, timeout=120, env=None,
                       signal_for=None, killed_ok: bool = False, expect: int | None = None,
                       one_line: bool = False) -> None:
        out = fresh_out()
        uses_out = "OUT" in argv
        argv = [str(out) if a == "OUT" else a for a in argv]
        run = run_verify(argv, cwd, timeout=timeout, env=env,
                         signal_when=signal_for(out) if signal_for else None)
        lost = report_lost(out, before, run) if writes or uses_out else report_state(out) is not None
        traceback = has_traceback(run) and not (killed_ok and run.status == -signal.SIGKILL)
        traceback = traceback or (one_line and len(run.err.splitlines()) > 1)
        wrong = expect is not None and run.status is not None and run.status != expect
        tally.add(f"exit {run.status}: {' '.join(argv)}"[:200], traceback=traceback, hang=run.status is None,
                  lost=lost, wrong=wrong)

    jobs = []
    if "specs" in groups:
        specs = spec_strings(args.specs, args.seed)
        tallies["spec strings (in-process)"] = t = Tally()
        argvs = [["check", s, "--max-memory", "256M"] for s in specs]
        for argv, r in zip(argvs, run_in_process(argvs, cwd, long_errors)):
            t.add(f"exit {r['status']}: {' '.join(argv)} {r['raised'] or ''}", traceback=in_process_traceback(r),
                  hang=r["hang"])
        tallies["spec strings (subprocess)"] = t = Tally()
        rng = random.Random(args.seed + 1)
        sample = [s for s in rng.sample(specs, min(len(specs), 4 * args.spec_subprocesses))
                  if "\0" not in s and len(s) < 100000][:args.spec_subprocesses]
        jobs += [(t, ["check", s, "--max-memory", "256M"], False, {}) for s in sample]
    if "flags" in groups:
        tallies["flag combinations (in-process)"] = t = Tally()
        flags = flag_cases(tmp)
        outs = [fresh_out() for _ in flags]
        argvs = [[str(out) if a == "OUT" else a for a in argv] for (argv, _), out in zip(flags, outs)]
        for (argv, writes), out, shown, r in zip(flags, outs, argvs, run_in_process(argvs, cwd, long_errors)):
            run = Run(r["status"], "", "")
            lost = report_lost(out, before, run) if writes or "OUT" in argv else report_state(out) is not None
            t.add(f"exit {r['status']}: {' '.join(shown)} {r['raised'] or ''}", traceback=in_process_traceback(r),
                  hang=r["hang"], lost=lost)
        tallies["flag combinations (subprocess)"] = t2 = Tally()
        rng = random.Random(args.seed + 2)
        jobs += [(t2, argv, writes, {}) for argv, writes in rng.sample(flags, args.flag_subprocesses)]
    if "hostile" in groups:
        hostile = tmp / "hostile.py"
        hostile.write_text(HOSTILE)
        handled, limit = Tally(), Tally()
        tallies["hostile impls"], tallies["hostile impls without --isolate (LIMIT)"] = handled, limit
        for fn, flags, kind in HOSTILE_CASES:
            argv = ["check", "--impl", f"{hostile}:{fn}", "--examples", "8", "--max-depth", "2",
                    "--out", "OUT", *flags]
            timeout = 60 if kind == "HANDLED" else 30
            group = handled
            if fn in STREAMS:
                group = tallies.setdefault("hostile: standard streams", Tally())
            elif fn in SPEC_WRITERS:
                group = tallies.setdefault("hostile: writes into its spec", Tally())
            elif fn in NOT_PLAIN:
                group = tallies.setdefault("hostile: not plain arrays", Tally())
            expect = EXPECTED_STATUS.get(fn) if kind == "HANDLED" else None
            jobs.append((group if kind == "HANDLED" else limit, argv, True, {"timeout": timeout, "expect": expect}))
    if "signals" in groups:
        tallies["signals"], tallies["signals at start-up"] = t, startup = Tally(), Tally()
        tallies["signals in Python's start-up (LIMIT)"] = python_startup = Tally()
        for tally, scenarios in ((t, SIGNAL_CASES), (startup, STARTUP_CASES), (python_startup, PYTHON_STARTUP_CASES)):
            for name, examples, signal_for, env in scenarios:
                argv = ["run", "--examples", str(examples), "--max-depth", "3", "--out", "OUT",
                        "--jobs", env.pop("JOBS", "1")]
                at_start = tally is startup
                jobs.append((tally, argv, True, {"env": env, "signal_for": signal_for, "killed_ok": True,
                                                 "expect": 130 if at_start else None, "one_line": at_start}))
    orphans = []
    if "orphans" in groups:
        tallies["orphans after SIGKILL"] = Tally()
        hostile = tmp / "hostile.py"
        hostile.write_text(HOSTILE)
        for argv, at_least, delay in ORPHAN_CASES:
            orphans.append(([a.replace("HOSTILE:", f"{hostile}:") for a in argv], at_least, delay))

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda j: subprocess_try(j[0], j[1], j[2], **j[3]), jobs))
    for argv, at_least, delay in orphans:          # one at a time: each counts the processes below it
        orphan_try(tallies["orphans after SIGKILL"], argv, at_least, delay, cwd, fresh_out())

    total = Tally()
    for name, t in tallies.items():
        print(t.line(name))
        for example in t.examples:
            print(f"    {example}")
        if "LIMIT" not in name:
            for k in ("tried", "clean", "tracebacks", "hangs", "lost", "wrong"):
                setattr(total, k, getattr(total, k) + getattr(t, k))
    print(total.line("all but LIMIT"))
    if long_errors:
        print(f"exit-2 errors not on one short line: {len(long_errors)} (e.g. {long_errors[0]!r})")
    print(f"{time.monotonic() - start:.0f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not (total.tracebacks or total.hangs or total.lost or total.wrong) else 1


if __name__ == "__main__":
    sys.exit(main())
