"""A sweep's blocks on a Dask distributed cluster (``verify run --scheduler``; docs/scale.md).

Each block of cases (verify.sweep.draw.blocks: independent and seeded) is one task: a worker
draws it and checks its cases, as a worker process of ``--jobs`` does. The results come back in
block order, a few blocks ahead per worker, so the output is that of one process with the same
seed. Dask reschedules a block whose worker died on another worker, up to the scheduler's
``distributed.scheduler.allowed-failures``; past that the block is lost (KilledWorker) and each of
its cases becomes a failing result saying so, never a silently smaller sweep. The blocks that
were retried and those lost are kept in the ``events`` the caller passes.

dask and distributed are an optional extra (``pip install 'backprop-verify[dask]'``), imported
only here, and only when a scheduler is asked for.
"""
from __future__ import annotations

import collections
import re
from typing import Any, Iterator

import torch

from verify.harness.trace import CaseResult
from verify.sweep.draw import draw_block
from verify.sweep.strategies import cases

SCHEDULER_FORMS = "local:N (a cluster of N worker processes on this machine) or tcp://HOST:PORT"
LOST = "lost"              # the start of a lost case's error: "lost: ..."
IN_FLIGHT_PER_WORKER = 3


def check_scheduler(text: str) -> str:
    """``text`` if it is a scheduler address this module takes; ValueError otherwise, or when
    dask.distributed is not installed (one line each)."""
    if not (re.fullmatch(r"local:[1-9][0-9]*", text) or re.fullmatch(r"(tcp|tls)://[^\s/]+:[0-9]+", text)):
        raise ValueError(f"--scheduler {text!r}: give {SCHEDULER_FORMS}")
    _distributed()
    return text


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed, which is not installed: "
                         "pip install 'backprop-verify[dask]'") from None
    return distributed


_strategies: dict[str, Any] = {}


def _block_task(check_fn, strategy_args: dict, block: tuple[int, int]) -> list[CaseResult]:
    """On a worker: draw one block and check its cases (one torch thread, as a sweep runs)."""
    from verify.sweep.execute import run_block
    torch.set_num_threads(1)
    key = repr(sorted(strategy_args.items()))
    strategy = _strategies.get(key)
    if strategy is None:
        strategy = _strategies[key] = cases(**strategy_args)
    return list(run_block(check_fn, draw_block(strategy, block)))


def _suspicious(dask_scheduler, key: str) -> int:
    """On the scheduler: how many workers died while running task ``key``."""
    ts = dask_scheduler.tasks.get(key)
    return 0 if ts is None else int(getattr(ts, "suspicious", 0))


def _client(distributed, scheduler: str):
    if scheduler.startswith("local:"):
        n = int(scheduler.partition(":")[2])
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=50)
        return distributed.Client(cluster), cluster, n
    client = distributed.Client(scheduler, timeout=30)
    return client, None, max(1, len(client.scheduler_info().get("workers", {})))


def iter_results(strategy_args: dict, todo: list[tuple[int, int]], check_fn, scheduler: str,
                 events: dict, lost_result) -> Iterator[CaseResult]:
    """Every case's result, block after block. ``events`` gets "retried" and "lost": the
    block numbers rescheduled after a worker died, and those lost for good; ``lost_result(case,
    text)`` makes a lost case's failing result."""
    distributed = _distributed()
    client, cluster, workers = _client(distributed, scheduler)
    events.setdefault("retried", [])
    events.setdefault("lost", [])
    try:
        pending: collections.deque = collections.deque()
        sent = 0
        token = f"{id(events):x}"
        while sent < len(todo) or pending:
            while sent < len(todo) and len(pending) < IN_FLIGHT_PER_WORKER * workers:
                pending.append((sent, client.submit(_block_task, check_fn, strategy_args, todo[sent],
                                                   key=f"verify-block-{token}-{sent}", pure=False)))
                sent += 1
            b, future = pending.popleft()
            try:
                results = future.result()
            except Exception as e:      # noqa: BLE001 - KilledWorker, or the task failed past every case
                events["lost"].append(b)
                why = "its worker died while checking it, on every retry" \
                    if isinstance(e, distributed.KilledWorker) else f"{type(e).__name__}: {e}"
                text = f"{LOST}: block {b} was lost on the cluster ({why})"
                results = [lost_result(case, text) for case in draw_block(cases(**strategy_args), todo[b])]
            if client.run_on_scheduler(_suspicious, key=future.key):
                events["retried"].append(b)
            future.release()
            yield from results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
