"""verify train's two error rates: false alarms on correct optimizers, and power.

1. False alarms. Hypothesis draws ``--cases`` trainings (dense networks and layer stacks up to
   depth 3, both dtypes, every optimizer with drawn hyperparameters, data seeds) and trains
   handimpl, and the student-style Adam of tests/fixtures/optim_steps.py, ``--steps`` steps against
   torch.optim. A training whose one-step comparison fails is a false alarm; the target is 0. The
   largest one-step error/allowance of a parameter or state tensor in each training is summarised
   (how far below its bound a correct step stays).
2. Power. Each optimizer mutant of the zoo, and tests/fixtures/optim_steps.py's
   adam_without_bias_correction, is searched for ``--bug-seeds`` seeds with the default budget:
   killed or not, and the training it was first killed at.

    python benchmarks/train.py [--cases N] [--steps T] [--seed S] [--bug-seeds B]

Nothing is written to disk. Exit status 0 when there is no false alarm and every bug dies in every
seed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from verify.byo.call import load_target
from verify.mutants.run import DEFAULT_EXAMPLES, run_optimizer_mutant
from verify.mutants.zoo import OPTIM_ZOO
from verify.sweep.strategies import cases as drawn_cases
from verify.sweep.strategies import optimizer_specs
from verify.train.run import ONE_STEP, train
from verify.train.search import search

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "optim_steps.py"


def false_alarms(n: int, steps: int, seed: int) -> tuple[list[str], list[float], int, float]:
    """(one line per false alarm, the largest margin of each training, trainings run, seconds)."""
    student = load_target(f"{FIXTURES}:adam")
    alarms: list[str] = []
    margins: list[float] = []
    runs = [0]
    start = time.perf_counter()

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(drawn_cases(max_depth=3, max_width=5, max_batch=4, architectures=("dense", "stack")),
           optimizer_specs())
    def probe(case, optimizer):
        spec, data_seed, batch = case
        tries = [(None, "handimpl")]
        if optimizer.name in ("adam", "adamw"):
            tries.append((student, "optim_steps.py:adam"))
        for step, impl in tries:
            result = train(spec, optimizer, steps=steps, seed=data_seed, batch=batch, step_fn=step, impl=impl)
            runs[0] += 1
            worst = [r.margin for _, check, kind, r in result.records
                     if check == ONE_STEP and kind != "loss" and not math.isnan(r.margin)]
            margins.append(max(worst, default=0.0))
            if not result.passed:
                first = result.first_divergence
                alarms.append(f"{result.repro}: {first.name if first else result.error}")

    probe()
    return alarms, margins, runs[0], time.perf_counter() - start


def power(seeds: int) -> list[tuple[str, list[int | None]]]:
    """(bug, the training each seed first killed it at, None where it survived)."""
    rows = []
    for mutant in OPTIM_ZOO:
        kills = [run_optimizer_mutant(mutant, examples=DEFAULT_EXAMPLES, seed=s, shrink=False).examples_to_kill
                 for s in range(seeds)]
        rows.append((mutant.name, kills))
    buggy = load_target(f"{FIXTURES}:adam_without_bias_correction")
    specs = drawn_cases(max_depth=2, max_width=4, max_batch=3)
    kills = []
    for s in range(seeds):
        found = search(buggy, impl="adam_without_bias_correction", specs=specs, optimizers=["adam"],
                       examples=DEFAULT_EXAMPLES, seed=s, shrink=False)
        kills.append(found.first_failure)
    rows.append(("optim_steps.py:adam_without_bias_correction", kills))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="drawn trainings (default: 300)")
    parser.add_argument("--steps", type=int, default=4, help="steps per training (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed of the draws (default: 0)")
    parser.add_argument("--bug-seeds", type=int, default=3, help="seeds per bug (default: 3)")
    args = parser.parse_args(argv)

    alarms, margins, runs, seconds = false_alarms(args.cases, args.steps, args.seed)
    m = np.asarray(margins)
    print(f"false alarms: {len(alarms)} in {runs} trainings of {args.steps} steps ({args.cases} draws, "
          f"{seconds:.1f} s, {1000 * seconds / max(runs, 1):.0f} ms a training)")
    if len(m):
        q = np.quantile(m, [0.5, 0.9, 0.99, 1.0])
        print(f"largest one-step error/allowance per training: median {q[0]:.3g}, 90% {q[1]:.3g}, "
              f"99% {q[2]:.3g}, max {q[3]:.3g}")
    for line in alarms[:20]:
        print(f"  FALSE ALARM {line}")
    rows = power(args.bug_seeds)
    print(f"power ({args.bug_seeds} seeds, {DEFAULT_EXAMPLES} trainings each):")
    for name, kills in rows:
        shown = ", ".join("survived" if k is None else str(k) for k in kills)
        print(f"  {name:<45} first killed at training {shown}")
    survived = any(k is None for _, kills in rows for k in kills)
    return 1 if alarms or survived else 0


if __name__ == "__main__":
    sys.exit(main())
