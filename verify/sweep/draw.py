"""The draw: a sweep's cases, in blocks of about BLOCK, each block one hypothesis example
holding a list of cases under a seed derived from the sweep's seed alone."""
from __future__ import annotations

import contextlib
import hashlib
from typing import Any, Iterator

from hypothesis import HealthCheck, Phase, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

try:        # hypothesis's pool of literals collected from imported modules (6.13x and later)
    from hypothesis.internal.conjecture import providers as _hypothesis_providers
    from hypothesis.internal.constants_ast import Constants as _Constants
    from sortedcontainers import SortedSet as _SortedSet  # a dependency of hypothesis
except ImportError:                                           # an older hypothesis: no such pool
    _hypothesis_providers = None

from verify.sweep.strategies import cases

# The integer literals hypothesis offers the sweep's draws (see pinned_constants): the pool it
# collected in a `verify run` process from the source of verify and handimpl, fixed here so that
# every seed keeps its cases whatever the process imports or the source's literals become.
PINNED_INTEGERS = (-1022, -126, -100, 130, 143, 200, 297, 300, 438, 511, 1000, 1024, 1600, 2000,
                   4096, 200_000)
BLOCK = 40                  # cases per block, i.e. per hypothesis example (fewer for deep specs)
CHOICES_PER_BLOCK = 1600    # choices one example comfortably holds (hypothesis stops at 8 * 1024,
                            # and caps its early examples lower: 100 cases of depth <= 32 overran)
OPTIMIZER_CHOICES = 10      # about the choices an optimizer and its hyperparameters take
Case = tuple  # (NetSpec | StackSpec, data seed, batch), or with --optimizers (..., OptimizerSpec)


def draw_cases(strategy, n: int, seed: int) -> list[Case]:
    """``n`` cases hypothesis draws from ``strategy`` under ``seed``, all in one example.

    One example holding a list of n cases, not n examples of one: the engine's cost per example
    (saving and restoring the global random states, its choice tree) is paid once, and across
    examples its generator leans to the simplest inputs and copies parts of one example into
    the next, while the cases of one list are independent draws from ``strategy``. Hypothesis's
    first example is always its simplest, so the example offers st.just(None) first, which
    takes it, and the second is the list. A list that does
    not fit in one example (hypothesis caps the choices one may make) is drawn in two halves.
    """
    if n == 0:
        return []
    drawn: list[Case] = []

    @hypothesis_seed(seed)
    @hsettings(database=None, max_examples=2, phases=[Phase.generate], deadline=None,
               suppress_health_check=list(HealthCheck), derandomize=False)
    @given(st.one_of(st.just(None), st.lists(strategy, min_size=n, max_size=n)))
    def record(example):
        if example is not None and not drawn:
            drawn.extend(example)

    # No example database, so no key for it: as hypothesis.find does. Otherwise each call
    # derives one from the function's source (inspect.getsource, tokenize).
    record._hypothesis_internal_database_key = None
    with pinned_constants():
        record()
    if drawn:
        return drawn
    if n == 1:
        raise RuntimeError(f"hypothesis drew no case from {strategy!r} under seed {seed}")
    return draw_cases(strategy, n // 2, _derived(seed, "a")) + \
        draw_cases(strategy, n - n // 2, _derived(seed, "b"))


@contextlib.contextmanager
def pinned_constants():
    """Within this block hypothesis offers the literals PINNED_INTEGERS, whatever the process
    has imported.

    Hypothesis (6.13x and later) collects the literals of every imported module whose file lies
    outside site-packages and the standard library (integers with |n| >= 100, floats, strings)
    and offers them in about one integer draw in twenty, so the cases of a seed would change
    with what the process had imported (a user's script, the test modules, the CLI) and with any
    edit of a literal in verify's own source. There is no setting to turn it off, so the pool
    hypothesis reads (providers._get_local_constants) is the pinned one here, and the cache of
    its values permitted per range is emptied on the way in and out, so that the process's own
    tests get their pool back. The sweep draws integers only, so only integers are pinned. Not
    thread-safe: another thread's hypothesis draws in this block would see the pinned pool."""
    if _hypothesis_providers is None or not hasattr(_hypothesis_providers, "_get_local_constants"):
        yield
        return
    pool = _Constants(integers=_SortedSet(PINNED_INTEGERS), floats=_SortedSet(), bytes=_SortedSet(),
                      strings=_SortedSet())
    saved = _hypothesis_providers._get_local_constants
    _hypothesis_providers._get_local_constants = lambda: pool
    _hypothesis_providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        _hypothesis_providers._get_local_constants = saved
        _hypothesis_providers.CONSTANTS_CACHE.cache.clear()


def _derived(seed: int, *path: Any) -> int:
    """A 32-bit hypothesis seed derived from ``seed`` and ``path``."""
    text = "/".join(map(str, ("verify-run", seed, *path)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def blocks(strategy_args: dict, n: int, seed: int) -> list[tuple[int, int]]:
    """(hypothesis seed, number of cases) of each block the N cases are drawn in.

    Blocks hold about BLOCK cases (fewer when deep specs make cases long), and their number is
    rounded up to a multiple of 8 where blocks keep 16 cases or more, so that 2, 4 or 8 worker
    processes get equal shares. The split depends only on N, the sweep seed and the strategy's
    max_depth, never on --jobs, so worker processes can each draw whole blocks themselves and the output
    stays that of a single process.
    """
    max_depth = strategy_args.get("max_depth", 5)          # net_specs's default
    per_case = 2 * max_depth + 14 + (OPTIMIZER_CHOICES if strategy_args.get("optimizers") is not None else 0)
    size = max(1, min(BLOCK, CHOICES_PER_BLOCK // per_case))
    k = max(1, -(-n // size))
    k8 = -(-k // 8) * 8
    if n // k8 >= 16:
        k = k8
    sizes = [n // k + (b < n % k) for b in range(k)]
    return [(_derived(seed, b), size) for b, size in enumerate(sizes) if size]


def draw_block(strategy, block: tuple[int, int]) -> list[Case]:
    block_seed, size = block
    return draw_cases(strategy, size, block_seed)


def iter_blocks(strategy_args: dict, n: int, seed: int) -> Iterator[list[Case]]:
    """The N cases of a sweep, block after block (what ``sweep`` checks, in case_id order),
    each block drawn when reached."""
    strategy = cases(**strategy_args)
    for block in blocks(strategy_args, n, seed):
        yield draw_block(strategy, block)


def draw_all(strategy_args: dict, n: int, seed: int) -> list[Case]:
    """All N cases of a sweep, drawn up front."""
    return [case for block in iter_blocks(strategy_args, n, seed) for case in block]


