"""verify layers' two error rates: false alarms on correct layer functions, and power.

1. False alarms. The two reference modules of tests/fixtures (cs231n_vectorised.py, every family;
   cs231n_loops.py, eight of them, written with loops) are swept pair by pair, ``--cases`` cases
   per pair for each of ``--seeds`` seeds. A pair that disagrees on any case is a false alarm; the
   target is 0.
2. Power. Each planted bug of tests/fixtures/cs231n_bugs.py (the vectorised module with one
   function swapped) is swept with the default budget for each seed: killed or not, and the
   1-based index of the first failing case.

    python benchmarks/layer_functions.py [--cases N] [--seeds K] [--bug-seeds B] [--quiet]

Nothing is written to disk. Exit status 0 when there is no false alarm and every bug dies in every
seed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Sequence

from verify.layers.run import DEFAULT_EXAMPLES, check_layers, load_module

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
REFERENCES = ("cs231n_vectorised.py", "cs231n_loops.py")


def module_false_alarms(name: str, cases: int, seeds: int, say=lambda line: None) -> tuple[int, list[str]]:
    """(cases checked, one line per false alarm) of one reference module of tests/fixtures, every
    pair it holds swept ``cases`` cases for each seed 1..``seeds``."""
    total, alarms = 0, []
    module = load_module(str(FIXTURES / name))
    for seed in range(1, seeds + 1):
        started = time.perf_counter()
        result = check_layers(module, examples=cases, seed_value=seed, target=name)
        for pair in result.present:
            total += pair.cases
            if not pair.passed:
                record = pair.first.failing[0]
                alarms.append(f"{name} seed {seed} {pair.label}: {record.name} {record.problem or ''} "
                              f"{pair.first.case.describe()}")
        say(f"{name} seed {seed}: {len(result.present)} pairs, {time.perf_counter() - started:.0f} s")
    return total, alarms


def false_alarms(cases: int, seeds: int, say) -> tuple[int, list[str]]:
    """(cases checked, one line per false alarm), over both reference modules."""
    total, alarms = 0, []
    for name in REFERENCES:
        n, found = module_false_alarms(name, cases, seeds, say)
        total += n
        alarms += found
    return total, alarms


def bug_modules() -> dict[str, tuple[str, types.ModuleType]]:
    """bug -> (its family, the vectorised module with the bug swapped in)."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_bugs
        import cs231n_vectorised as good
    finally:
        sys.path.remove(str(FIXTURES))
    out = {}
    for bug, swaps in cs231n_bugs.BUGS.items():
        module = types.ModuleType(f"bug_{bug}")
        module.__dict__.update({k: v for k, v in vars(good).items() if not k.startswith("__")})
        module.__dict__.update(swaps)
        out[bug] = (bug.removesuffix("_momentum").removesuffix("_flipped"), module)
    return out


def power(seeds: int, say) -> list[tuple[str, int, list[int]]]:
    """(bug, seeds that killed it, the first failing case's index in each)."""
    rows = []
    for bug, (family, module) in bug_modules().items():
        found = []
        for seed in range(seeds):
            result = check_layers(module, only=[family], examples=DEFAULT_EXAMPLES, seed_value=seed)
            failing = [p for p in result.present if not p.passed]
            if failing:
                found.append(min(p.cases for p in failing))
        rows.append((bug, len(found), found))
        say(f"{bug}: killed in {len(found)} of {seeds} seeds")
    return rows


def run(argv: Sequence[str] | None, out, *, description: str, false_alarms, power, what: str, cases: int,
        width: int) -> int:
    """Both error rates, printed: ``false_alarms(cases, seeds, say) -> (total, alarm lines)`` over
    ``what`` ("pairs in … cases of the two reference modules"), ``power(seeds, say) -> rows`` of
    (bug, killed, first failing cases), the bug's name in ``width`` columns. Shared with
    benchmarks/layer_models.py. Exit 0 with no false alarm and every bug dead in every seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cases", type=int, default=cases, help=f"cases per reference and seed (default: {cases})")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per reference (default: 3)")
    parser.add_argument("--bug-seeds", type=int, default=10, help="seeds per planted bug (default: 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    total, alarms = false_alarms(args.cases, args.seeds, say)
    print(f"false alarms: {len(alarms)} {what.format(total=total)}", file=out)
    for line in alarms:
        print(f"  {line}", file=out)
    rows = power(args.bug_seeds, say)
    print(f"power: {'bug':<{width}} killed  first failing case (median, max)", file=out)
    for bug, killed, found in rows:
        spread = f"{statistics.median(found):g}, {max(found)}" if found else "-"
        print(f"       {bug:<{width}} {killed}/{args.bug_seeds}   {spread}", file=out)
    return 0 if not alarms and all(k == args.bug_seeds for _, k, _ in rows) else 1


def main(argv: Sequence[str] | None = None, out=None) -> int:
    return run(argv, out, description=__doc__.splitlines()[0], false_alarms=false_alarms, power=power,
               cases=400, width=20,
               what="pairs in {total:,} cases of the two reference modules")

if __name__ == "__main__":
    sys.exit(main())
