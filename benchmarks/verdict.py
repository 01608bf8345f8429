"""The verdict's two error rates, in one run: false alarms on correct code, and power.

1. False alarms. Every correct implementation of benchmarks/styles.py (``VARIANTS``: handimpl,
   column_loop, einsum, float32_accumulate, pairwise and textbook (torch's documented formulas
   as written, less accurate than torch's), each returning every key (``_full``)
   and only the required ones (``_required``)) is swept over the same N random cases, drawn by
   the strategy of ``verify run`` (both dtypes; x at scale 1, 1e-3, 10 and 1e3; sometimes exact
   zeros) with depth <= 5, width <= 32 and batch <= 64. A case that does not agree in every
   tensor (or raises) is a false alarm; the target is 0. Per style the table gives the worst
   ``margin`` over all records (|h - r| / allowance at the worst element: < 1 means it agreed,
   and how close to 1 it came is how much room the bound leaves) and the worst ``torch_margin``
   (the same ratio for torch's own float32 result, float32 cases only: above 1 the a priori bound
   would not even hold for torch, i.e. it would be unsound), and the share of compared elements
   that passed only by the textbook allowance. Nothing is shrunk: a false alarm gets its repro
   line instead.
1b. Layer stacks. Every correct stack style of benchmarks/stack_styles.py (``STACK_STYLES``:
   handimpl, conv_loops, bn_graph, per_example, textbook) swept the same way over the stacks
   `verify run --architectures stack` draws (row name 'stack:NAME'; ``--stack-cases`` each).
1c. Layer functions. The two correct reference modules of tests/fixtures (cs231n_vectorised.py,
   cs231n_loops.py) swept by `verify layers`, ``--layer-cases`` cases per pair: a row per module.
2. Power. Every mutant of verify.mutants.zoo, swept exactly as ``verify mutants`` sweeps it
   (verify.mutants.run.run_mutant: its own activations/losses/dtypes, its default example budget,
   same seed), and the three float64-only precision bugs of styles.PRECISION_BUGS, each swept
   over float64 cases with the bounds of table 1: killed or not, and the examples to kill (the
   1-based index of the first failing case in sweep order).

    python benchmarks/verdict.py [--cases N] [--seed S] [--jobs J] [--precision-examples P]
                                 [--mutant-examples E] [--styles a,b|none] [--stack-styles a,b|none]
                                 [--stack-cases N] [--layer-cases N] [--no-power] [--quiet]

Nothing is written to disk. Exit status 0 when there is no false alarm and every bug dies, 1
otherwise. A full default run (100,000 cases per style, 12 styles) takes about an hour on two
cores.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from verify.api import check_case, supported
from verify.byo.call import load_target
from verify.core.stack import StackSpec
from verify.harness.trace import CaseResult
from verify.mutants.zoo import ZOO
from verify.sweep.execute import _pool_context
from verify.sweep.run import sweep

DEFAULT_CASES = 100_000            # per correct style (the target)
DEFAULT_JOBS = 2
PRECISION_EXAMPLES = 200           # float64 cases per precision bug at most
BOUNDS = dict(max_depth=5, max_width=32, max_batch=64)

STYLES_FILE = Path(__file__).resolve().parent / "styles.py"
STYLES_TARGET = "benchmarks/styles.py"          # as a repro line writes it, from the repo root
STACK_STYLES_FILE = Path(__file__).resolve().parent / "stack_styles.py"
STACK_STYLES_TARGET = "benchmarks/stack_styles.py"
STACK = "stack:"                                # a stack style's row name: 'stack:bn_graph'


def styles_module():
    """benchmarks/styles.py, the very module the harness loads for ``--impl`` targets."""
    return sys.modules[load_target(f"{STYLES_FILE}:variant").__module__]


def stack_styles_module():
    """benchmarks/stack_styles.py, as the harness loads it."""
    return sys.modules[load_target(f"{STACK_STYLES_FILE}:conv_loops").__module__]


def target(name: str) -> str:
    """The ``--impl`` TARGET of a function of styles.py, or of stack_styles.py for a name
    'stack:NAME' (absolute, so any cwd works)."""
    if name.startswith(STACK):
        return f"{STACK_STYLES_FILE}:{name.removeprefix(STACK)}"
    return f"{STYLES_FILE}:{name}"


def repro(name: str, result: CaseResult) -> str:
    where = f"{STACK_STYLES_TARGET}:{name.removeprefix(STACK)}" if name.startswith(STACK) else \
        f"{STYLES_TARGET}:{name}"
    return (f"verify check '{result.spec}' --impl {where} "
            f"--seed {result.seed} --batch {result.batch}")


# -- 1. false alarms ---------------------------------------------------------------------------

def _max(values) -> float | None:
    """The largest of the non-None, non-NaN values (NaN if there were values but all NaN,
    None if there were none)."""
    seen = [v for v in values if v is not None]
    finite = [v for v in seen if not math.isnan(v)]
    if finite:
        return max(finite)
    return float("nan") if seen else None


def slim_check(impl_target: str, spec, seed: int, batch: int) -> CaseResult:
    """check_case, with the records cut to those a benchmark row needs: every failing one
    (so ``passed`` and the first divergence are unchanged), every imprecise one (passed by the
    textbook allowance alone: the table counts their elements), the one of the largest margin
    and the one of the largest torch_margin. 100,000 full cases would hold some 3 million
    records and send them all between processes."""
    result = check_case(impl_target, spec, seed, batch)
    records = result.records
    if not records:
        return result
    keep = [r for r in records if not r.passed or r.status == "imprecise"]
    keep.append(max(records, key=lambda r: -1.0 if math.isnan(r.margin) else r.margin))
    with_torch = [r for r in records if r.torch_margin is not None and not math.isnan(r.torch_margin)]
    if with_torch:
        keep.append(max(with_torch, key=lambda r: r.torch_margin))
    kept = tuple(dict.fromkeys(keep))      # no duplicates, in order
    return dataclasses.replace(result, records=kept)


@dataclass(frozen=True)
class StyleRow:
    name: str
    cases: int
    alarms: tuple[CaseResult, ...]
    worst_margin: float | None
    worst_margin_case: CaseResult | None
    worst_torch_margin: float | None
    worst_torch_case: CaseResult | None
    seconds: float
    stopped: str = ""
    dtypes: dict = dataclasses.field(default_factory=dict)
    scales: dict = dataclasses.field(default_factory=dict)
    elements: int = 0                # values compared, over all cases
    imprecise: int = 0               # of which within the textbook allowance only

    @property
    def false_alarms(self) -> int:
        return len(self.alarms)

    @property
    def textbook_share(self) -> float:
        """The share of compared elements that passed only by the textbook allowance."""
        return self.imprecise / self.elements if self.elements else 0.0


def style_row(name: str, *, cases: int, seed: int = 0, jobs: int = 1, bounds: dict = BOUNDS,
              progress=None) -> StyleRow:
    """Sweep the correct style ``name`` (a key of styles.VARIANTS, or 'stack:NAME' for a key of
    stack_styles.STACK_STYLES, swept over the layer stacks `verify run --architectures stack`
    draws) over ``cases`` cases, no shrinking, and summarise it."""
    start = time.perf_counter()
    stack = {"architectures": ["stack"]} if name.startswith(STACK) else {}
    result = sweep(examples=cases, seed=seed, jobs=jobs, check_fn=functools.partial(slim_check, target(name)),
                   max_shrunk=0, progress=progress, **bounds, **stack)
    results = result.results
    margin_of = lambda r: _max(c.margin for c in r.records) if r.records else None      # noqa: E731
    torch_of = lambda r: _max(c.torch_margin for c in r.records) if r.records else None  # noqa: E731
    worst_m = _worst(results, margin_of)
    worst_t = _worst(results, torch_of)
    return StyleRow(
        name, len(results), tuple(r for r in results if not r.passed),
        None if worst_m is None else margin_of(worst_m), worst_m,
        None if worst_t is None else torch_of(worst_t), worst_t,
        time.perf_counter() - start, result.stopped,
        dict(collections.Counter(r.spec.dtype for r in results)),
        dict(collections.Counter(r.scale for r in results)),
        sum(traced_elements(r.spec, r.batch) for r in results),
        sum(c.n_imprecise for r in results for c in r.records))


def traced_elements(spec, batch: int) -> int:
    """How many values one case compares: z, a and δ of every layer, ∂W and the weights after
    the step, ∂b and the biases after it, the loss and ∂x (a stack: every key of its contract,
    and each parameter after the step)."""
    if isinstance(spec, StackSpec):
        size = lambda k: int(np.prod(spec.expected_shape(k, batch), dtype=np.int64))   # noqa: E731
        return sum(map(size, spec.required_keys() + spec.optional_keys())) + \
            sum(map(size, spec.required_keys()[1:]))
    n = spec.widths
    per_layer = sum(3 * batch * n[l] + 2 * n[l] * n[l - 1] + (2 * n[l] if spec.bias else 0)
                    for l in range(1, len(n)))
    return per_layer + 1 + batch * n[0]


def _worst(results: Sequence[CaseResult], key: Callable) -> CaseResult | None:
    best, best_v = None, -math.inf
    for r in results:
        v = key(r)
        if v is not None and not math.isnan(v) and v > best_v:
            best, best_v = r, v
    return best


def describe_alarm(result: CaseResult) -> str:
    if result.error:
        return result.error_sentence
    r = result.first_divergence or next((c for c in result.records if not c.passed), None)
    if r is None:
        return "no failing record"
    if r.problem:
        return f"{r.name}: {r.problem}"
    text = (f"{r.name} {r.status}: margin {r.margin:.3g}, hand {r.hand_value!r} vs reference "
            f"{r.reference_value!r} (torch {r.torch_value!r}), allowance {r.allowed:.3g}, "
            f"{r.n_mismatched}/{r.n_elements} off")
    if r.torch_margin is not None:
        text += f", torch_margin {r.torch_margin:.3g}"
    if r.at_kink:
        text += ", at a kink"
    if r.note:
        text += f"; {r.note}"
    return text


def _fmt(v: float | None, digits: int = 6) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if not math.isnan(v) else "nan"


def style_table(rows: Sequence[StyleRow]) -> list[str]:
    head = (f"{'style':<28} {'cases':>8} {'false alarms':>12} {'worst margin':>13} "
            f"{'worst torch_margin':>19} {'textbook only':>14} {'seconds':>8}")
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row.name:<28} {row.cases:>8} {row.false_alarms:>12} {_fmt(row.worst_margin):>13} "
                     f"{_fmt(row.worst_torch_margin):>19} {row.textbook_share:>14.2e} {row.seconds:>8.1f}"
                     + (f"  STOPPED: {row.stopped}" if row.stopped else ""))
    lines.append("-" * len(head))
    total = sum(r.cases for r in rows)
    alarms = sum(r.false_alarms for r in rows)
    elements = sum(r.elements for r in rows)
    share = sum(r.imprecise for r in rows) / elements if elements else 0.0
    lines.append(f"{'all':<28} {total:>8} {alarms:>12} {_fmt(_max(r.worst_margin for r in rows)):>13} "
                 f"{_fmt(_max(r.worst_torch_margin for r in rows)):>19} {share:>14.2e} "
                 f"{sum(r.seconds for r in rows):>8.1f}")
    lines.append("textbook only: the share of compared elements within the textbook allowance alone "
                 "(imprecise: a documented formula evaluated as written)")
    with_m = [r for r in rows if r.worst_margin_case is not None]
    if with_m:
        w = max(with_m, key=lambda r: r.worst_margin)
        lines.append(f"worst margin ({w.worst_margin:.7g}, {_worst_record(w.worst_margin_case, 'margin')}): "
                     f"{repro(w.name, w.worst_margin_case)}")
    with_t = [r for r in rows if r.worst_torch_case is not None]
    if with_t:
        w = max(with_t, key=lambda r: r.worst_torch_margin)
        lines.append(f"worst torch_margin ({w.worst_torch_margin:.7g}, "
                     f"{_worst_record(w.worst_torch_case, 'torch_margin')}): {repro(w.name, w.worst_torch_case)}")
    for row in rows:
        for alarm in row.alarms:
            lines.append(f"FALSE ALARM {repro(row.name, alarm)}")
            lines.append(f"    {describe_alarm(alarm)}")
    return lines


def _worst_record(result: CaseResult, field: str) -> str:
    values = [(getattr(c, field), c.name) for c in result.records
              if getattr(c, field) is not None and not math.isnan(getattr(c, field))]
    return max(values)[1] if values else "?"


# -- 1c. the reference modules of layer functions (verify layers) ---------------------------------

LAYER_FUNCTIONS_FILE = Path(__file__).resolve().parent / "layer_functions.py"


def layer_functions_module():
    """benchmarks/layer_functions.py (its reference modules and their sweep)."""
    return sys.modules[load_target(f"{LAYER_FUNCTIONS_FILE}:module_false_alarms").__module__]


@dataclass(frozen=True)
class ModuleRow:
    name: str
    cases: int
    alarms: tuple[str, ...]
    seconds: float

    @property
    def false_alarms(self) -> int:
        return len(self.alarms)


def module_row(name: str, *, cases: int, seeds: int = 1) -> ModuleRow:
    """A correct reference module of CS231n layer functions (tests/fixtures), every pair it holds
    swept by `verify layers` for ``cases`` cases and each seed 1..``seeds``."""
    start = time.perf_counter()
    total, alarms = layer_functions_module().module_false_alarms(name, cases, seeds)
    return ModuleRow(name, total, tuple(alarms), time.perf_counter() - start)


def module_table(rows: Sequence[ModuleRow]) -> list[str]:
    head = f"{'reference module':<28} {'cases':>8} {'false alarms':>12} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    lines += [f"{r.name:<28} {r.cases:>8} {r.false_alarms:>12} {r.seconds:>8.1f}" for r in rows]
    lines.append("cases: over every pair the module holds (verify layers FILE --examples N --seed S)")
    lines += [f"FALSE ALARM {a}" for r in rows for a in r.alarms]
    return lines


# -- 2. power ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerRow:
    name: str
    kind: str                      # 'mutant' | 'precision'
    killed: bool
    examples_to_kill: int | None
    n_examples: int
    n_failed: int
    first_diverging: str
    seconds: float


def _first_diverging(result: CaseResult | None) -> str:
    if result is None:
        return ""
    r = result.first_divergence
    if r is None:
        return result.error or next((c.name for c in result.records if not c.passed), "")
    return r.name + (f": {r.problem}" if r.problem else f" (margin {r.margin:.3g})")


def mutant_row(name: str, seed: int = 0, examples: int | None = None) -> PowerRow:
    """A zoo mutant swept as `verify mutants` sweeps it (its default budget unless
    ``examples``), unshrunk: the same kill and examples-to-kill."""
    from verify.mutants.run import run_mutant

    start = time.perf_counter()
    m = run_mutant(name, examples=examples, seed=seed, shrink=False)
    return PowerRow(name, "mutant", m.killed, m.examples_to_kill, m.n_examples, m.n_failed,
                    _first_diverging(m.minimal), time.perf_counter() - start)


def precision_row(name: str, seed: int = 0, examples: int = PRECISION_EXAMPLES,
                  bounds: dict = BOUNDS) -> PowerRow:
    """A precision bug of styles.PRECISION_BUGS swept over float64 cases (what its
    ``supports`` declares), unshrunk."""
    start = time.perf_counter()
    names = supported(load_target(target(name)))
    result = sweep(examples=examples, seed=seed, check_fn=functools.partial(check_case, target(name)),
                   max_shrunk=0, **names, **bounds)
    first = next((i for i, r in enumerate(result.results, start=1) if not r.passed), None)
    return PowerRow(name, "precision", first is not None, first, len(result.results), result.n_failed,
                    _first_diverging(result.results[first - 1]) if first else "",
                    time.perf_counter() - start)


def _power_task(task: tuple) -> PowerRow:
    kind, name, seed, examples = task
    if kind == "mutant":
        return mutant_row(name, seed, examples)
    return precision_row(name, seed, examples)


def power_rows(*, seed: int = 0, jobs: int = 1, mutant_examples: int | None = None,
               precision_examples: int = PRECISION_EXAMPLES,
               mutants: Sequence[str] | None = None, bugs: Sequence[str] | None = None) -> list[PowerRow]:
    """Every zoo mutant (or the named ones) and every precision bug (or the named ones), spread
    over ``jobs`` processes, one bug per task; rows in zoo order, then the precision bugs."""
    mutants = [m.name for m in ZOO] if mutants is None else list(mutants)
    bugs = list(styles_module().PRECISION_BUGS) if bugs is None else list(bugs)
    tasks = [("mutant", n, seed, mutant_examples) for n in mutants] + \
            [("precision", n, seed, precision_examples) for n in bugs]
    if jobs <= 1:
        return [_power_task(t) for t in tasks]
    with _pool_context(None).Pool(jobs) as pool:
        return list(pool.imap(_power_task, tasks, chunksize=1))


def power_table(rows: Sequence[PowerRow]) -> list[str]:
    head = (f"{'bug':<34} {'kind':<9} {'killed':>6} {'examples to kill':>16} {'failing':>9} "
            f"{'seconds':>8}  first diverging")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name:<34} {r.kind:<9} {'yes' if r.killed else 'NO':>6} "
                     f"{r.examples_to_kill if r.killed else '-':>16} {f'{r.n_failed}/{r.n_examples}':>9} "
                     f"{r.seconds:>8.1f}  {r.first_diverging}")
    lines.append("-" * len(head))
    lines.append(power_summary(rows))
    return lines


def power_summary(rows: Sequence[PowerRow]) -> str:
    killed = [r for r in rows if r.killed]
    parts = []
    for label, group in (("mutants", [r for r in rows if r.kind == "mutant"]),
                         ("precision bugs", [r for r in rows if r.kind == "precision"])):
        if group:
            parts.append(f"{sum(r.killed for r in group)}/{len(group)} {label}")
    needed = [r.examples_to_kill for r in killed]
    median = statistics.median(needed) if needed else None
    return (f"killed {len(killed)} of {len(rows)} ({', '.join(parts)}); median examples to kill "
            f"{median}, max {max(needed) if needed else None}")


# -- the run -----------------------------------------------------------------------------------

def _progress_printer(name: str, stream=sys.stderr):
    last = [-1]

    def tick(done: int, total: int, failed: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            print(f"  {name}: {done}/{total} cases, {failed} failing", file=stream, flush=True)
    return tick


def _scale_text(scales: dict) -> str:
    return ", ".join(f"{k:g}: {v}" for k, v in sorted(scales.items()))


def main(argv: Sequence[str] | None = None, out=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="cases per correct style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--precision-examples", type=int, default=PRECISION_EXAMPLES,
                        help="float64 cases per precision bug at most")
    parser.add_argument("--mutant-examples", type=int, default=None,
                        help="examples per zoo mutant at most (default: verify mutants' own)")
    parser.add_argument("--styles", help="comma-separated subset of styles.VARIANTS (dense styles; 'none' for none)")
    parser.add_argument("--stack-styles", help="comma-separated subset of stack_styles.STACK_STYLES "
                                                "(default: all; 'none' for none)")
    parser.add_argument("--stack-cases", type=int, default=None,
                        help="cases per correct stack style (default: --cases)")
    parser.add_argument("--layer-cases", type=int, default=400,
                        help="cases per pair of each reference module of layer functions (default: 400; 0: none)")
    parser.add_argument("--power", action=argparse.BooleanOptionalAction, default=True,
                        help="run table 2 (default: yes)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    say = functools.partial(print, file=out, flush=True)

    from verify.mutants.run import DEFAULT_EXAMPLES as MUTANT_EXAMPLES

    variants = list(styles_module().VARIANTS)
    if args.styles == "none":
        variants = []
    elif args.styles:
        unknown = [s for s in args.styles.split(",") if s not in variants]
        if unknown:
            parser.error(f"unknown styles {', '.join(unknown)}; known: {', '.join(variants)}")
        variants = args.styles.split(",")
    stack_names = list(stack_styles_module().STACK_STYLES)
    if args.stack_styles:
        chosen = [] if args.stack_styles == "none" else args.stack_styles.split(",")
        unknown = [s for s in chosen if s not in stack_names]
        if unknown:
            parser.error(f"unknown stack styles {', '.join(unknown)}; known: {', '.join(stack_names)}")
        stack_names = chosen
    stack_cases = args.cases if args.stack_cases is None else args.stack_cases
    total_start = time.perf_counter()
    say(f"verdict benchmark: seed {args.seed}, jobs {args.jobs}")
    say(f"  false alarms: {args.cases} cases per style x {len(variants)} styles = {args.cases * len(variants)} "
        f"cases (the same cases for every style; depth <= {BOUNDS['max_depth']}, width <= "
        f"{BOUNDS['max_width']}, batch <= {BOUNDS['max_batch']}; every activation and loss; no shrinking)")
    mutant_examples = args.mutant_examples or MUTANT_EXAMPLES
    say(f"  power: {len(ZOO)} zoo mutants x {mutant_examples} examples at most (as `verify mutants`), "
        f"3 precision bugs x {args.precision_examples} float64 examples at most")

    start = time.perf_counter()
    rows = []
    for name in variants:
        rows.append(style_row(name, cases=args.cases, seed=args.seed, jobs=args.jobs,
                              progress=None if args.quiet else _progress_printer(name)))
    style_seconds = time.perf_counter() - start
    if rows:
        say("")
        say(f"1. false alarms per correct style (target 0); wall time {style_seconds:.1f} s")
        say(f"   drawn cases: {', '.join(f'{k} {v}' for k, v in sorted(rows[0].dtypes.items()))}; "
            f"x scale {_scale_text(rows[0].scales)}")
        for line in style_table(rows):
            say(line)

    start = time.perf_counter()
    stack_rows = []
    for name in stack_names:
        stack_rows.append(style_row(STACK + name, cases=stack_cases, seed=args.seed, jobs=args.jobs,
                                    progress=None if args.quiet else _progress_printer(STACK + name)))
    if stack_rows:
        say("")
        say(f"1b. false alarms per correct layer-stack style (target 0), {stack_cases} stacks each as "
            f"`verify run --architectures stack` draws them; wall time {time.perf_counter() - start:.1f} s")
        say(f"   drawn cases: {', '.join(f'{k} {v}' for k, v in sorted(stack_rows[0].dtypes.items()))}; "
            f"x scale {_scale_text(stack_rows[0].scales)}")
        for line in style_table(stack_rows):
            say(line)

    module_rows = []
    if args.layer_cases:
        start = time.perf_counter()
        module_rows = [module_row(name, cases=args.layer_cases, seeds=1)
                       for name in layer_functions_module().REFERENCES]
        say("")
        say(f"1c. false alarms per correct module of layer functions (verify layers, target 0), {args.layer_cases} "
            f"cases per pair; wall time {time.perf_counter() - start:.1f} s")
        for line in module_table(module_rows):
            say(line)

    power: list[PowerRow] = []
    if args.power:
        start = time.perf_counter()
        if not args.quiet:
            print("  power: sweeping the mutants and precision bugs", file=sys.stderr, flush=True)
        power = power_rows(seed=args.seed, jobs=args.jobs, mutant_examples=args.mutant_examples,
                           precision_examples=args.precision_examples)
        power_seconds = time.perf_counter() - start
        say("")
        say(f"2. power: planted bugs killed; wall time {power_seconds:.1f} s")
        for line in power_table(power):
            say(line)
    say("")
    say(f"total wall time {time.perf_counter() - total_start:.1f} s")
    clean = all(r.false_alarms == 0 and not r.stopped for r in rows + stack_rows) and \
        all(r.false_alarms == 0 for r in module_rows) and all(r.killed for r in power)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
