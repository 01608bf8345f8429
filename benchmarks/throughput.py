"""Throughput of the sweep path against the bare minimum, on the same drawn cases.

(a) the full sweep path: hypothesis draw, verify.check on every case (torch twin, for float32
    also the float64 reference, every tensor compared, records kept);
(b) the bare loop: build both nets (data, parameters, the torch twin), one forward/backward
    on each side, np.allclose on every dW and db.

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
from verify.sweep import draw_all, sweep
from verify.torch_ops import TORCH_LOSSES
from verify.twin import build_twin, torch_target

SMALL = dict(max_depth=4, max_width=16, max_batch=16)


def bare_case(spec, seed: int, batch: int) -> bool:
    """Both nets, forward/backward on each, allclose on dW and db; nothing kept."""
    case = draw_case(spec, seed, batch)
    hand = handimpl.backprop(spec, case.params, case.x, case.y)
    model = build_twin(spec, case.params)
    X = torch.from_numpy(case.x)
    J = TORCH_LOSSES[spec.loss](model(X), torch_target(case.y, spec.dtype), **spec.loss_kwargs)
    J.backward()
    ok = True
    for l, linear in enumerate(model[0::2], start=1):
        ok &= np.allclose(hand[f"dW{l}"], linear.weight.grad.numpy())
        if spec.bias:
            ok &= np.allclose(hand[f"db{l}"], linear.bias.grad.numpy())
    return bool(ok)


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
    if args.profile:
        cProfile.runctx("time_sweep(args.examples, args.seed, 1)", globals(), locals(), "/tmp/sweep.prof")
        pstats.Stats("/tmp/sweep.prof").sort_stats("tottime").print_stats(25)
    rounds = {"a": [], "b": [], "j": []}
    for _ in range(args.rounds):        # interleaved, so that machine noise hits both sides alike
        rounds["a"].append(time_sweep(args.examples, args.seed, 1))
        rounds["b"].append(time_bare(args.examples, args.seed))
        if args.jobs > 1:
            rounds["j"].append(time_sweep(args.examples, args.seed, args.jobs))
    a, b = statistics.median(rounds["a"]), statistics.median(rounds["b"])
    print(f"cases: {args.examples} (depth <= 4, width <= 16, batch <= 16, seed {args.seed}), "
          f"median of {args.rounds} interleaved rounds")
    print(f"(a) full sweep path: {a:8.1f} cases/s")
    print(f"(b) bare loop:       {b:8.1f} cases/s")
    if args.jobs > 1:
        aj = statistics.median(rounds["j"])
        print(f"(a) with --jobs {args.jobs}:   {aj:8.1f} cases/s  (speed-up {aj / a:.2f})")
    print(f"ratio: {a / b:.2f}")


if __name__ == "__main__":
    main()
