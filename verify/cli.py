"""The `verify` command: check, run, mutants, explain.

Exit status everywhere: 0 all agree, 1 a discrepancy, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import pandas as pd

from handimpl import UnknownNameError

from . import __version__
from .spec import SpecError
from .sweep import DEFAULT_EXAMPLES


class UsageError(ValueError):
    """Bad input from the command line: reported as one line, exit status 2."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


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


def add_sweep_options(p: argparse.ArgumentParser, *, out: str) -> None:
    """The options `verify run` and `verify check --impl` share (``out``: the default report
    directory, for the help text)."""
    p.add_argument("--examples", type=_positive, default=DEFAULT_EXAMPLES, metavar="N",
                   help=f"number of random cases (default: {DEFAULT_EXAMPLES})")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="sweep seed: the same seed writes the same CSV files (default: 0)")
    p.add_argument("--out", default=None, metavar="DIR", help=f"report directory (default: {out})")
    p.add_argument("--activations", type=_csv, default=None, metavar="A,B",
                   help="comma-separated activation names to draw from (default: all)")
    p.add_argument("--losses", type=_csv, default=None, metavar="L,M",
                   help="comma-separated loss names to draw from (default: all)")
    p.add_argument("--dtypes", type=_csv, default=None, metavar="D,E",
                   help="float32, float64 or both (default: both)")
    p.add_argument("--max-depth", type=_positive, default=4, metavar="D",
                   help="most layers a drawn network has (default: 4)")
    p.add_argument("--max-width", type=_positive, default=16, metavar="W",
                   help="most units a drawn layer has (default: 16)")
    p.add_argument("--max-batch", type=_positive, default=16, metavar="M",
                   help="largest drawn batch size m (default: 16)")
    p.add_argument("--jobs", type=_positive, default=1, metavar="J",
                   help="worker processes; the output does not depend on it (default: 1)")


CASE_COLUMNS = ["tensor", "shape", "max_abs_err", "max_rel_err", "norm_rel_err", "max_ulp",
                "worst_index", "hand", "torch", "bad", "passed", "note"]


def case_table(result) -> pd.DataFrame:
    """One row per compared tensor of a CaseResult, for the terminal (no rows when the
    implementation raised before anything could be compared)."""
    rows = [{
        "tensor": r.name, "shape": "x".join(map(str, r.shape)) or "()",
        "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err, "norm_rel_err": r.norm_rel_err,
        "max_ulp": r.max_ulp, "worst_index": str(r.worst_index), "hand": r.hand_value,
        "torch": r.torch_value, "bad": r.n_mismatched, "passed": "yes" if r.passed else "NO",
        "note": r.problem,
    } for r in result.records]
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def cmd_check(args: argparse.Namespace) -> int:
    if args.time_limit is not None and not args.impl:
        raise UsageError("--time-limit applies to --impl (handimpl's own backprop has no limit)")
    if args.impl and not args.spec:
        from .impl_sweep import check_impl_command
        return check_impl_command(args)
    if not args.spec:
        raise UsageError("give a SPEC (e.g. '2-2-1:sigmoid:quadratic') or --impl TARGET")
    import torch

    from .check import check
    from .diagnose import describe_case
    impl = None
    if args.impl:                      # one case of a user implementation, as a repro line says
        from .impl import load_target, reset_warnings
        impl = load_target(args.impl)
        reset_warnings()
    # One torch thread, as a sweep runs its cases: float32 sums split over more threads round
    # differently, and a repro line must print the numbers of the report it came from.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = check(args.spec, seed=args.seed, batch=args.batch or 4, impl=impl,
                       time_limit=args.time_limit)
    finally:
        torch.set_num_threads(threads)
    table = case_table(result)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.float_format", "{:.3g}".format):
        print(f"{result.spec}  seed={result.seed}  batch={result.batch}  "
              f"(x scale {result.scale:g}, zero fraction {result.zero_fraction:g})")
        if len(table):
            print(table.drop(columns=["note"] if not table["note"].any() else []).to_string(index=False))
    first = result.first_divergence
    if result.passed:
        print(f"PASS: all {len(result.records)} tensors agree")
        return 0
    if result.records:
        print(f"FAIL: {sum(not r.passed for r in result.records)} of {len(result.records)} tensors "
              f"differ; first to diverge: {first.name if first else '-'}")
    else:
        print("FAIL: nothing could be compared")
    print(describe_case(result))
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    from .sweep import run_command
    return run_command(args)


def cmd_mutants(args: argparse.Namespace) -> int:
    from .mutants import mutants_command
    return mutants_command(args)


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_command
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
    add_sweep_options(p, out="reports/impl")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="hypothesis sweep of random networks -> reports",
                       description="Draw random cases, check each against torch, write the reports.")
    add_sweep_options(p, out="reports/latest")
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
    p.add_argument("spec", nargs="?", metavar="SPEC", help="the network to explain")
    p.add_argument("--tutorial-example", action="store_true",
                   help="work through the tutorial's 2-2-1 sigmoid example instead of a SPEC")
    p.add_argument("--seed-example", action="store_true", dest="tutorial_example",
                   help=argparse.SUPPRESS)
    p.add_argument("--seed", type=_seed, default=None, metavar="S",
                   help="data seed of the case (default: the first seed, from 0 up, whose case "
                        "is easy to follow: moderate inputs, nothing saturated, no zero rows)")
    p.add_argument("--batch", type=_positive, default=None, metavar="M",
                   help="batch size m (default: 2)")
    p.add_argument("--format", choices=("text", "md", "html"), default="text",
                   help="output format (default: text)")
    p.add_argument("--out", default=None, metavar="FILE", help="write to FILE (default: standard output)")
    p.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # argparse already printed its one-line message
        return 0 if e.code == 0 else 2
    try:
        return args.func(args)
    except (SpecError, UnknownNameError, UsageError) as e:
        print(f"verify: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported verify.cli, not this __main__ copy: the errors other modules raise are
    # verify.cli.UsageError, which a UsageError defined here again would not catch.
    from verify.cli import main as _main
    sys.exit(_main())
