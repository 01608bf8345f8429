"""`verify mutants`: plant classic backprop bugs in handimpl and show the harness kills each.

Each mutant of verify.mutant_zoo is built by replacing one piece of
handimpl's source and executing the result as a private copy of the module
(handimpl itself is never touched); the copy's ``backprop`` is then checked
like any user implementation (verify.impl), with the copy's ``sgd_step`` as
its ``step``. A mutant is *killed* when the sweep finds a case where it
disagrees with torch; the number of examples until the first such case
(in sweep order) measures how hard it was to catch.
"""
from __future__ import annotations

import functools
import html
import inspect
import linecache
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .mutant_zoo import BY_NAME, ZOO, Mutant

DEFAULT_EXAMPLES = 30            # per mutant; every mutant in the zoo dies well within it
DEFAULT_OUT = Path("reports") / "mutants"
MAX_WIDTH, MAX_BATCH = 6, 6      # small nets: quick cases, and the bugs show at any size
SHRINK_SECONDS = 5.0


# -- building --------------------------------------------------------------------------------

def _module_source(module: str) -> str:
    import handimpl
    return inspect.getsource(getattr(handimpl, module))


def mutated_source(mutant: Mutant) -> str:
    """handimpl/<module>.py with ``old`` replaced by ``new``; ValueError unless ``old`` occurs once."""
    source = _module_source(mutant.module)
    count = source.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: {mutant.old!r} occurs {count} times in "
                         f"handimpl/{mutant.module}.py (expected once); update verify/mutant_zoo.py")
    return source.replace(mutant.old, mutant.new)


def _exec(source: str, label: str) -> dict:
    filename = f"<{label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": f"handimpl._{label.replace(' ', '_').replace(':', '').replace('/', '_')}",
                 "__package__": "handimpl", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - our own source, one line changed
    return namespace


@functools.lru_cache(maxsize=None)
def build(name: str) -> Callable:
    """The mutant's ``backprop`` (its ``step`` attribute: the mutant's sgd_step)."""
    mutant = BY_NAME[name]
    changed = _exec(mutated_source(mutant), f"mutant {name}: handimpl/{mutant.module}.py")
    if mutant.module == "network":
        network = changed
    else:
        network = _exec(_module_source("network"), f"mutant {name}: handimpl/network.py")
        registry = {"activations": "ACTIVATIONS", "losses": "LOSSES"}[mutant.module]
        network[registry] = changed[registry]      # backprop and forward look it up at call time
    fn = network["backprop"]
    fn.step = network["sgd_step"]
    fn.verify_target = f"verify.mutant_impl:{name}"
    return fn


def check_mutant_case(name: str, spec, seed: int, batch: int):
    """verify.check.check with the mutant as the implementation (picklable via partial)."""
    from .check import check
    return check(spec, seed, batch, impl=build(name))


# -- running ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MutantResult:
    mutant: Mutant
    killed: bool
    examples_to_kill: int | None     # 1-based index of the first failing case in sweep order
    n_examples: int
    n_failed: int
    minimal: object | None           # the (shrunk) failing CaseResult
    wall_time: float

    @property
    def counterexample(self) -> str:
        if self.minimal is None:
            return ""
        return f"{self.minimal.spec} seed={self.minimal.seed} batch={self.minimal.batch}"

    @property
    def first_diverging(self) -> str:
        if self.minimal is None:
            return ""
        first = self.minimal.first_divergence
        if first is None:
            return self.minimal.error
        if first.problem:
            return f"{first.name}: {first.problem}"
        return f"{first.name} (max abs err {first.max_abs_err:.3g}, {first.n_mismatched}/{first.n_elements} off)"


def run_mutant(mutant: Mutant | str, *, examples: int | None = None, seed: int = 0,
               shrink: bool = True, jobs: int = 1) -> MutantResult:
    """Sweep one mutant (restricted to where its bug can show); shrink its first failure."""
    from .sweep import sweep

    mutant = BY_NAME[mutant] if isinstance(mutant, str) else mutant
    build(mutant.name)                     # fail here, loudly, if the zoo no longer matches handimpl
    start = time.perf_counter()
    result = sweep(examples=examples or DEFAULT_EXAMPLES, seed=seed, activations=mutant.activations,
                   losses=mutant.losses, dtypes=mutant.dtypes, max_depth=mutant.max_depth,
                   max_width=MAX_WIDTH, max_batch=MAX_BATCH, jobs=jobs,
                   check_fn=functools.partial(check_mutant_case, mutant.name),
                   max_shrunk=1 if shrink else 0, shrink_seconds=SHRINK_SECONDS)
    first = next((i for i, r in enumerate(result.results, start=1) if not r.passed), None)
    minimal = result.minimal[0] if result.minimal else None
    return MutantResult(mutant, first is not None, first, len(result.results), result.n_failed,
                        minimal, time.perf_counter() - start)


