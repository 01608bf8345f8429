"""Throughput of the sweep path against the bare minimum, on the same drawn cases.

(a) the full sweep path: verify.sweep.run.sweep, i.e. hypothesis draw, verify.check on every case
    (torch twin, for float32 also the float64 reference, every tensor compared, records kept);
(b) the bare loop: build both nets (data, parameters, the torch twin), one forward/backward
    on each side, np.allclose on every dW and db;
(c) the required floor of (a): the hypothesis draw, the bare loop, and for float32 cases the
    float64 twin's forward/backward that the verdict needs (issue 2), nothing compared or kept.
    (c)/(b) is the most any implementation of (a) could reach; it is printed as the ceiling.

The N cases are taken in chunks of CHUNK: a sweep of CHUNK cases (a), then (c) and (b) on the
cases that sweep drew, then the next chunk. Each side's rate is its cases over its summed time in
a round, and each round gives a ratio; medians over the rounds are printed. Interleaving a
fraction of a second apart makes a busy machine slow all three alike; whole 600-case runs taken
seconds apart moved the ratio by ±0.06 on this project's machine. Each chunk is a whole sweep()
call, so (a) also pays a sweep's fixed costs once per chunk.

    python benchmarks/throughput.py [--examples N] [--seed S] [--jobs J] [--rounds R] [--profile]

With --jobs J, a sweep of all N cases in J processes is timed against the same sweep in one.
The last line printed is ``ratio: X`` = cases/s of (a) / cases/s of (b), the median over rounds.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch

import handimpl
from verify.core.data import draw_case
from verify.core.torch_ops import TORCH_LOSSES
from verify.core.twin import TORCH_DTYPES, build_twin, reload_twin, torch_target
from verify.sweep.draw import draw_all
from verify.sweep.execute import _pool_context
from verify.sweep.run import sweep

SMALL = dict(max_depth=4, max_width=16, max_batch=16)


def twin_backward(spec, case, dtype: str | None = None, model=None):
    """The twin (in ``dtype``, default the spec's; ``model`` if given, holding the parameters in
    that dtype) after one forward/backward."""
    dtype = dtype or spec.dtype
    model = build_twin(spec, case.params, dtype) if model is None else model
    X = torch.from_numpy(case.x).to(TORCH_DTYPES[dtype])
    J = TORCH_LOSSES[spec.loss](model(X), torch_target(case.y, dtype), **spec.loss_kwargs)
    J.backward()
    return model


def bare_case(spec, seed: int, batch: int) -> bool:
    """Both nets, forward/backward on each, allclose on dW and db; nothing kept."""
    return _bare(spec, draw_case(spec, seed, batch))[0]


def _bare(spec, case):
    """(whether every dW and db agree, the twin after its backward pass)."""
    hand = handimpl.backprop(spec, case.params, case.x, case.y)
    model = twin_backward(spec, case)
    ok = True
    for l, linear in enumerate(model[0::2], start=1):
        ok &= np.allclose(hand[f"dW{l}"], linear.weight.grad.numpy())
        if spec.bias:
            ok &= np.allclose(hand[f"db{l}"], linear.bias.grad.numpy())
    return bool(ok), model


def floor_case(spec, seed: int, batch: int) -> None:
    """The bare loop plus, for float32, the float64 reference run: what (a) cannot do without."""
    case = draw_case(spec, seed, batch)
    _, model = _bare(spec, case)
    if spec.dtype == "float32":             # the same twin, reloaded in float64, as verify.check does
        twin_backward(spec, case, "float64", reload_twin(model, case.params, "float64"))


CHUNK = 40          # one block of verify.sweep.run: a sweep of CHUNK cases draws them as one example


def time_sweep(n: int, seed: int, jobs: int) -> float:
    """Seconds for sweep() of ``n`` cases (no shrinking)."""
    start = time.perf_counter()
    result = sweep(examples=n, seed=seed, jobs=jobs, max_shrunk=0, **SMALL)
    elapsed = time.perf_counter() - start
    assert len(result.results) == n
    return elapsed


def time_loop(one_case, drawn) -> float:
    """Seconds for ``one_case(spec, seed, batch)`` on every drawn case."""
    start = time.perf_counter()
    for spec, s, batch in drawn:
        one_case(spec, s, batch)
    return time.perf_counter() - start


def time_round(n: int, seed: int) -> dict[str, float]:
    """Cases/s of (a), (b), (c) over the N cases, chunk by chunk (see the module docstring)."""
    seconds = {"a": 0.0, "b": 0.0, "c": 0.0}
    sizes = [min(CHUNK, n - i) for i in range(0, n, CHUNK)]
    for k, size in enumerate(sizes):
        chunk_seed = seed * 10_000 + k
        seconds["a"] += time_sweep(size, chunk_seed, 1)
        floor, drawn = time_floor(size, chunk_seed)        # drawn: the cases that sweep checked
        seconds["c"] += floor
        seconds["b"] += time_loop(bare_case, drawn)
    return {k: n / t for k, t in seconds.items()}


def time_floor(n: int, seed: int) -> tuple[float, list]:
    """(c): seconds for the sweep's draw of its ``n`` cases, then floor_case on each; and
    the cases drawn."""
    start = time.perf_counter()
    drawn = draw_all(SMALL, n, seed)
    return time.perf_counter() - start + time_loop(floor_case, drawn), drawn


def _spin(_: int) -> int:
    total = 0
    for i in range(2_000_000):
        total += i * i
    return total


def time_machine(jobs: int) -> float:
    """The speed-up these cores give right now to plain CPU-bound Python in ``jobs`` processes
    (a shared machine may deliver less than ``jobs`` cores' worth): the yardstick for --jobs."""
    tasks = range(4 * jobs)
    start = time.perf_counter()
    for i in tasks:
        _spin(i)
    serial = time.perf_counter() - start
    with _pool_context(None).Pool(jobs) as pool:
        pool.map(abs, range(jobs), chunksize=1)        # workers started before the clock runs
        start = time.perf_counter()
        pool.map(_spin, tasks, chunksize=1)
        parallel = time.perf_counter() - start
    return serial / parallel


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="also time a whole sweep in J processes")
    p.add_argument("--rounds", type=int, default=5, help="repetitions (medians reported)")
    p.add_argument("--profile", action="store_true", help="cProfile the sweep path, top 25")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    time_round(CHUNK, args.seed + 1)           # warm up all paths (lazy torch init, imports)
    if args.profile:
        cProfile.runctx("time_sweep(args.examples, args.seed, 1)", globals(), locals(), "/tmp/sweep.prof")
        pstats.Stats("/tmp/sweep.prof").sort_stats("tottime").print_stats(25)
    rounds: dict[str, list[float]] = {"a": [], "b": [], "c": [], "ratio": [], "ceiling": [],
                                      "jobs": [], "machine": []}
    for _ in range(args.rounds):
        rates = time_round(args.examples, args.seed)
        for k in "abc":
            rounds[k].append(rates[k])
        rounds["ratio"].append(rates["a"] / rates["b"])
        rounds["ceiling"].append(rates["c"] / rates["b"])
        if args.jobs > 1:               # whole sweeps, one process against J, back to back
            one = time_sweep(args.examples, args.seed, 1)
            rounds["jobs"].append(one / time_sweep(args.examples, args.seed, args.jobs))
            rounds["machine"].append(time_machine(args.jobs))
    med = {k: statistics.median(v) for k, v in rounds.items() if v}
    print(f"cases: {args.examples} (depth <= 4, width <= 16, batch <= 16), in sweeps of {CHUNK} "
          f"(seeds {args.seed * 10_000}...), medians of {args.rounds} rounds")
    print(f"(a) full sweep path: {med['a']:8.1f} cases/s")
    print(f"(b) bare loop:       {med['b']:8.1f} cases/s")
    print(f"(c) required floor:  {med['c']:8.1f} cases/s  (draw + bare loop + float64 reference; "
          f"ceiling for the ratio: {med['ceiling']:.2f})")
    if args.jobs > 1:
        print(f"--jobs {args.jobs}: speed-up {med['jobs']:.2f} over one process on a sweep of "
              f"{args.examples} (target {0.8 * args.jobs:.2f}; a plain CPU loop gets "
              f"{med['machine']:.2f} from {args.jobs} processes on this machine now)")
    print(f"ratio rounds: {' '.join(f'{r:.2f}' for r in rounds['ratio'])}")
    print(f"ratio: {med['ratio']:.2f}")


if __name__ == "__main__":
    main()
