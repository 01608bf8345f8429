"""Finding a module's layer functions and sweeping each pair with hypothesis.

``find(module)`` looks up every pair of the convention (verify.layers.families) by name, in the
module's own namespace (no attribute hooks run); a pair with a function missing is listed,
not an error, and every other function is ignored. ``sweep_pair`` draws ``examples`` cases
with hypothesis, stops at the first failing one and lets hypothesis shrink it: the result keeps
the first failing case and the smallest one.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st

from verify.byo.call import _import, describe_exception
from verify.byo.guard import TimeLimit, guarded
from verify.core.torch_ops import one_thread
from verify.errors import UsageError
from verify.layers.families import FAMILIES, Case, Family, Settings, p_convention, p_names_both

DEFAULT_EXAMPLES = 100
SHRINK_SECONDS = 20.0      # shrinking one pair's failure stops after this long (a slow user function)


@dataclasses.dataclass
class Outcome:
    """One case of one pair: the case and every record (verify.core.compare.Comparison)."""
    case: Case
    records: list

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.records)

    @property
    def failing(self) -> list:
        return [r for r in self.records if not r.passed]


@dataclasses.dataclass
class PairResult:
    """One pair (or loss function) of a module: how its sweep went."""
    family: str
    functions: tuple[str, ...]
    present: bool
    cases: int = 0
    first: Outcome | None = None          # the first failing case drawn
    minimal: Outcome | None = None        # the smallest failing case hypothesis shrank it to
    note: str = ""
    missing: tuple[str, ...] = ()
    seconds: float = 0.0
    checker: Any = dataclasses.field(default=None, repr=False)   # the Family swept (a model's is not in FAMILIES)
    imprecise: int = 0                    # passing cases with an output within the textbook allowance only
    precision: str = ""                   # the first such output and its precision note
    reference: str = "torch"              # what judged it: torch, or fd (the finite-difference referee alone)

    @property
    def label(self) -> str:
        return "/".join(self.functions)

    @property
    def passed(self) -> bool | None:
        return None if not self.present else self.first is None

    @property
    def status(self) -> str:
        """'absent', 'disagrees', 'imprecise' (agrees, some case only by the textbook allowance) or 'agrees'."""
        if not self.present:
            return "absent"
        if not self.passed:
            return "disagrees"
        return "imprecise" if self.imprecise else "agrees"


@dataclasses.dataclass
class LayersResult:
    target: str
    pairs: list[PairResult]
    settings: dict

    @property
    def present(self) -> list[PairResult]:
        return [p for p in self.pairs if p.present]

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.present)

    def _repr_html_(self) -> str:
        """A compact table for a notebook: the verdict, then per pair its result and, for a
        failing one, the worst element of its smallest case and that case."""
        from verify.layers.report import notebook_html  # the report layer's text, only when shown
        return notebook_html(self)


def load_module(where: str) -> Any:
    """The module at a file path or of a dotted name; its top-level code runs (guarded): one
    line (UsageError) when it cannot be imported."""
    if where.endswith(".py") or os.sep in where or "/" in where:
        if not Path(where).expanduser().is_file():
            raise UsageError(f"no file {where}")
    module, e = guarded(lambda: _import(where, where))
    if e is not None:
        if isinstance(e, UsageError):
            raise UsageError(f"cannot load {where} as a Python module") from None
        raise UsageError(f"importing {where} failed: {describe_exception(e, None)}") from None
    return module


def find(module: Any, only: list[str] | None = None) -> list[tuple[Family, tuple[str, ...], tuple | None,
                                                                 tuple[str, ...]]]:
    """(family, function names, the functions or None, the missing names) for each pair of the
    families asked for."""
    namespace = vars(module) if hasattr(module, "__dict__") else {}
    out = []
    for name, family in FAMILIES.items():
        if only and name not in only:
            continue
        for names in family.functions():
            fns = tuple(namespace.get(n) for n in names)
            missing = tuple(n for n, f in zip(names, fns) if not callable(f))
            if family.name == "batchnorm" and names[1] == "batchnorm_backward_alt" and \
                    not callable(namespace.get("batchnorm_backward_alt")) and callable(namespace.get(names[0])):
                continue                      # the alternative backward is optional: not listed as missing
            out.append((family, names, None if missing else fns, missing))
    return out


class _Failing(Exception):
    """Raised in the hypothesis test on a failing case, so that hypothesis shrinks it."""


def sweep_pair(family: Family, names: tuple[str, ...], fns: tuple[Callable, ...], conf: Settings, *,
               examples: int, seed_value: int, shrink: bool = True) -> PairResult:
    result = PairResult(family.name, names, True, checker=family)
    started = time.perf_counter()
    state: dict[str, Any] = {"found": 0.0}        # when the first failing case was found
    conf.limit.expired = False

    @seed(seed_value)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
              report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate])
    @given(st.data())
    def test(data):
        case = family.draw(data)
        if state["found"] and (conf.limit.expired or time.perf_counter() - state["found"] > SHRINK_SECONDS):
            raise _Failing()          # shrinking a hang, or past its budget: the smallest so far stands
        outcome = Outcome(case, family.run(fns, names, case, conf))
        if not state["found"]:
            result.cases += 1
            loose = [r for r in outcome.records if r.status == "imprecise"]
            if loose and outcome.passed:
                result.imprecise += 1
                result.precision = result.precision or f"{loose[0].name}: {loose[0].note}"
        if not outcome.passed:
            if not state["found"]:
                state["found"] = time.perf_counter()
                result.first = outcome
            if result.minimal is None or outcome.case.size() <= result.minimal.case.size():
                result.minimal = outcome
            raise _Failing()

    try:
        test()
    except KeyboardInterrupt:
        raise
    except Exception:           # noqa: BLE001 - _Failing, or hypothesis's Flaky around a non-reproducible failure
        pass
    result.seconds = time.perf_counter() - started
    return result


def check_layers(module: Any, *, only: list[str] | None = None, examples: int = DEFAULT_EXAMPLES,
                 seed_value: int = 0, dropout_p: str | None = None, time_limit: float = 10.0, isolate: bool = False,
                 target: str = "", progress: Callable[[PairResult], None] | None = None,
                 reference: dict[str, str] | None = None) -> LayersResult:
    """Sweep every pair of ``module`` found (a module object, or a file path or module name).
    ``reference``: 'fd' for a family (by name) judges its backward by the finite-difference
    referee alone, from the user's own forward (a variant with no torch counterpart, such as
    makemore's batch norm with the unbiased variance); the others are judged against torch."""
    if isinstance(module, str):
        target = target or module
        module = load_module(module)
    unknown = sorted(set(only or ()) - set(FAMILIES))
    if unknown:
        raise UsageError(f"--only: unknown {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    reference = validate_reference(reference or {})
    found = find(module, only)
    conf = Settings(limit=TimeLimit(time_limit or None, isolate=isolate))
    pairs = []
    for family, names, fns, missing in found:
        if fns is None:
            pair = PairResult(family.name, names, False, missing=missing,
                              note=f"absent: no {', '.join(missing)}")
        else:
            note = family.note
            if family.name == "dropout":
                conf.dropout_keep, how = _dropout_convention(fns[0], dropout_p)
                note = f"p read as the {'keep' if conf.dropout_keep else 'drop'} probability ({how}); " + note
            conf.remarks = set()
            conf.fd = reference.get(family.name) == "fd"
            if conf.fd:
                note = FD_NOTE
            with one_thread():
                pair = sweep_pair(family, names, fns, conf, examples=examples, seed_value=seed_value)
            pair.reference = "fd" if conf.fd else "torch"
            pair.note = "; ".join([note, *sorted(conf.remarks)])
        pairs.append(pair)
        if progress is not None:
            progress(pair)
    return LayersResult(target or getattr(module, "__name__", "?"), pairs,
                        {"examples": examples, "seed": seed_value, "only": only, "dropout_p": dropout_p,
                         "time_limit": time_limit, "isolate": isolate,
                         **({"reference": dict(sorted(reference.items()))} if reference else {})})


FD_NOTE = ("judged by finite differences alone (--reference fd): the backward against ∂(Σ dout ⊙ out)/∂θ "
           "of its own forward, in float64, within the layer's bound plus the referee's error bar; its "
           "forward and running statistics are not judged (no torch counterpart)")


def parse_reference(text: str | None) -> dict[str, str]:
    """'--reference fd' (every family that can be judged so) or 'batchnorm=fd,affine=fd' ->
    {family: 'fd'}; UsageError (one line) for anything else."""
    if not text:
        return {}
    if text.strip() == "fd":
        return {name: "fd" for name, family in FAMILIES.items() if not family.not_by_fd}
    out = {}
    for part in (t.strip() for t in text.split(",") if t.strip()):
        name, eq, value = part.partition("=")
        if not eq or value.strip() not in ("fd", "torch"):
            raise UsageError(f"--reference {text}: expected fd, or FAMILY=fd[,FAMILY=fd...] (e.g. batchnorm=fd)")
        out[name.strip()] = value.strip()
    return validate_reference(out)


def validate_reference(reference: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(reference) - set(FAMILIES))
    if unknown:
        raise UsageError(f"--reference: unknown {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    bad = sorted(n for n, v in reference.items() if v == "fd" and FAMILIES[n].not_by_fd)
    if bad:
        raise UsageError(f"--reference: {bad[0]} cannot be judged by finite differences alone: "
                         f"{FAMILIES[bad[0]].not_by_fd}")
    return {n: v for n, v in reference.items() if v == "fd"}


def _dropout_convention(fn: Any, flag: str | None) -> tuple[bool, str]:
    if flag is not None:
        return flag == "keep", "--dropout-p"
    doc, e = guarded(lambda: fn.__doc__)
    doc = doc if isinstance(doc, str) else None
    found = p_convention(doc)
    if found is None:
        return True, "assumed: the docstring does not say; --dropout-p drop for the early convention"
    if p_names_both(doc):
        return found, ("from the docstring's first sentence that names one (it names both; "
                       "--dropout-p keep|drop to choose)")
    return found, "from the docstring"