def run_zoo(*, examples: int | None = None, seed: int = 0, shrink: bool = True,
            mutants: Sequence[str] | None = None, progress: Callable[[MutantResult], None] | None = None
            ) -> list[MutantResult]:
    """Every mutant of the zoo (or the named ones), in zoo order."""
    chosen = ZOO if mutants is None else [BY_NAME[n] for n in mutants]
    results = []
    for mutant in chosen:
        results.append(run_mutant(mutant, examples=examples, seed=seed, shrink=shrink))
        if progress:
            progress(results[-1])
    return results


# -- reporting -------------------------------------------------------------------------------

def mutant_table(results: Sequence[MutantResult]) -> pd.DataFrame:
    """One row per mutant: what it changes, whether it was killed, and how."""
    return pd.DataFrame([{
        "mutant": r.mutant.name,
        "bug": r.mutant.title,
        "changes": r.mutant.change,
        "killed": "yes" if r.killed else "NO",
        "examples_to_kill": r.examples_to_kill,
        "failing_cases": f"{r.n_failed}/{r.n_examples}",
        "counterexample": r.counterexample,
        "first_diverging": r.first_diverging,
        "seconds": round(r.wall_time, 2),
    } for r in results])


def kill_stats(results: Sequence[MutantResult]) -> dict:
    """Kill rate, killed/total, and the median examples-to-kill over the killed mutants."""
    killed = [r for r in results if r.killed]
    needed = [r.examples_to_kill for r in killed]
    return {"killed": len(killed), "total": len(results),
            "kill_rate": len(killed) / len(results) if results else 0.0,
            "median_examples_to_kill": statistics.median(needed) if needed else None,
            "max_examples_to_kill": max(needed) if needed else None}


def kill_sentence(stats: dict) -> str:
    """'15 of 15 mutants killed (kill rate 100%); median examples to kill 1' from kill_stats."""
    return (f"{stats['killed']} of {stats['total']} mutants killed (kill rate {stats['kill_rate']:.0%}); "
            f"median examples to kill {stats['median_examples_to_kill']}")


def write_mutant_report(results: Sequence[MutantResult], out_dir: Path | str, *,
                        settings: dict | None = None, table: pd.DataFrame | None = None
                        ) -> dict[str, Path]:
    """mutants.csv and mutants.html in ``out_dir`` (``table``: mutant_table(results), if made)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = mutant_table(results) if table is None else table
    csv_path, html_path = out / "mutants.csv", out / "mutants.html"
    table.to_csv(csv_path, index=False)
    summary = kill_sentence(kill_stats(results))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>verify mutants</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:90%}"
            "th{background:#eee}</style></head><body>"
            f"<h1>verify mutants</h1><p>{html.escape(summary)}</p>"
            f"<p>settings: {html.escape(str(settings or {}))}</p>"
            + table.to_html(index=False, escape=True, na_rep="") + "</body></html>")
    html_path.write_text(page, encoding="utf-8")
    return {"csv": csv_path, "html": html_path}


def mutants_command(args) -> int:
    """`verify mutants [--seed S] [--examples N] [--out DIR]`: exit 0 only if every mutant dies."""
    start = time.perf_counter()
    examples = args.examples or DEFAULT_EXAMPLES

    def tick(r: MutantResult) -> None:
        print(f"  {r.mutant.name:<30} {'killed' if r.killed else 'SURVIVED'}"
              f"{f' after {r.examples_to_kill} examples' if r.killed else ''}", flush=True)

    print(f"running {len(ZOO)} mutants, {examples} examples each (seed {args.seed})")
    results = run_zoo(examples=examples, seed=args.seed, progress=tick)
    table = mutant_table(results)
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 70):
        print(table.drop(columns=["bug", "seconds"]).to_string(index=False))
    stats = kill_stats(results)
    paths = write_mutant_report(results, args.out or DEFAULT_OUT, table=table,
                                settings={"seed": args.seed, "examples": examples})
    print(f"{kill_sentence(stats)}; {time.perf_counter() - start:.1f} s")
    print(f"report: {paths['html']}")
    return 0 if stats["killed"] == stats["total"] else 1
