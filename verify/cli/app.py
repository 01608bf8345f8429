"""The `verify` command: check, run, mutants, explain, layers, train.

Exit status everywhere: 0 all agree, 1 a discrepancy, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import pandas as pd
from hypothesis.configuration import set_hypothesis_home_dir

from verify.api import check_impl_command
from verify.byo.call import DEFAULT_OUT as IMPL_OUT
from verify.byo.call import load_target, reset_warnings
from verify.cli import limits
from verify.core.stack import StackSpec, parse_any
from verify.core.torch_ops import one_thread
from verify.errors import INPUT_ERRORS, UsageError
from verify.explain.layers import DEFAULT_BATCH as STACK_BATCH
from verify.explain.page import explain_command
from verify.harness import trace
from verify.harness.diagnose import describe_case
from verify.harness.localise import with_location
from verify.harness.referee import FD_ALL_MAX_EXAMPLES, FD_ALL_MAX_WIDTH, MODES, referee_case, validate_mode
from verify.harness.referee import summary_lines as referee_summary
from verify.layers.command import add_layers_parser, layers_command
from verify.meta import __version__
from verify.mutants.run import DEFAULT_OUT as MUTANTS_OUT
from verify.mutants.run import FILES as MUTANT_FILES
from verify.mutants.run import mutants_command
from verify.report.frames import FILES
from verify.report.output import Terminated, check_out_dir, check_out_file, short, terminate_as_interrupt
from verify.report.stream import KEEP, KEEP_ALL_UP_TO
from verify.report.write import conclude, recording
from verify.sweep.draw import blocks
from verify.sweep.progress import progress_reporter
from verify.sweep.run import DEFAULT_EXAMPLES, sweep
from verify.sweep.run import DEFAULT_OUT as RUN_OUT
from verify.sweep.strategies import OPTIONAL_KINDS, cases
from verify.train.check import RUN_HELP, add_optimizers_option, check_optimizers_command, optimizer_names
from verify.train.command import add_train_parser, train_command
from verify.train.sweep import check_trained


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _loss_csv(text: str) -> list[str]:
    """Loss entries, comma-separated, each maybe with pinned options (``NAME:KEY=VALUE,...``,
    verify.sweep.strategies.loss_entry): an item ``KEY=VALUE`` belongs to the entry before it."""
    entries: list[str] = []
    for item in _csv(text):
        if "=" in item and ":" not in item and entries:
            entries[-1] += "," + item
        else:
            entries.append(item)
    return entries


def _integer(minimum: int, what: str):
    """An argparse type: an integer >= minimum, else one line naming what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive = _integer(1, "a positive integer")
_seed = _integer(0, "a non-negative integer")


