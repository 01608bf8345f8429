"""The finite-difference referee and verify.check against torch.autograd.gradcheck, side by side.

    python benchmarks/referee.py [--examples N] [--skip-zoo]

gradcheck is given "the same functions": a torch.autograd.Function whose forward is the loss of
torch's float64 twin (verify.core.referee.Probe, forward only) at gradcheck's inputs (every
parameter and x), and whose backward returns the implementation's gradients at the case's own
values (so gradcheck compares the hand-written backward with its own finite differences of J).
It needs float64 inputs: a float32 case's gradients are compared after casting them to float64.

For each mutant of the zoo (verify/mutants/zoo.py) but the optimizer ones (update rules, trained
by `verify train`: gradcheck and the referee have no derivative to check there), its minimal counterexample (a sweep of
``--examples`` cases, shrunk: what --referee fd judges) is given to all three: verify.check (caught: it fails),
gradcheck (caught: it returns False or raises), and the referee (what it says of the first
diverging tensor, the method it used there, complex step or central differences, and its error bar
relative to torch's value). Then a kink convention bug and a float32 precision bug, each on correct code
too (a false alarm is a catch of correct code), and the wall time of gradcheck against verify.check
on a 161-parameter network (8-16-1) and a 26,122-parameter one (64-128-128-10).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import handimpl
from handimpl.stack import stack_backprop
from verify.core.referee import Probe
from verify.harness.referee import referee_case
from verify.harness.trace import check, trace
from verify.mutants.impl import __getattr__ as mutant_impl
from verify.mutants.run import run_mutant
from verify.mutants.zoo import OPTIM_ZOO, ZOO
from verify.train.run import train


def gradcheck_case(spec, case, impl) -> tuple[bool, float, str]:
    """(caught, seconds, why) of torch.autograd.gradcheck on the implementation's backward."""
    probe = Probe(spec, case)
    names = [n for n in probe.inputs if n not in probe.base]
    keys = ["dx" if n == "x" else "d" + n for n in names]

    class HandJ(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            with torch.no_grad():
                saved = [probe.inputs[n].detach().clone() for n in names]
                for n, t in zip(names, tensors):
                    probe.inputs[n].data.copy_(t)
                J = probe.evaluate()
                for n, s in zip(names, saved):
                    probe.inputs[n].data.copy_(s)
            return torch.tensor(J, dtype=torch.float64)

        @staticmethod
        def backward(ctx, g):
            hand = impl(spec, case.params, case.x, case.y)
            return tuple(None if k not in hand else g * torch.from_numpy(np.asarray(hand[k], dtype=np.float64))
                         for k in keys)

    inputs = [probe.inputs[n].detach().clone().requires_grad_(True) for n in names]
    start = time.perf_counter()
    try:
        ok = torch.autograd.gradcheck(HandJ.apply, inputs, raise_exception=False)
        why = "" if ok else "mismatch"
    except Exception as e:      # noqa: BLE001 - a raising implementation is caught too
        ok, why = False, type(e).__name__
    return not ok, time.perf_counter() - start, why


def verify_case(spec, seed, batch, impl):
    start = time.perf_counter()
    result = check(spec, seed, batch, impl=impl)
    t_check = time.perf_counter() - start
    start = time.perf_counter()
    judged = referee_case(result, impl)
    t_ref = time.perf_counter() - start
    first = judged.first_divergence
    return (not result.passed), t_check, (first.referee or "-") if first else "-", t_ref, _method(first)


def _method(first) -> str:
    """The referee's method on the first diverging tensor (complex step or central differences) and
    its error bar relative to torch's value there, or '-'."""
    if first is None or first.referee_error is None:
        return "-"
    method = "complex" if "complex step" in first.referee_note else "central"
    size = max(abs(first.torch_value), abs(first.referee_value or 0.0))
    return f"{method} {first.referee_error / size:.0e}" if size > 0 else f"{method} ±{first.referee_error:.0e}"


def row(label, spec, seed, batch, impl):
    run = trace(spec, seed, batch)
    g_caught, g_time, why = gradcheck_case(run.spec, run.case, impl or _default(run.spec))
    v_caught, v_time, opinion, r_time, method = verify_case(spec, seed, batch, impl)
    print(f"{label:42s} {'yes' if v_caught else 'no':>6s} {v_time * 1e3:8.1f} {'yes' if g_caught else 'no':>9s} "
          f"{g_time * 1e3:9.1f} {opinion:>9s} {r_time * 1e3:8.1f} {method:>13s}   {spec} seed {seed} batch {batch}",
          flush=True)
    return v_caught, g_caught


def optimizer_row(m, found) -> None:
    """An optimizer mutant: `verify train` on its minimal counterexample. gradcheck has nothing to
    check (an update rule has no derivative to compare), and the referee judges no training."""
    start = time.perf_counter()
    result = train(found.spec, found.optimizer, steps=found.steps, seed=found.seed, batch=found.batch,
                   step_fn=mutant_impl(m.name), impl=m.name)
    took = time.perf_counter() - start
    print(f"{m.name:42s} {'yes' if not result.passed else 'no':>6s} {took * 1e3:8.1f} {'n/a':>9s} {'':9s} "
          f"{'n/a':>9s} {'':8s} {'':>13s}   {found.repro}", flush=True)


def _default(spec):
    return stack_backprop if hasattr(spec, "layers") else handimpl.backprop


def float32_intermediate(spec, params, x, y):
    """A float64 backprop whose first layer's product is rounded to float32: a precision bug."""
    out = dict(handimpl.backprop(spec, params, x, y))
    out["dW1"] = out["dW1"].astype(np.float32).astype(np.float64)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=30)
    parser.add_argument("--skip-zoo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load: {os.getloadavg()}")
    head = (f"{'':42s} {'verify':>6s} {'ms':>8s} {'gradcheck':>9s} {'ms':>9s} {'referee':>9s} {'ms':>8s} "
            f"{'method, bar':>13s}")
    caught = {"verify": 0, "gradcheck": 0}
    if not args.skip_zoo:
        print(f"\nthe mutant zoo ({len(ZOO)} mutants; each one's minimal counterexample from {args.examples} cases)")
        print(head)
        for m in ZOO:
            found = run_mutant(m, examples=args.examples).minimal
            if found is None:
                print(f"{m.name:42s} (no failing case in {args.examples})")
                continue
            if m in OPTIM_ZOO:
                optimizer_row(m, found)
                continue
            v, g = row(m.name, str(found.spec), found.seed, found.batch, mutant_impl(m.name))
            caught["verify"] += v
            caught["gradcheck"] += g
        judged = len(ZOO) - len(OPTIM_ZOO)
        print(f"caught: verify {caught['verify']} of {judged}, gradcheck {caught['gradcheck']} of {judged}; "
              f"the {len(OPTIM_ZOO)} optimizer mutants are update rules, trained by verify train (above), with no "
              f"derivative for gradcheck or the referee to check")
    print("\na kink convention bug (relu′(0) = 1) and a float32 precision bug (dW¹ rounded to float32 in a "
          "float64 case), each with correct code beside it (a catch of correct code is a false alarm)")
    print(head)
    kink = ("2-3-1:relu,identity:mse_loss", 1, 3)
    row("kink bug: relu_prime_at_zero_is_one", *kink, mutant_impl("relu_prime_at_zero_is_one"))
    row("correct code at the same kink", *kink, None)
    smooth = ("4-8-3:tanh,identity:mse_loss", 2, 4)
    row("float32 precision bug", *smooth, float32_intermediate)
    row("correct code on the same case", *smooth, None)
    print("\nwall time on one case (batch 4), correct code, float64")
    for spec in ("8-16-1:tanh,identity:mse_loss", "64-128-128-10:tanh,tanh,identity:mse_loss"):
        run = trace(spec, 0, 4)
        n = sum(W.size + (0 if b is None else b.size) for W, b in run.case.params)
        check(spec, 0, 4)                                 # warm
        start = time.perf_counter()
        for _ in range(5):
            check(spec, 0, 4)
        t_check = (time.perf_counter() - start) / 5
        caught_g, t_grad, _ = gradcheck_case(run.spec, run.case, handimpl.backprop)
        print(f"{spec:48s} {n:6d} parameters: verify.check {t_check * 1e3:8.1f} ms, gradcheck {t_grad * 1e3:9.1f} ms"
              f"{' (false alarm)' if caught_g else ''}")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
