"""`verify layers FILE_OR_MODULE`: sweep a module's layer functions, print one line per pair,
write the reports; exit 0 when every pair found agrees, 1 when any disagrees (2, bad input, is
the CLI's: a UsageError)."""
from __future__ import annotations

import argparse

from verify.errors import UsageError
from verify.layers.families import FAMILIES
from verify.layers.report import (
    DEFAULT_OUT,
    EXPLAIN_DIR,
    FILES,
    GRADESCOPE,
    terminal_row,
    verdict_text,
    write_layer_reports,
)
from verify.layers.run import DEFAULT_EXAMPLES, check_layers, load_module, parse_reference
from verify.report.frames import plural
from verify.report.output import check_out_dir

HELP = ("Find the forward/backward layer functions of the CS231n convention in a module "
        "(affine_forward/affine_backward, relu_*, batchnorm_* with bn_param, dropout_*, "
        "conv_*_naive, max_pool_*_naive, spatial_batchnorm_*, layernorm_*, spatial_groupnorm_*, "
        "softmax_loss, svm_loss) and check each pair against torch on hypothesis-drawn cases. "
        "Loading FILE runs its top-level code, as importing it would.")


def add_layers_parser(sub, positive, seed, seconds) -> argparse.ArgumentParser:
    p = sub.add_parser("layers", help="check hand-written layer functions (CS231n convention) against torch",
                       description=HELP)
    p.add_argument("target", metavar="FILE_OR_MODULE", nargs="?",
                   help="path/to/layers.py or a module name (imported from the current directory too); "
                        "loading it runs its top-level code")
    p.add_argument("--model", default=None, metavar="FILE:CLASS",
                   help="check a whole model class of the convention instead (FullyConnectedNet, TwoLayerNet, "
                        "ThreeLayerConvNet: model.params, model.loss(X, y) -> (loss, grads)) against a torch twin "
                        "built from model.params; loading FILE runs its top-level code (default: none, the "
                        "layer functions of FILE_OR_MODULE are checked)")
    p.add_argument("--init", default=None, metavar="K=V,...",
                   help="with --model: constructor keywords held fixed, e.g. 'hidden_dims=[8,8],"
                        "normalization=batchnorm,dropout_keep_ratio=0.8,reg=0.1' (Python literals or words); "
                        "the class's other keywords are drawn (default: none, every keyword drawn)")
    p.add_argument("--only", default=None, metavar="A,B",
                   help=f"families to check (default: all): {', '.join(FAMILIES)}")
    p.add_argument("--examples", type=positive, default=DEFAULT_EXAMPLES, metavar="N",
                   help=f"cases per function pair (default: {DEFAULT_EXAMPLES})")
    p.add_argument("--seed", type=seed, default=0, metavar="S",
                   help="sweep seed: the same seed draws the same cases (default: 0)")
    p.add_argument("--out", default=None, metavar="DIR", help=f"report directory (default: {DEFAULT_OUT})")
    p.add_argument("--dropout-p", choices=("keep", "drop"), default=None,
                   help="what dropout_param['p'] is: the keep probability (later versions of the "
                        "convention) or the drop probability (early ones); default: read from "
                        "dropout_forward's docstring, else keep (the report says which)")
    p.add_argument("--time-limit", type=seconds, default=10.0, metavar="SECONDS",
                   help="stop a call of a user function after this long (default: 10; 0: none)")
    p.add_argument("--format", choices=("report", "gradescope"), default="report",
                   help="gradescope: also write the autograder's results.json in --out, one test per pair "
                        "(each pair found, or each named by --only, absent ones scoring 0), 1 point each, "
                        "all or nothing (default: report)")
    p.add_argument("--reference", default=None, metavar="fd|FAMILY=fd,...",
                   help="judge a function with no torch counterpart (makemore's batch norm with the unbiased "
                        "variance) by the finite-difference referee alone: its backward against finite "
                        "differences of its own forward; fd for every family that can be, or per family, "
                        "e.g. batchnorm=fd (default: torch for all; the report names the functions judged by fd)")
    p.add_argument("--isolate", action="store_true",
                   help="run each call of a user function in a child process, killed when it outlives "
                        "the time limit: for code that ignores SIGALRM, catches BaseException or ends "
                        "the process (slower)")
    return p


def layers_command(args: argparse.Namespace) -> int:
    if args.model or args.init is not None:
        return _model_command(args)
    if not args.target:
        raise UsageError("verify layers: give FILE_OR_MODULE (layer functions) or --model FILE:CLASS (a whole model)")
    only = [t.strip() for t in args.only.split(",") if t.strip()] if args.only else None
    unknown = sorted(set(only or ()) - set(FAMILIES))
    if unknown:
        raise UsageError(f"--only: unknown {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    reference = parse_reference(args.reference)
    out, gradescope = _out_dir(args)
    module = load_module(args.target)
    print(f"verify layers {args.target}: {plural(args.examples, 'case')} per pair (seed {args.seed})", flush=True)

    def tick(pair) -> None:
        print(terminal_row(pair), flush=True)

    result = check_layers(module, only=only, examples=args.examples, seed_value=args.seed,
                          dropout_p=args.dropout_p, time_limit=args.time_limit, isolate=args.isolate,
                          target=args.target, progress=tick, reference=reference)
    return _finish(result, out, gradescope)


def _model_command(args: argparse.Namespace) -> int:
    """`verify layers --model FILE:CLASS [--init K=V,...]`: one row, the same reports and exit codes."""
    from verify.layers.model import check_model, model_family
    if not args.model:
        raise UsageError("--init applies to --model FILE:CLASS")
    if args.target:
        raise UsageError(f"verify layers: give FILE_OR_MODULE or --model, not both "
                         f"({args.target!r} and {args.model!r})")
    if args.only:
        raise UsageError("--only applies to a module of layer functions, not to --model")
    out, gradescope = _out_dir(args)
    prepared = model_family(args.model, args.init, args.dropout_p)
    print(f"verify layers --model {args.model}: {plural(args.examples, 'case')} (seed {args.seed})", flush=True)
    result = check_model(args.model, args.init, examples=args.examples, seed_value=args.seed,
                         time_limit=args.time_limit, isolate=args.isolate, dropout_p=args.dropout_p,
                         prepared=prepared)
    for pair in result.pairs:
        print(terminal_row(pair), flush=True)
    return _finish(result, out, gradescope)


def _out_dir(args: argparse.Namespace) -> tuple[str, bool]:
    """(the report directory, whether results.json is written), checked writable first."""
    out = args.out or DEFAULT_OUT
    gradescope = args.format == "gradescope"
    check_out_dir(out, [*FILES.values(), EXPLAIN_DIR, *([GRADESCOPE] if gradescope else [])])
    return out, gradescope


def _finish(result, out: str, gradescope: bool) -> int:
    """Write the reports, print the verdict and where they are; the exit status."""
    paths = write_layer_reports(result, out, gradescope=gradescope)
    print(verdict_text(result))
    print(f"report: {paths['html']}")
    for key, path in paths.items():
        if key.startswith("explain:"):
            print(f"explain {key.partition(':')[2]}: {path}")
    if gradescope:
        print(f"autograder results: {paths['gradescope']}")
    return 0 if result.passed else 1
