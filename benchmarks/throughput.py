"""Throughput of the sweep path against the bare minimum, on the same drawn cases.

(a) the full sweep path: hypothesis draw, verify.check on every case (torch twin, for float32
    also the float64 reference, every tensor compared, records kept);
(b) the bare loop: build both nets (data, parameters, the torch twin), one forward/backward
    on each side, np.allclose on every dW and db;
(c) the required floor of (a): the hypothesis draw, the bare loop, and for float32 cases the
    float64 twin's forward/backward that the verdict needs (issue 2), nothing compared or kept.
    (c)/(b) is the most any implementation of (a) could reach; it is printed as the ceiling.

    python benchmarks/throughput.py [--examples N] [--seed S] [--jobs J] [--rounds R] [--profile]

The last line printed is ``ratio: X`` = cases/s of (a) / cases/s of (b).
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
from verify.data import draw_case
from verify.sweep import _pool_context, draw_all, sweep
from verify.torch_ops import TORCH_LOSSES
from verify.twin import TORCH_DTYPES, build_twin, reload_twin, torch_target

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


def time_sweep(n: int, seed: int, jobs: int) -> float:
    start = time.perf_counter()
    result = sweep(examples=n, seed=seed, jobs=jobs, max_shrunk=0, **SMALL)
    elapsed = time.perf_counter() - start
    assert len(result.results) == n
    return n / elapsed


def time_bare(n: int, seed: int) -> float:
    drawn = draw_all(SMALL, n, seed)
    start = time.perf_counter()
    for spec, s, batch in drawn:
        bare_case(spec, s, batch)
    return n / (time.perf_counter() - start)


def time_floor(n: int, seed: int) -> float:
    start = time.perf_counter()
    for spec, s, batch in draw_all(SMALL, n, seed):
        floor_case(spec, s, batch)
    return n / (time.perf_counter() - start)


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
    with _pool_context().Pool(jobs) as pool:
        pool.map(abs, range(jobs), chunksize=1)        # workers started before the clock runs
        start = time.perf_counter()
        pool.map(_spin, tasks, chunksize=1)
        parallel = time.perf_counter() - start
    return serial / parallel


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="also time the sweep with J processes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    p.add_argument("--profile", action="store_true", help="cProfile the sweep path, top 25")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    time_sweep(20, args.seed + 1, 1)            # warm up both paths (lazy torch init, imports)
    time_bare(20, args.seed + 1)
    time_floor(20, args.seed + 1)
    if args.profile:
        cProfile.runctx("time_sweep(args.examples, args.seed, 1)", globals(), locals(), "/tmp/sweep.prof")
        pstats.Stats("/tmp/sweep.prof").sort_stats("tottime").print_stats(25)
    rounds = {"a": [], "b": [], "c": [], "j": [], "m": []}
    for _ in range(args.rounds):        # interleaved, so that machine noise hits both sides alike
        rounds["a"].append(time_sweep(args.examples, args.seed, 1))
        rounds["b"].append(time_bare(args.examples, args.seed))
        rounds["c"].append(time_floor(args.examples, args.seed))
        if args.jobs > 1:
            rounds["j"].append(time_sweep(args.examples, args.seed, args.jobs))
            rounds["m"].append(time_machine(args.jobs))
    a, b, c = (statistics.median(rounds[k]) for k in "abc")
    print(f"cases: {args.examples} (depth <= 4, width <= 16, batch <= 16, seed {args.seed}), "
          f"median of {args.rounds} interleaved rounds")
    print(f"(a) full sweep path: {a:8.1f} cases/s")
    print(f"(b) bare loop:       {b:8.1f} cases/s")
    print(f"(c) required floor:  {c:8.1f} cases/s  (draw + bare loop + float64 reference; "
          f"ceiling for the ratio: {c / b:.2f})")
    if args.jobs > 1:
        aj = statistics.median(rounds["j"])
        print(f"(a) with --jobs {args.jobs}:   {aj:8.1f} cases/s  (speed-up {aj / a:.2f}; target "
              f"{0.8 * args.jobs:.2f}; a plain CPU loop gets {statistics.median(rounds['m']):.2f} "
              f"from {args.jobs} processes on this machine now)")
    print(f"ratio: {a / b:.2f}")


if __name__ == "__main__":
    main()