def _seconds(text: str) -> float:
    """An argparse type: seconds >= 0 (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _size(text: str) -> int:
    """An argparse type: a memory size ('4G', '512M', bytes)."""
    try:
        return limits.parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


SWEEP_DEFAULTS = {"max_depth": 4, "max_width": 16, "max_batch": 16, "jobs": 1}
SWEEP_ONLY = ("examples", "out", "activations", "losses", "dtypes", "architectures", "layers", "keep",
              *SWEEP_DEFAULTS)


def add_sweep_options(p: argparse.ArgumentParser, *, examples: int | None, out: str,
                      defaults: bool = True) -> None:
    """The options `verify run` and `verify check --impl` share (``out``: the default report
    directory, for the help text). Without ``defaults`` the sweep-only ones default to None, so
    that `verify check SPEC` can tell they were given (fill_sweep_defaults puts the defaults in
    for a sweep); the help texts state the defaults a sweep uses either way."""
    d = SWEEP_DEFAULTS if defaults else dict.fromkeys(SWEEP_DEFAULTS)
    p.add_argument("--examples", type=_positive, default=examples, metavar="N",
                   help=f"number of random cases (default: {DEFAULT_EXAMPLES})")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="sweep seed: the same seed writes the same CSV files (default: 0)")
    p.add_argument("--out", default=None, metavar="DIR", help=f"report directory (default: {out})")
    p.add_argument("--activations", type=_csv, default=None, metavar="A,B",
                   help="comma-separated activation names to draw from (default: all)")
    p.add_argument("--losses", type=_loss_csv, default=None, metavar="L,M",
                   help="comma-separated loss names to draw from (default: all); NAME:KEY=VALUE,... "
                        "pins options, e.g. cross_entropy:label_smoothing=0,target=index")
    p.add_argument("--dtypes", type=_csv, default=None, metavar="D,E",
                   help="float32, float64 or both (default: both)")
    p.add_argument("--max-depth", type=_positive, default=d["max_depth"], metavar="D",
                   help=f"most layers a drawn network has (default: {SWEEP_DEFAULTS['max_depth']})")
    p.add_argument("--max-width", type=_positive, default=d["max_width"], metavar="W",
                   help=f"most units a drawn layer has (default: {SWEEP_DEFAULTS['max_width']})")
    p.add_argument("--max-batch", type=_positive, default=d["max_batch"], metavar="M",
                   help=f"largest drawn batch size m (default: {SWEEP_DEFAULTS['max_batch']})")
    p.add_argument("--jobs", type=_positive, default=d["jobs"], metavar="J",
                   help=f"worker processes, at most {limits.JOBS_PER_CPU} per CPU and one per block of "
                        f"cases; the output does not depend on it (default: {SWEEP_DEFAULTS['jobs']})")
    p.add_argument("--architectures", type=_csv, default=None, metavar="A,B",
                   help="what to draw: dense (WIDTHS:ACTIVATIONS:LOSS networks), stack (layer stacks with "
                        "batch/layer/group norm, dropout, residual blocks) or both (default: both for "
                        "verify run, dense for --impl)")
    p.add_argument("--layers", type=_csv, default=None, metavar="K,L",
                   help="the layer kinds drawn stacks may hold besides linear, flatten and activations: "
                        f"{', '.join(OPTIONAL_KINDS)} (default: all)")
    p.add_argument("--strict", action="store_true",
                   help="judge by the tight allowance alone: a documented formula evaluated as written "
                        "(α(eᶻ − 1), log(1 + eᶻ)), which passes as imprecise by default, fails")
    p.add_argument("--referee", choices=MODES, default=None,
                   help="ask finite differences in float64 too (docs/verdict.md, the referee): fd on each "
                        "minimal counterexample (a failing SPEC), saying whose value it supports (yours, "
                        "torch's, both, neither) with its error bar, or that a kink makes the derivative a "
                        f"convention; fd-all on every case and tensor (at most {FD_ALL_MAX_EXAMPLES} examples, "
                        f"width and batch {FD_ALL_MAX_WIDTH}) (default: none, torch's verdict alone)")
    p.add_argument("--keep", choices=KEEP, default=None,
                   help="discrepancies.csv holds every row (all) or only the failing, imprecise and "
                        "near-failing ones (failing); cases.csv always has every case (default: all up to "
                        f"{KEEP_ALL_UP_TO:,} cases, failing above)")
    p.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                   help="refuse a run whose largest case (times --jobs) is estimated to need more "
                        f"(e.g. 8G; default: {limits.MEMORY_FRACTION:.0%}% of the memory available)")


def fill_sweep_defaults(args: argparse.Namespace) -> None:
    for key, value in SWEEP_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


# -- bad input, refused before any work ----------------------------------------------------------

def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _memory_limit(args: argparse.Namespace) -> tuple[int | None, str]:
    if args.max_memory is not None:
        return args.max_memory, "the --max-memory limit"
    limit = limits.default_memory_limit()
    return limit, f"{limits.MEMORY_FRACTION:.0%} of the memory available"


def _check_memory(args: argparse.Namespace, what: str, need: int) -> None:
    limit, which = _memory_limit(args)
    if limit is not None and need > limit:
        raise UsageError(f"{what} needs about {limits.human(need)} at its peak (estimated), more than "
                         f"{limits.human(limit)} ({which}); give --max-memory SIZE to allow more")


def validate_case(args: argparse.Namespace) -> None:
    """`verify check SPEC` (and `verify explain SPEC`): the spec parses, the flags apply to one
    case, the case fits in memory."""
    given = [_flag(k) for k in SWEEP_ONLY if getattr(args, k, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: not used when checking one SPEC (they are for sweeps: "
                         f"verify run, verify check --impl without a SPEC)")
    spec = parse_any(args.spec)
    batch = args.batch or 4
    if isinstance(spec, StackSpec):
        if batch < spec.min_batch:
            raise UsageError(f"--batch {batch}: {short(str(spec))} needs at least {spec.min_batch} examples "
                             f"(batch norm in training mode normalises over the batch)")
        _check_memory(args, f"{short(str(spec))} at batch {batch}", limits.BYTES_PER_VALUE * spec.values(batch))
        return
    _check_memory(args, f"{short(str(spec))} at batch {batch}", limits.case_bytes(spec.widths, batch))


def validate_sweep(args: argparse.Namespace, default_out, report_files) -> None:
    """`verify run` and `verify check --impl`: caps on --examples and --jobs, the largest case
    (times the worker processes) fits in memory, --out can take the report (made absolute)."""
    fill_sweep_defaults(args)
    try:                                # the bounds (names are checked against what is supported)
        cases(max_depth=args.max_depth, max_width=args.max_width, max_batch=args.max_batch)
    except ValueError as e:
        raise UsageError(str(e)) from None
    n = DEFAULT_EXAMPLES if args.examples is None else args.examples
    validate_mode(args.referee, examples=n, max_width=args.max_width, max_batch=args.max_batch)
    if n > limits.MAX_EXAMPLES:
        raise UsageError(f"--examples {n}: at most {limits.MAX_EXAMPLES:,} cases in one sweep "
                         f"(run several --seed values instead)")
    if args.jobs > limits.max_jobs():
        raise UsageError(f"--jobs {args.jobs}: at most {limits.max_jobs()} worker processes "
                         f"({limits.JOBS_PER_CPU} per CPU on this machine)")
    drawn = {"max_depth": args.max_depth, **({"optimizers": ()} if getattr(args, "optimizers", None) else {})}
    n_blocks = len(blocks(drawn, n, args.seed))
    workers = max(n_blocks, 2)          # still worker processes: one that ends fails its case alone
    if args.jobs > workers:
        print(f"verify: --jobs {args.jobs}: the {n} cases are drawn and checked in {n_blocks} "
              f"block{'s' if n_blocks != 1 else ''}, so {workers} worker processes", file=sys.stderr)
        args.jobs = workers
    _check_memory(args, f"the largest case of this sweep (depth {args.max_depth}, width {args.max_width}, "
                  f"batch {args.max_batch}){f' in each of {args.jobs} processes' if args.jobs > 1 else ''}",
                  limits.sweep_case_bytes(args.max_depth, args.max_width, args.max_batch) * args.jobs)
    args.out = str(check_out_dir(args.out or default_out, report_files))


def validate(args: argparse.Namespace) -> None:
    """Everything about the command line that can be refused before work starts (UsageError,
    SpecError, OutError: one line, exit 2)."""
    if args.command == "check" and args.optimizers is not None:
        return                          # an optimizer step's check validates its own (verify.train.check)
    if args.command == "check":
        if args.spec:
            if args.impl:               # its file may register an activation the SPEC names (@verify.activation)
                load_target(args.impl)
            validate_case(args)
        elif args.impl:
            if args.batch is not None:
                raise UsageError("--batch: not used by a sweep of --impl (give --max-batch, or a SPEC "
                                 "to check one case)")
            validate_sweep(args, IMPL_OUT, FILES.values())
    elif args.command == "run":
        if args.optimizers is not None:
            optimizer_names(args.optimizers)
        validate_sweep(args, RUN_OUT, FILES.values())
    elif args.command == "mutants":
        if args.examples is not None and args.examples > limits.MAX_EXAMPLES:
            raise UsageError(f"--examples {args.examples}: at most {limits.MAX_EXAMPLES:,} per mutant")
        args.out = str(check_out_dir(args.out or MUTANTS_OUT, MUTANT_FILES.values()))
    elif args.command == "explain":
        if args.spec and not args.tutorial_example:
            spec = parse_any(args.spec)
            if isinstance(spec, StackSpec):
                batch = max(args.batch or STACK_BATCH, spec.min_batch)
                if args.batch is not None and args.batch < spec.min_batch:
                    raise UsageError(f"--batch {args.batch}: {short(str(spec))} needs at least {spec.min_batch} "
                                     f"examples (batch norm in training mode normalises over the batch)")
                _check_memory(args, f"{short(str(spec))} at batch {batch}", limits.BYTES_PER_VALUE * spec.values(batch))
            else:
                batch = args.batch or 2
                _check_memory(args, f"{short(str(spec))} at batch {batch}", limits.case_bytes(spec.widths, batch))
        if args.out:
            args.out = str(check_out_file(args.out))
    elif args.command == "layers":
        if args.examples > limits.MAX_EXAMPLES:
            raise UsageError(f"--examples {args.examples}: at most {limits.MAX_EXAMPLES:,} per pair")


RUN_ARCHITECTURES = ("dense", "stack")    # what `verify run` draws by default

# The columns of `verify check SPEC`'s terminal table (cases.csv has verify.report.frames.CASE_COLUMNS).
TABLE_COLUMNS = ["tensor", "shape", "max_abs_err", "max_rel_err", "norm_rel_err", "max_ulp",
                "worst_index", "hand", "torch", "bad", "passed", "referee", "note"]


def case_table(result) -> pd.DataFrame:
    """One row per compared tensor of a CaseResult, for the terminal (no rows when the
    implementation raised before anything could be compared)."""
    rows = [{
        "tensor": r.name, "shape": "x".join(map(str, r.shape)) or "()",
        "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err, "norm_rel_err": r.norm_rel_err,
        "max_ulp": r.max_ulp, "worst_index": str(r.worst_index), "hand": r.hand_value,
        "torch": r.torch_value, "bad": r.n_mismatched, "passed": "yes" if r.passed else "NO",
        "referee": r.referee, "note": r.problem,
    } for r in result.records]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def cmd_check(args: argparse.Namespace) -> int:
    if args.time_limit is not None and not args.impl:
        raise UsageError("--time-limit applies to --impl (handimpl's own backprop has no limit)")
    if args.isolate and not args.impl:
        raise UsageError("--isolate applies to --impl (handimpl's own backprop runs in this process)")
    if args.optimizers is not None:
        return check_optimizers_command(args)
    if args.impl and not args.spec:
        return check_impl_command(args)
    if not args.spec:
        raise UsageError("give a SPEC (e.g. '2-2-1:sigmoid:quadratic') or --impl TARGET")
    impl = None
    if args.impl:                      # one case of a user implementation, as a repro line says
        impl = load_target(args.impl)
        reset_warnings()
    with one_thread():                 # as a sweep runs its cases: the repro line's numbers
        result = trace.check(args.spec, seed=args.seed, batch=args.batch or 4, impl=impl,
                             time_limit=args.time_limit, isolate=args.isolate, strict=args.strict)
        result = with_location(result, impl)
        if args.referee:
            result = referee_case(result, impl, every=args.referee == "fd-all", time_limit=args.time_limit,
                                  isolate=args.isolate, strict=trace.strict_or_default(args.strict))
    table = case_table(result)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.float_format", "{:.3g}".format):
        print(f"{result.spec}  seed={result.seed}  batch={result.batch}  "
              f"(x scale {result.scale:g}, zero fraction {result.zero_fraction:g})")
        if len(table):
            empty = [c for c in ("referee", "note") if not table[c].any()]
            print(table.drop(columns=empty).to_string(index=False))
    first = result.first_divergence
    if result.passed:
        print(f"PASS: all {len(result.records)} tensors agree")
        for line in referee_summary(result.spec, result.records):
            print(line)
        for r in result.records:
            if r.referee and r.referee != "both":
                print(f"  {r.referee_note}")
        return 0
    if result.records:
        print(f"FAIL: {sum(not r.passed for r in result.records)} of {len(result.records)} tensors "
              f"differ; first to diverge: {first.name if first else '-'}")
    else:
        print("FAIL: nothing could be compared")
    print(describe_case(result))
    for line in referee_summary(result.spec, result.records):
        print(line)
    return 1


def sweep_kwargs(args) -> dict:
    """sweep()'s keyword arguments from parsed `verify run` options."""
    return dict(examples=args.examples, seed=args.seed, activations=args.activations,
                losses=args.losses, dtypes=args.dtypes, layers=args.layers, max_depth=args.max_depth,
                max_width=args.max_width, max_batch=args.max_batch, jobs=args.jobs,
                architectures=args.architectures or list(RUN_ARCHITECTURES),
                **({"scheduler": args.scheduler} if getattr(args, "scheduler", None) else {}))


