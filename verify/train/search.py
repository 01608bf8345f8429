"""Hypothesis searches over trainings: draw (network, optimizer hyperparameters, data seed), train a
step function against torch.optim for a few steps (verify.train.run), stop at the first training
that fails and shrink it. `verify mutants` (the optimizer mutants) and `verify check --impl
--optimizers` (a user's step) both search this way."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from verify.sweep.strategies import optimizer_specs
from verify.train.run import StepFn, TrainResult, train

SEARCH_STEPS = 3     # the bugs of an update show at its first or second step (a buffer needs one)


@dataclass
class Search:
    tried: list[TrainResult] = field(default_factory=list)      # every training, in the order run
    failed: list[TrainResult] = field(default_factory=list)     # the failing ones (the last: shrunk)
    seconds: float = 0.0

    @property
    def first_failure(self) -> int | None:
        """1-based index of the first failing training, in the order drawn."""
        return next((i for i, r in enumerate(self.tried, start=1) if not r.passed), None)

    @property
    def minimal(self) -> TrainResult | None:
        return self.failed[-1] if self.failed else None


def search(step_fn: StepFn | None, *, impl: str, specs: Any, optimizers: list[str] | None = None,
           fixed: dict | None = None, examples: int, seed: int, shrink: bool = True,
           time_limit: float | None = 10.0, isolate: bool = False,
           progress: Callable[[TrainResult], None] | None = None) -> Search:
    """Train ``step_fn`` (None: handimpl's) on up to ``examples`` drawn cases: ``specs`` a strategy
    of (spec, data seed, batch), the optimizers named (hyperparameters drawn, ``fixed`` ones kept).
    Stops at the first failing training and shrinks it (``shrink``); a step that runs past its
    time limit ends the search there, unshrunk (it would hang again)."""
    found = Search()
    start = time.perf_counter()
    phases = [Phase.generate] + ([Phase.shrink] if shrink else [])
    drawn = st.tuples(specs, optimizer_specs(names=optimizers, fixed=fixed))

    @hypothesis.seed(seed)
    @settings(max_examples=examples, database=None, phases=phases, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(drawn)
    def probe(case):
        (spec, data_seed, batch), optimizer = case
        # Shrinking a hang would hang each time: once a call has timed out, every later draw fails
        # at once, unrun, with the same error from the same line, so that hypothesis's replay of the
        # failure fails as it did (a draw that passed, or failed elsewhere, would make it flaky).
        result = found.tried[-1] if found.tried and found.tried[-1].error.startswith("CallTimedOut") else None
        if result is None:
            result = train(spec, optimizer, steps=SEARCH_STEPS, seed=data_seed, batch=batch, step_fn=step_fn,
                           impl=impl, time_limit=time_limit, isolate=isolate)
            found.tried.append(result)
            if progress:
                progress(result)
            if not result.passed:
                found.failed.append(result)
        if not result.passed:
            raise AssertionError(result.repro)

    try:
        probe()
    except AssertionError:
        pass
    found.seconds = time.perf_counter() - start
    return found
