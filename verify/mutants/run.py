"""`verify mutants`: plant classic backprop bugs in handimpl and show the harness kills each.

Each mutant of verify.mutants.zoo is built by replacing one piece of
handimpl's source and executing the result as a private copy of the module
(handimpl itself is never touched); the copy's ``backprop`` is then checked
like any user implementation (verify.byo.call), with the copy's ``sgd_step`` as
its ``step``. A mutant is *killed* when the sweep finds a case where it
disagrees with torch; the number of examples until the first such case
(in sweep order) measures how hard it was to catch.
"""
from __future__ import annotations

import copy
import functools
import importlib
import inspect
import linecache
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import jinja2
import pandas as pd
from hypothesis import strategies as st

from handimpl.stack import stack_backprop
from verify.harness.trace import check
from verify.meta import STARTED, __version__
from verify.mutants.zoo import BY_NAME, ZOO, Mutant
from verify.report.frames import counterexample, plural
from verify.report.html import STYLE, breakable, header_text
from verify.report.output import write_dir, write_file
from verify.sweep.run import sweep
from verify.train.search import search

DEFAULT_EXAMPLES = 30            # per mutant; every mutant in the zoo dies well within it
DEFAULT_OUT = Path("reports") / "mutants"
MAX_WIDTH, MAX_BATCH = 6, 6      # small nets: quick cases, and the bugs show at any size
SHRINK_SECONDS = 5.0
IMPL_MODULE = "verify.mutants.impl"   # verify.mutants.impl:NAME is the mutant NAME's backprop
FILES = {"csv": "mutants.csv", "html": "mutants.html"}


# -- building --------------------------------------------------------------------------------

def _module_source(module: str) -> str:
    return inspect.getsource(importlib.import_module(f"handimpl.{module}"))


def mutated_source(mutant: Mutant) -> str:
    """handimpl/<module>.py with ``old`` replaced by ``new``; ValueError unless ``old`` occurs once."""
    source = _module_source(mutant.module)
    count = source.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: {mutant.old!r} occurs {count} times in "
                         f"handimpl/{mutant.module}.py (expected once); update verify/mutants/zoo.py")
    return source.replace(mutant.old, mutant.new)


def _exec(source: str, label: str, package: str = "handimpl") -> dict:
    filename = f"<{label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": f"{package}._{label.replace(' ', '_').replace(':', '').replace('/', '_')}",
                 "__package__": package, "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - our own source, one line changed
    return namespace


@functools.lru_cache(maxsize=None)
def build(name: str) -> Callable:
    """The mutant's ``backprop`` (its ``step`` attribute: the mutant's sgd_step)."""
    mutant = BY_NAME[name]
    if mutant.layer is not None:
        return _build_layer_mutant(mutant)
    if mutant.optimizer is not None:
        return _build_optimizer_mutant(mutant)
    changed = _exec(mutated_source(mutant), f"mutant {name}: handimpl/{mutant.module}.py")
    if mutant.module == "network":
        network = changed
    else:
        network = _exec(_module_source("network"), f"mutant {name}: handimpl/network.py")
        registry = {"activations": "ACTIVATIONS", "losses": "LOSSES"}[mutant.module]
        network[registry] = changed[registry]      # backprop and forward look it up at call time
    fn = network["backprop"]
    fn.step = network["sgd_step"]
    fn.verify_target = f"{IMPL_MODULE}:{name}"
    return fn


@functools.lru_cache(maxsize=None)
def mutated_layers(name: str) -> dict[str, Any]:
    """The layer mutant ``name``'s module (handimpl/layers/<module>.py with its one line changed),
    executed privately: its namespace, each layer class by name."""
    mutant = BY_NAME[name]
    return _exec(mutated_source(mutant), f"mutant {mutant.name}: handimpl/{mutant.module.replace('.', '/')}.py",
                 package="handimpl.layers")


def _build_layer_mutant(mutant: Mutant) -> Callable:
    """A layer mutant's stack backprop: handimpl.stack's, with every layer whose class the mutated
    module defines replaced by the mutated class (residual blocks' inner layers too)."""
    changed = mutated_layers(mutant.name)

    def swapped(layer):
        new = copy.copy(layer)
        mutated = changed.get(type(layer).__name__)
        if isinstance(mutated, type):
            new.__class__ = mutated
        if getattr(layer, "inner", None):
            new.inner = tuple(swapped(inner) for inner in layer.inner)
        return new

    def backprop(spec, params, x, y):
        mutated_spec = copy.copy(spec)
        object.__setattr__(mutated_spec, "layers", tuple(swapped(layer) for layer in spec.layers))
        return stack_backprop(mutated_spec, params, x, y)

    backprop.__name__ = backprop.__qualname__ = mutant.name
    backprop.verify_target = f"{IMPL_MODULE}:{mutant.name}"
    return backprop