def cmd_run(args: argparse.Namespace) -> int:
    """`verify run`: sweep, write the reports, print a summary. Exit 0 agree, 1 discrepancies,
    2 bad input, 130 interrupted (the partial report is written)."""
    out = (Path(args.out) if args.out else RUN_OUT).absolute()
    optimizers = optimizer_names(args.optimizers) if args.optimizers is not None else None
    if optimizers:                      # each case's training too (verify.train.sweep)
        check_fn = functools.partial(check_trained, strict=bool(args.strict))
    else:
        check_fn = functools.partial(trace.check, strict=True) if args.strict else None
    n = DEFAULT_EXAMPLES if args.examples is None else args.examples
    # The referee adds its opinion to results after the sweep (to the distinct failures, or with
    # fd-all to every case), so with it the rows are written from memory once it has judged;
    # without it they are written as the cases come, the two CSV files in a spool.
    referee = None if not args.referee else \
        functools.partial(referee_case, every=args.referee == "fd-all", strict=bool(args.strict))
    with recording(out, n, args.keep, stream=referee is None) as recorder:
        progress = progress_reporter()
        try:
            result = sweep(**sweep_kwargs(args), check_fn=check_fn, progress=progress, optimizers=optimizers,
                           on_result=None if recorder is None else recorder.add,
                           referee=referee, referee_all=args.referee == "fd-all")
        except ValueError as e:
            raise UsageError(str(e)) from None
        finally:
            progress.close()
        return conclude(result, out, recorder=recorder)


