"""verify layers --model's two error rates: false alarms on correct models, and power.

1. False alarms. The reference models of tests/fixtures/cs231n_models.py (FullyConnectedNet with
   every keyword drawn, and with the issue's fixed keywords; TwoLayerNet; ThreeLayerConvNet) are
   swept, ``--cases`` cases each for each of ``--seeds`` seeds. A sweep that disagrees on any case
   is a false alarm; the target is 0.
2. Power. Each planted bug of tests/fixtures/cs231n_model_bugs.py (one line of a reference model
   changed) is swept with the default budget for each seed: killed or not, and the 1-based index
   of the first failing case.

    python benchmarks/layer_models.py [--cases N] [--seeds K] [--bug-seeds B] [--quiet]

Nothing is written to disk. Exit status 0 when there is no false alarm and every bug dies in every
seed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from verify.layers.model import check_model
from verify.layers.run import DEFAULT_EXAMPLES

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
MODELS = FIXTURES / "cs231n_models.py"
REFERENCES = (("FullyConnectedNet", None),
              ("FullyConnectedNet", "hidden_dims=[8,8],normalization=batchnorm,dropout_keep_ratio=0.8,reg=0.1"),
              ("TwoLayerNet", None), ("ThreeLayerConvNet", None))


def false_alarms(cases: int, seeds: int, say) -> tuple[int, list[str]]:
    """(cases checked, one line per false alarm)."""
    total, alarms = 0, []
    for name, init in REFERENCES:
        for seed in range(1, seeds + 1):
            started = time.perf_counter()
            (pair,) = check_model(f"{MODELS}:{name}", init, examples=cases, seed_value=seed).pairs
            total += pair.cases
            if not pair.passed:
                record = pair.first.failing[0]
                alarms.append(f"{name} {init or ''} seed {seed}: {record.name} {record.problem or ''} "
                              f"{pair.first.case.describe()}")
            say(f"{name} {init or ''} seed {seed}: {pair.cases} cases, {time.perf_counter() - started:.0f} s")
    return total, alarms


def power(seeds: int, say) -> list[tuple[str, int, list[int]]]:
    """(bug, seeds that killed it, the first failing case's index in each)."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_model_bugs
    finally:
        sys.path.remove(str(FIXTURES))
    rows = []
    for bug in cs231n_model_bugs.BUGS:
        cls = cs231n_model_bugs.buggy(bug)
        found = []
        for seed in range(seeds):
            (pair,) = check_model(cls, examples=DEFAULT_EXAMPLES, seed_value=seed).pairs
            if not pair.passed:
                found.append(pair.cases)
        rows.append((bug, len(found), found))
        say(f"{bug}: killed in {len(found)} of {seeds} seeds")
    return rows


def main(argv: Sequence[str] | None = None, out=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="cases per model and seed (default: 300)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per reference model (default: 3)")
    parser.add_argument("--bug-seeds", type=int, default=10, help="seeds per planted bug (default: 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    total, alarms = false_alarms(args.cases, args.seeds, say)
    print(f"false alarms: {len(alarms)} sweeps in {total:,} cases of the reference models", file=out)
    for line in alarms:
        print(f"  {line}", file=out)
    rows = power(args.bug_seeds, say)
    print(f"power: {'bug':<28} killed  first failing case (median, max)", file=out)
    for bug, killed, found in rows:
        spread = f"{statistics.median(found):g}, {max(found)}" if found else "-"
        print(f"       {bug:<28} {killed}/{args.bug_seeds}   {spread}", file=out)
    return 0 if not alarms and all(k == args.bug_seeds for _, k, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
