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

import sys
import time
from pathlib import Path
from typing import Sequence

from layer_functions import run  # benchmarks/: the report both benchmarks print

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
    return run(argv, out, description=__doc__.splitlines()[0], false_alarms=false_alarms, power=power,
               cases=300, width=28,
               what="sweeps in {total:,} cases of the reference models")

if __name__ == "__main__":
    sys.exit(main())