def cmd_mutants(args: argparse.Namespace) -> int:
    return mutants_command(args)


def cmd_explain(args: argparse.Namespace) -> int:
    return explain_command(args)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block): 'verify run: error: ...'."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="verify", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="one case (SPEC), or a user implementation (--impl)",
                       description="Check one case (SPEC) tensor by tensor, or sweep a user "
                                   "implementation (--impl without SPEC).")
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="WIDTHS:ACTIVATIONS:LOSS[:KEY=VALUE,...], e.g. 2-2-1:sigmoid:quadratic")
    p.add_argument("--batch", type=_positive, default=None, metavar="M",
                   help="batch size m of the one case (default: 4)")
    p.add_argument("--impl", default=None, metavar="TARGET",
                   help="the implementation to check: package.module:function (imported from the "
                        "current directory too) or path/to/file.py:function (default: handimpl's)")
    p.add_argument("--time-limit", type=_seconds, default=None, metavar="SECONDS",
                   help="stop a call of the implementation after this long (default: 10; 0: none); "
                        "a sweep stops at the first case that runs past it")
    p.add_argument("--isolate", action="store_true",
                   help="run each call of the implementation in a child process, killed when it "
                        "outlives the time limit: for code that ignores SIGALRM, catches "
                        "BaseException, ends the process or leaves state behind (slower)")
    add_sweep_options(p, examples=None, out="reports/impl", defaults=False)
    add_optimizers_option(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="hypothesis sweep of random networks -> reports",
                       description="Draw random cases, check each against torch, write the reports.")
    add_sweep_options(p, examples=None, out="reports/latest")
    add_optimizers_option(p, RUN_HELP)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="send the blocks of cases to a Dask cluster: local:N (N worker processes here) or "
                        "tcp://HOST:PORT (a running dask scheduler; docs/scale.md); the output is that of "
                        "one process (needs pip install 'backprop-verify[dask]'; --jobs is not used; default: none, "
                        "local worker processes)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("mutants", help="run the harness on planted backprop bugs",
                       description="Plant classic backprop bugs in handimpl and show that the "
                                   "harness catches each.")
    p.add_argument("--seed", type=_seed, default=0, metavar="S", help="sweep seed (default: 0)")
    p.add_argument("--examples", type=_positive, default=None, metavar="N",
                   help="cases per mutant (default: 30)")
    p.add_argument("--out", default=None, metavar="DIR", help="report directory (default: reports/mutants)")
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser("explain", help="why each δ formula is what autograd computes",
                       description="Walk one case's backward pass, formula by formula, next to "
                                   "the autograd nodes torch built.")
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="the network to explain: a dense WIDTHS:ACTIVATIONS:LOSS or a layer stack "
                        "INPUT>LAYER>...|LOSS (batch norm, pooling, convolution, ...)")
    p.add_argument("--tutorial-example", action="store_true",
                   help="work through the tutorial's 2-2-1 sigmoid example instead of a SPEC")
    p.add_argument("--seed-example", action="store_true", dest="tutorial_example",
                   help=argparse.SUPPRESS)
    p.add_argument("--seed", type=_seed, default=None, metavar="S",
                   help="data seed of the case (default: the first seed, from 0 up, whose case "
                        "is easy to follow: moderate inputs, nothing saturated, no zero rows)")
    p.add_argument("--batch", type=_positive, default=None, metavar="M",
                   help="batch size m (default: 2; 3 for a layer stack)")
    p.add_argument("--format", choices=("text", "md", "html"), default="text",
                   help="output format (default: text)")
    p.add_argument("--out", default=None, metavar="FILE", help="write to FILE (default: standard output)")
    p.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                   help="refuse a case estimated to need more memory (e.g. 8G; default: "
                        f"{limits.MEMORY_FRACTION:.0%}% of the memory available)")
    p.set_defaults(func=cmd_explain)

    add_layers_parser(sub, _positive, _seed, _seconds).set_defaults(func=layers_command)
    add_train_parser(sub, _positive, _seed, _seconds).set_defaults(func=train_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # argparse already printed its one-line message
        return 0 if e.code == 0 else 2
    # hypothesis keeps its caches (the constants of local modules) in a directory of this run,
    # removed at the end, not in .hypothesis/ wherever the user stands; sweeps use no database.
    with tempfile.TemporaryDirectory(prefix="verify-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        terminated = []
        try:
            with terminate_as_interrupt(terminated.append):
                validate(args)
                status = args.func(args)
            return 143 if status == 130 and terminated else status
        except INPUT_ERRORS as e:
            print(f"verify: error: {e}", file=sys.stderr)
            return 2
        except Terminated:
            print("verify: terminated", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print("verify: interrupted", file=sys.stderr)
            return 143 if terminated else 130
        finally:
            set_hypothesis_home_dir(None)


def entry() -> None:
    """The `verify` command: exit with main()'s status once its work is done, even where user
    code left non-daemon threads running (the interpreter would wait for them forever at exit):
    then the output is flushed and the process ends at once, skipping the wait."""
    code = main()
    stray = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if stray:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)
