"""`verify train SPEC --optimizer NAME[:KEY=VALUE,...] --steps T`: train both sides, compare every
step, write the reports; exit 0 when every one-step comparison agrees, 1 when any diverges (2, bad
input, is the CLI's: one line)."""
from __future__ import annotations

import argparse
import inspect

from verify.byo.call import load_target, reset_warnings
from verify.core.optim_spec import OptimizerSpec
from verify.core.stack import StackSpec, parse_any
from verify.errors import UsageError
from verify.report.output import check_out_dir
from verify.train.report import DEFAULT_OUT, FILES, drift_text, summary_text, write_train_reports
from verify.train.run import DEFAULT_STEPS, StepFn, train

MAX_STEPS = 100_000


def add_train_parser(sub, positive, seed, seconds) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train both sides for T steps with an optimizer, compare every step",
                       description="Train handimpl (or your optimizer step) and torch.optim on the same "
                                   "fixed data; compare the loss, every parameter and every optimizer "
                                   "state tensor at every step (docs/training.md).")
    p.add_argument("spec", metavar="SPEC", help="WIDTHS:ACTIVATIONS:LOSS or a layer stack INPUT>LAYER>...|LOSS")
    p.add_argument("--optimizer", default="sgd", metavar="NAME[:KEY=VALUE,...]",
                   help="e.g. adam:lr=1e-3,betas=0.9/0.999 (default: sgd); names: sgd, adam, adamw, "
                        "rmsprop, adagrad, with torch.optim's keywords")
    p.add_argument("--steps", type=positive, default=DEFAULT_STEPS, metavar="T",
                   help=f"training steps (default: {DEFAULT_STEPS})")
    p.add_argument("--impl", default=None, metavar="TARGET",
                   help="your optimizer step, step(params, grads, state, hyper) -> (params, state): "
                        "package.module:function or path/to/file.py:function (default: handimpl's)")
    p.add_argument("--batch", type=positive, default=4, metavar="M", help="batch size m (default: 4)")
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="data seed (default: 0)")
    p.add_argument("--out", default=None, metavar="DIR", help=f"report directory (default: {DEFAULT_OUT})")
    p.add_argument("--time-limit", type=seconds, default=10.0, metavar="SECONDS",
                   help="stop a call of your step after this long (default: 10; 0: none)")
    p.add_argument("--isolate", action="store_true",
                   help="run each call of your step in a child process, killed when it outlives the time "
                        "limit: for code that ignores SIGALRM, catches BaseException or ends the process (slower)")
    return p


def load_step(target: str) -> StepFn:
    """The user's optimizer step ``target`` (verify.byo.call.load_target), refused in one line when
    its signature cannot take the contract's four arguments: most often the one-step
    ``backprop.step(params, grads, lr)`` of `verify check` (docs/byo.md)."""
    fn = load_target(target)
    try:
        signature = inspect.signature(fn)
    except Exception:                    # noqa: BLE001 - no signature to read (user code may raise): the call will tell
        return fn
    try:
        signature.bind(None, None, None, None)
    except TypeError:
        raise UsageError(f"--impl {target!r}: its signature {signature} cannot take step(params, grads, state, "
                         f"hyper); backprop.step(params, grads, lr) is verify check's one-step contract "
                         f"(docs/byo.md)") from None
    return fn


def train_command(args: argparse.Namespace) -> int:
    if args.steps > MAX_STEPS:
        raise UsageError(f"--steps {args.steps}: at most {MAX_STEPS:,}")
    # the step's file first: it may register an activation the SPEC names (@verify.activation)
    step_fn = load_step(args.impl) if args.impl else None
    spec = parse_any(args.spec)
    optimizer = OptimizerSpec.parse(args.optimizer)
    if isinstance(spec, StackSpec) and args.batch < spec.min_batch:
        raise UsageError(f"--batch {args.batch}: {spec} needs at least {spec.min_batch} examples")
    out = check_out_dir(args.out or DEFAULT_OUT, FILES.values())
    if args.impl:
        reset_warnings()
    print(f"verify train {spec}  --optimizer {optimizer}  {args.steps} steps  seed {args.seed}  "
          f"batch {args.batch}", flush=True)
    result = train(spec, optimizer, steps=args.steps, seed=args.seed, batch=args.batch, step_fn=step_fn,
                   impl=args.impl or "handimpl", time_limit=args.time_limit or None, isolate=args.isolate,
                   partial=True)
    paths = write_train_reports(result, out)
    print(summary_text(result))
    print(f"drift: {drift_text(result)}")
    if result.note:
        print(f"note: {result.note}")
    print(f"report: {paths['html']}")
    if result.interrupted is not None:
        return 130                      # 143 for SIGTERM (verify.cli.app.main)
    return 0 if result.passed else 1