def _build_optimizer_mutant(mutant: Mutant) -> Callable:
    """An optimizer mutant's ``step(params, grads, state, hyper)``: the mutated copy of
    handimpl/optim.py's optimizer (the contract of verify train --impl)."""
    changed = _exec(mutated_source(mutant), f"mutant {mutant.name}: handimpl/optim.py")
    optimizer = changed["OPTIMIZERS"][mutant.optimizer]

    def step(params, grads, state, hyper):
        return optimizer.step(params, grads, state, hyper)

    step.__name__ = step.__qualname__ = mutant.name
    step.__wrapped__ = optimizer.step      # an exception is located in the mutated source, not here
    step.verify_target = f"{IMPL_MODULE}:{mutant.name}"
    return step


def check_mutant_case(name: str, spec, seed: int, batch: int):
    """verify.harness.trace.check with the mutant as the implementation (picklable via partial)."""
    return check(spec, seed, batch, impl=build(name))


def _mutant_check(name: str):
    check_fn = functools.partial(check_mutant_case, name)
    check_fn.impl_name = f"{IMPL_MODULE}:{name}"
    return check_fn


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
        """The command that runs the minimal counterexample against this mutant."""
        return "" if self.minimal is None else self.minimal.repro

    @property
    def kill_text(self) -> str:
        """'killed after 1 example', 'killed after 3 examples' or 'SURVIVED 30 examples'."""
        if not self.killed:
            return f"SURVIVED {self.n_examples} example{'s' if self.n_examples != 1 else ''}"
        k = self.examples_to_kill
        return f"killed after {k} example{'s' if k != 1 else ''}"

    @property
    def first_tensor(self) -> str:
        """The first diverging tensor's name (or 'error'), for the terminal."""
        if self.minimal is None:
            return ""
        first = self.minimal.first_divergence
        return first.name if first is not None else "error"

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
    mutant = BY_NAME[mutant] if isinstance(mutant, str) else mutant
    build(mutant.name)                     # fail here, loudly, if the zoo no longer matches handimpl
    if mutant.optimizer is not None:
        return run_optimizer_mutant(mutant, examples=examples or DEFAULT_EXAMPLES, seed=seed, shrink=shrink)
    start = time.perf_counter()
    layered = {} if mutant.layer is None else {"architectures": ("stack",), "kinds": (mutant.layer,)}
    result = sweep(examples=examples or DEFAULT_EXAMPLES, seed=seed, activations=mutant.activations,
                   losses=mutant.losses, dtypes=mutant.dtypes, max_depth=mutant.max_depth,
                   max_width=MAX_WIDTH, max_batch=MAX_BATCH, jobs=jobs,
                   check_fn=_mutant_check(mutant.name),
                   max_shrunk=1 if shrink else 0, shrink_seconds=SHRINK_SECONDS, **layered)
    first = next((i for i, r in enumerate(result.results, start=1) if not r.passed), None)
    minimal = result.minimal[0] if result.minimal else None
    return MutantResult(mutant, first is not None, first, len(result.results), result.n_failed,
                        minimal, time.perf_counter() - start)


# An optimizer mutant's cases: a small network of each dtype trained a few steps with drawn
# hyperparameters (verify.train.search); its bugs show at the first or second step.
OPTIM_SPECS = ("2-3-2:tanh,identity:mse_loss", "2-3-2:tanh,identity:mse_loss:dtype=float32")


def run_optimizer_mutant(mutant: Mutant, *, examples: int, seed: int, shrink: bool = True) -> MutantResult:
    """Hypothesis draws (spec, hyperparameters, data seed) for the mutant's optimizer (with the
    hyperparameters its bug needs fixed) and trains the mutant's step against torch.optim; killed
    at the first failing training, which hypothesis then shrinks."""
    specs = st.tuples(st.sampled_from(OPTIM_SPECS), st.integers(0, 2**16), st.just(2))
    found = search(build(mutant.name), impl=f"{IMPL_MODULE}:{mutant.name}", specs=specs,
                   optimizers=[mutant.optimizer], fixed=dict(mutant.hyper), examples=examples, seed=seed,
                   shrink=shrink)
    first = found.first_failure
    return MutantResult(mutant, first is not None, first, first or len(found.tried), 1 if first else 0,
                        found.minimal, found.seconds)


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
    """One row per mutant: what it changes, whether it was killed, and how (mutants.csv)."""
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
    median = stats["median_examples_to_kill"]
    return (f"{stats['killed']} of {stats['total']} mutant{'s' if stats['total'] != 1 else ''} killed "
            f"(kill rate {stats['kill_rate']:.0%}); median examples to kill "
            f"{'–' if median is None else f'{median:g}'}")


