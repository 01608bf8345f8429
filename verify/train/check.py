"""`verify check --impl TARGET --optimizers sgd,adam`: TARGET is then a user's optimizer step,
step(params, grads, state, hyper) -> (params, state) (docs/byo.md). Hypothesis draws networks,
hyperparameters of the named optimizers and data; each draw is trained a few steps against
torch.optim (verify.train.search); the first failing training is shrunk and reported as
`verify train` reports one (trajectory.csv, report.html)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hypothesis import strategies as st

from handimpl.optim import OPTIMIZERS
from verify.byo.call import reset_warnings
from verify.core.stack import parse_any
from verify.errors import UsageError
from verify.report.frames import plural
from verify.report.output import check_out_dir
from verify.sweep.strategies import cases
from verify.train.command import load_step
from verify.train.report import FILES, summary_text, write_train_reports
from verify.train.search import SEARCH_STEPS, search

DEFAULT_OUT = Path("reports") / "impl-optimizers"
DEFAULT_EXAMPLES = 30
MAX_WIDTH, MAX_BATCH, MAX_DEPTH = 6, 4, 3      # small networks: the update's bugs show at any size


RUN_HELP = ("also draw one of these optimizers and its hyperparameters for each case, and train "
            f"handimpl.optim's against torch.optim for {SEARCH_STEPS} steps on the case's data, each step "
            f"judged from torch's state ({', '.join(OPTIMIZERS)}, or all; docs/training.md; default: none)")
CHECK_HELP = ("check TARGET as an optimizer step, step(params, grads, state, hyper) -> (params, "
              f"state), on drawn hyperparameters of these optimizers ({', '.join(OPTIMIZERS)}, or all); "
              "each draw is trained a few steps against torch.optim (default: none; TARGET is a "
              "backprop; docs/byo.md)")


def add_optimizers_option(p: argparse.ArgumentParser, help: str = CHECK_HELP) -> None:
    """--optimizers A,B for `verify check --impl` (a user's step) and `verify run` (handimpl's):
    the same names, drawn by the same strategy (verify.sweep.strategies.optimizer_specs)."""
    p.add_argument("--optimizers", default=None, metavar="A,B", help=help)


def optimizer_names(text: str) -> list[str]:
    """The names --optimizers gives ('all': every registered optimizer); an unknown or missing one
    is a UsageError, one line with the valid choices."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(OPTIMIZERS)
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise UsageError(f"--optimizers: unknown optimizer {unknown[0] if unknown else '(none given)'!r}; "
                         f"valid: {', '.join(OPTIMIZERS)}, or all")
    return list(dict.fromkeys(names))


def check_optimizers_command(args: argparse.Namespace) -> int:
    names = optimizer_names(args.optimizers)
    if not args.impl:
        raise UsageError("--optimizers checks a user's step: give --impl TARGET (step(params, grads, state, hyper))")
    examples = args.examples or DEFAULT_EXAMPLES
    if args.spec:
        specs = st.tuples(st.just(parse_any(args.spec)), st.just(args.seed), st.just(args.batch or 4))
    else:
        try:
            specs = cases(max_depth=min(args.max_depth or MAX_DEPTH, MAX_DEPTH),
                          max_width=min(args.max_width or MAX_WIDTH, MAX_WIDTH),
                          max_batch=min(args.max_batch or MAX_BATCH, MAX_BATCH),
                          architectures=args.architectures, activations=args.activations, losses=args.losses,
                          dtypes=args.dtypes)
        except ValueError as e:
            raise UsageError(str(e)) from None
    out = check_out_dir(args.out or DEFAULT_OUT, FILES.values())
    step = load_step(args.impl)
    reset_warnings()
    print(f"verify check --impl {args.impl} --optimizers {','.join(names)}: up to "
          f"{plural(examples, 'training')} of {SEARCH_STEPS} steps (seed {args.seed})", flush=True)
    found = search(step, impl=args.impl, specs=specs, optimizers=names, examples=examples, seed=args.seed,
                   time_limit=10.0 if args.time_limit is None else (args.time_limit or None), isolate=args.isolate)
    shown = found.minimal or (found.tried[-1] if found.tried else None)
    if shown is None:
        raise UsageError("no training could be drawn")
    paths = write_train_reports(shown, out)
    if found.minimal is None:
        print(f"PASS: all {plural(len(found.tried), 'training')} agree with torch.optim at every step")
        print(f"report (the last training): {paths['html']}")
        return 0
    hung = found.minimal.error.startswith("CallTimedOut")
    shown_as = ("the training that hung (not shrunk: each call would hang again)" if hung
                else "the smallest failing one (hypothesis shrank it)")
    print(f"FAIL at training {found.first_failure}; {shown_as}:")
    print(f"  {found.minimal.repro}")
    print(f"  {summary_text(found.minimal)}")
    print(f"report: {paths['html']}")
    return 1