TERMINAL_WIDTH = 100
ROW = "{:<30} {:<26} {:>8}  {}"


def terminal_header() -> str:
    return ROW.format("mutant", "result", "failing", "first diverging tensor")


def terminal_row(r: MutantResult) -> str:
    """One line of the terminal table, at most TERMINAL_WIDTH columns."""
    line = ROW.format(r.mutant.name, r.kill_text, f"{r.n_failed}/{r.n_examples}", r.first_tensor)
    return line if len(line) <= TERMINAL_WIDTH else line[:TERMINAL_WIDTH - 1] + "…"


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("verify.mutants", "templates"), autoescape=True)
_ENV.filters["breakable"] = breakable
PAGE = _ENV.get_template("mutants.html.j2")


def render_mutant_page(results: Sequence[MutantResult], settings: dict | None = None,
                       timing: str = "") -> str:
    """mutants.html: report.html's stylesheet and layout, the verdict coloured."""
    stats = kill_stats(results)
    all_killed = stats["killed"] == stats["total"]
    rows = [{"name": r.mutant.name, "bug": r.mutant.title, "before": r.mutant.before,
             "after": r.mutant.after, "killed": r.killed, "kill_text": r.kill_text,
             "failing": f"{r.n_failed} of {r.n_examples}",
             "cx": None if r.minimal is None else
             r.minimal.card() if hasattr(r.minimal, "card") else counterexample(r.minimal)} for r in results]
    median = stats["median_examples_to_kill"]
    cards = [("mutants", stats["total"], False), ("killed", stats["killed"], False),
             ("survived", stats["total"] - stats["killed"], not all_killed),
             ("median examples to kill", "–" if median is None else f"{median:g}", False),
             ("most examples to kill", stats["max_examples_to_kill"] or "–", False)]
    return PAGE.render(style=STYLE, summary=kill_sentence(stats), css="pass" if all_killed else "fail",
                       header=header_text(settings or {}), cards=cards, rows=rows,
                       version=__version__, timing=timing)


def write_mutant_report(results: Sequence[MutantResult], out_dir: Path | str, *,
                        settings: dict | None = None, table: pd.DataFrame | None = None,
                        timing: str = "") -> dict[str, Path]:
    """mutants.csv and mutants.html as the directory ``out_dir``, replacing a previous one whole
    (verify.report.output.write_dir); ``table``: mutant_table(results), if made."""
    table = mutant_table(results) if table is None else table
    page = render_mutant_page(results, settings, timing)

    def write(staging: Path) -> None:
        write_file(staging / FILES["csv"], table.to_csv(index=False, lineterminator="\n"))
        write_file(staging / FILES["html"], page)

    out = write_dir(out_dir, FILES.values(), write)
    return {kind: out / name for kind, name in FILES.items()}


def mutants_command(args) -> int:
    """`verify mutants [--seed S] [--examples N] [--out DIR]`: exit 0 only if every mutant dies."""
    start = time.perf_counter()
    examples = args.examples or DEFAULT_EXAMPLES

    def tick(r: MutantResult) -> None:
        print(terminal_row(r), flush=True)

    print(f"running {plural(len(ZOO), 'mutant')}, {plural(examples, 'example')} each (seed {args.seed})")
    print(terminal_header())
    results = run_zoo(examples=examples, seed=args.seed, progress=tick)
    stats = kill_stats(results)
    timing = (f"{time.perf_counter() - start:.1f} s checking, "
              f"{time.perf_counter() - STARTED:.1f} s in all")
    paths = write_mutant_report(results, args.out or DEFAULT_OUT, timing=timing,
                                settings={"seed": args.seed, "examples per mutant": examples})
    print(f"{kill_sentence(stats)}; {timing}")
    print(f"report: {paths['html']}")
    return 0 if all(r.killed for r in results) else 1
