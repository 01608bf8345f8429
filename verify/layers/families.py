"""The layer-function families of the CS231n convention, each one how to draw a case, how to
call the user's functions on it, and what to compare with what.

The reference of every result is torch's, in float64, through the matching handimpl layer's
torch counterpart (verify.core.stack_twin.torch_layer), with the layouts converted (the
convention's affine w is (D, M), torch's weight transposed), and where the convention has its own
rule (batch norm's running statistics: momentum the weight of the old value, the biased
variance) that rule applied to torch's batch statistics. Each result is judged within the
handimpl layer's a priori bound (its forward_error / backward_error / buffer_errors), never a
fixed rtol.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st

from handimpl.layers import Act, BatchNorm, Context, Conv2d, Dropout, GroupNorm, LayerNorm, Linear, MaxPool2d
from handimpl.losses import LOSSES
from handimpl.rounding import gamma, underflow
from verify.byo.guard import TimeLimit
from verify.core.referee import function_gradients
from verify.core.stack_bounds import textbook_of_layer
from verify.core.stack_twin import torch_layer
from verify.layers.calls import DTYPE, Failed, U, as_tuple, call, copied, failed_record, guarded_value, judge, modified

TINY = underflow(DTYPE)
STYLES = ("normal", "integers", "wide", "ties")  # integers: exact zeros and ties; ties: 0s and 1s, ties everywhere


@dataclasses.dataclass
class Case:
    """One drawn case: its arrays (and y), its hyperparameters, how its values were drawn."""
    arrays: dict[str, Any]
    hyper: dict[str, Any]
    style: str
    value_seed: int

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in self.arrays.items())
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{shapes}" + (f"; {hyper}" if hyper else "") + f"; values {self.style} (data seed {self.value_seed})"

    def size(self) -> int:
        return sum(int(np.size(v)) for v in self.arrays.values())


@dataclasses.dataclass
class Settings:
    """What a sweep tells each check: the time limit, dropout's p convention; and what the checks
    remark on without failing (``remarks``, said in the pair's note)."""
    limit: TimeLimit = dataclasses.field(default_factory=lambda: TimeLimit(10.0))
    dropout_keep: bool = True
    remarks: set = dataclasses.field(default_factory=set)
    fd: bool = False             # judged by the finite-difference referee alone (--reference fd)


def _values(rng: np.random.Generator, shape: tuple, style: str) -> np.ndarray:
    if style == "integers":
        return rng.integers(-3, 4, shape).astype(np.float64)
    if style == "ties":
        return rng.integers(0, 2, shape).astype(np.float64)
    if style == "wide":
        return rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
    if style == "extreme":
        return rng.standard_normal(shape) * 1e3
    return rng.standard_normal(shape)


def _rng(data, styles=STYLES) -> tuple[np.random.Generator, str, int]:
    style = data.draw(st.sampled_from(styles), label="values")
    seed = data.draw(st.integers(0, 2**31 - 1), label="value seed")
    return np.random.default_rng(seed), style, seed


def _batch(data, low: int = 1) -> int:
    return data.draw(st.integers(low, 5), label="N")


def _same(a):
    return a


def _zeros(a: np.ndarray) -> np.ndarray:
    return np.zeros_like(a, dtype=np.float64)


def reference(layer, in_shape: tuple, p: dict, x: np.ndarray, dout: np.ndarray | None,
              training: bool = True) -> dict[str, np.ndarray]:
    """torch's float64 out, dx, d<param> and buffers for ``layer`` holding ``p`` on x."""
    module = torch_layer(layer, in_shape, {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}, torch.float64)
    module.train(training)
    with torch.enable_grad():
        X = torch.from_numpy(np.array(x, dtype=np.float64)).requires_grad_(True)
        Y = module(X)
        if dout is not None:
            Y.backward(torch.from_numpy(np.array(dout, dtype=np.float64)))
    out = {"out": Y.detach().numpy().copy()}
    if dout is not None:
        out["dx"] = X.grad.numpy().copy()
    for ours, theirs in layer.torch_names.items():
        t = getattr(module, theirs, None)
        if isinstance(t, torch.nn.Parameter):
            if t.grad is not None:
                out["d" + ours] = t.grad.numpy().copy()
        elif t is not None:
            out[ours] = t.detach().numpy().copy()
    return out


@dataclasses.dataclass(frozen=True)
class Explained:
    """A case as one handimpl layer sees it: the layer, x in its layout, its parameters, dout,
    the mode (verify.explain.layers.explain_layer's arguments)."""
    layer: Any
    x: np.ndarray
    params: dict
    dout: np.ndarray
    training: bool = True

    def stack_spec(self) -> str:
        """A stack spec of this layer alone (shapes as the case's), for `verify explain` on a drawn case."""
        shape = tuple(self.x.shape[1:])
        out = self.layer.out_shape(shape)
        return (f"{'x'.join(map(str, shape))}>{self.layer.spec()}{'>flatten' if len(out) > 1 else ''}|mse_loss"
                + ("" if self.training else ":mode=eval"))


def textbook_of(layer) -> tuple[Any, dict]:
    """(the layer's textbook view, judge's keywords naming its forms), or (None, {}) where the
    layer declares no textbook form (the textbook allowance of the verdict, docs/verdict.md)."""
    view = textbook_of_layer(layer)
    if view is None:
        return None, {}
    return view, {"forms": layer.textbook, "who": layer.kind}


class Family:
    """A forward/backward pair of the convention (a loss: one function)."""
    name = ""
    forward = ""
    backwards: tuple[str, ...] = ()
    note = ""                                     # the convention's difference from torch, said in the report
    calls: tuple[str, ...] = ()                   # the calls of a case, for its repro (names and hyperparameters)
    not_by_fd = ""                                # why it cannot be judged by the finite-difference referee alone

    def functions(self) -> list[tuple[str, ...]]:
        """The pairs to check: (forward, backward) for each backward; (function,) for a loss."""
        return [(self.forward, b) for b in self.backwards] if self.backwards else [(self.forward,)]

    def call_lines(self, names: tuple[str, ...], case: Case) -> list[str]:
        """The Python lines that call the pair on ``case``'s arrays (bound to their names)."""
        return [line.format(f=names[0], b=names[-1], **case.hyper) for line in self.calls]

    def draw(self, data) -> Case:
        raise NotImplementedError

    def explained(self, case: Case) -> Explained | None:
        """The matching handimpl layer on ``case``'s own arrays, for verify explain's page (None
        where there is none: dropout's mask is the user's own, a loss is no layer)."""
        return None

    def check(self, fns: tuple[Callable, ...], names: tuple[str, ...], case: Case, settings: Settings,
              records: list) -> None:
        raise NotImplementedError

    def run(self, fns, names, case: Case, settings: Settings) -> list:
        """Every record of one case; a call that failed is one failing record, never an exception."""
        records: list = []
        try:
            self.check(fns, names, case, settings, records)
        except Failed as e:
            records.append(failed_record(e.name, e.message))
        return records

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def forward_call(fn, name: str, args: tuple, settings: Settings, records: list,
                     what: str = "(out, cache)", n: int = 2, labels: tuple = ("x", "w", "b")) -> tuple:
        given = tuple(copied(a) for a in args)
        value = call(fn, name, given, settings.limit)
        for label, original, g in zip(labels, args, given):
            m = modified(name, original, g, label)
            if m is not None:
                records.append(m)
        return as_tuple(value, name, n, what)

    @staticmethod
    def backward_call(fn, name: str, dout: np.ndarray, cache: Any, settings: Settings, records: list,
                      what: str, n: int) -> tuple:
        d = dout.copy()
        value = call(fn, name, (d, cache), settings.limit)
        m = modified(name, dout, d, "dout")
        if m is not None:
            records.append(m)
        return as_tuple(value, name, n, what)

    @staticmethod
    def fd_reference(fn, name: str, args: tuple, labels: tuple, wanted: tuple, dout: np.ndarray,
                     settings: Settings) -> dict:
        """The finite-difference referee's ∂(Σ dout ⊙ out)/∂(each of ``wanted``), out the user's own
        forward ``fn(*args)`` (--reference fd: a function with no torch counterpart); the arguments
        past ``labels`` (hyperparameters, a param dict) are given afresh to every call."""
        rest = args[len(labels):]

        def forward(values: dict) -> np.ndarray:
            given = tuple(values[label] for label in labels) + tuple(copied(a) for a in rest)
            return np.asarray(as_tuple(call(fn, name, given, settings.limit), name, 2, "(out, cache)")[0])

        return function_gradients(forward, dict(zip(labels, args)), dout, wanted)

    def layer_pair(self, fns, names, settings, records, *, layer, p: dict, x: np.ndarray, dout: np.ndarray,
                   args: tuple, labels: tuple = ("x",), grads: tuple = (), what: str = "dx",
                   x_as: np.ndarray | None = None) -> None:
        """The usual pair: forward(*args) -> (out, cache), backward(dout, cache) -> (dx, *grads),
        against ``layer`` holding ``p`` on x (``x_as``: x as the layer reads it, affine's (N, D)).
        ``grads`` holds (the user's name, the layer's parameter, a layout conversion of torch's
        gradient and bound to the user's, a conversion of the user's gradient or None)."""
        xl = x if x_as is None else x_as
        ref = reference(layer, xl.shape[1:], p, xl, dout)
        view, said = textbook_of(layer)
        out, cache = self.forward_call(fns[0], names[0], args, settings, records, labels=labels)
        if not settings.fd:
            records += judge([("out", out, ref["out"], layer.forward_error(xl, _zeros(xl), p, U, TINY),
                               view and view.forward_error(xl, _zeros(xl), p, U, TINY))], **said)
        got = self.backward_call(fns[1], names[1], dout, cache, settings, records, what, 1 + len(grads))
        Edx, Eg = layer.backward_error(xl, _zeros(xl), p, dout, _zeros(dout), U, TINY)
        Tdx, Tg = view.backward_error(xl, _zeros(xl), p, dout, _zeros(dout), U, TINY) if view else (None, {})
        items = [("dx", got[0], ref["dx"].reshape(x.shape), Edx.reshape(x.shape),
                  None if Tdx is None else Tdx.reshape(x.shape))]
        for (label, key, convert, read), hand in zip(grads, got[1:]):
            items.append((label, hand if read is None else read(hand), convert(ref["d" + key]), convert(Eg[key]),
                          convert(Tg[key]) if key in Tg else None))
        if settings.fd:
            items = self._by_fd(items, fns[0], names[0], args, labels, dout, settings)
        records += judge(items, **said)

    def _by_fd(self, items: list, fn, name: str, args: tuple, labels: tuple, dout: np.ndarray,
               settings: Settings) -> list:
        """``items`` (name, hand, torch's reference, E, the textbook allowance or None) with the
        reference replaced by the referee's estimate from the user's own forward and both allowances
        widened by half its error bar (judge allows 2E): the gradient 'dw' is of the argument
        labelled 'w', 'dx' of 'x'."""
        wanted = tuple(item[0][1:] for item in items if item[0][1:] in labels)
        est = self.fd_reference(fn, name, args, labels, wanted, dout, settings)
        out = []
        for label, hand, ref, E, *loose in items:
            e = est.get(label[1:])
            if e is None:
                out.append((label, hand, ref, E, *loose))
                continue
            shape = np.shape(ref)
            bar = e.error.reshape(shape) / 2
            out.append((label, hand, e.value.reshape(shape), np.asarray(E, dtype=np.float64) + bar,
                        *(None if T is None else np.asarray(T, dtype=np.float64) + bar for T in loose)))
        return out


# -- affine ---------------------------------------------------------------------------------------

class Affine(Family):
    name, forward, backwards = "affine", "affine_forward", ("affine_backward",)
    note = "w is (D, M), torch's Linear.weight transposed; x (N, d1..dk) is read as (N, D)"
    calls = ("out, cache = {f}(x, w, b)", "dx, dw, db = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        dims = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), label="d1..dk"))
        M = data.draw(st.integers(1, 5), label="M")
        rng, style, seed = _rng(data)
        D = int(np.prod(dims))
        return Case({"x": _values(rng, (N, *dims), style), "w": _values(rng, (D, M), style),
                     "b": _values(rng, (M,), style), "dout": _values(rng, (N, M), style)}, {}, style, seed)

    def explained(self, case):
        x, w, b, dout = (case.arrays[k] for k in ("x", "w", "b", "dout"))
        return Explained(Linear(w.shape[1]), x.reshape(x.shape[0], -1), {"W": w.T.copy(), "b": b}, dout)

    def check(self, fns, names, case, settings, records):
        x, w, b, dout = (case.arrays[k] for k in ("x", "w", "b", "dout"))
        e = self.explained(case)
        self.layer_pair(fns, names, settings, records, layer=e.layer, p=e.params, x=x, dout=dout,
                        args=(x, w, b), labels=("x", "w", "b"), what="(dx, dw, db)", x_as=e.x,
                        grads=(("dw", "W", np.transpose, None), ("db", "b", _same, None)))


# -- relu -----------------------------------------------------------------------------------------

class Relu(Family):
    name, forward, backwards = "relu", "relu_forward", ("relu_backward",)
    note = "at x = 0 the gradient is 0 (torch's)"
    calls = ("out, cache = {f}(x)", "dx = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        dims = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), label="dims"))
        rng, style, seed = _rng(data)
        return Case({"x": _values(rng, (N, *dims), style), "dout": _values(rng, (N, *dims), style)}, {}, style, seed)

    def explained(self, case):
        return Explained(Act("relu"), case.arrays["x"], {}, case.arrays["dout"])

    def check(self, fns, names, case, settings, records):
        x, dout = case.arrays["x"], case.arrays["dout"]
        self.layer_pair(fns, names, settings, records, layer=Act("relu"), p={}, x=x, dout=dout, args=(x,))


# -- batch norm, spatial batch norm, layer norm, group norm ---------------------------------------

NORM_GRADS = (("dgamma", "gamma", _same, None), ("dbeta", "beta", _same, None))
MOMENTA = (0.9, 0.0, 0.5, 0.99, 1.0)
EPSILONS = (1e-5, 1e-3, 0.1)


class BatchNormFamily(Family):
    name, forward, backwards = "batchnorm", "batchnorm_forward", ("batchnorm_backward", "batchnorm_backward_alt")
    note = ("running = momentum·running + (1 − momentum)·batch (momentum weighs the old value; torch's "
            "weighs the new one); the running variance is the biased one (torch keeps the unbiased)")
    calls = ("bn_param = {{'mode': {mode!r}, 'eps': {eps!r}, 'momentum': {momentum!r}, "
             "'running_mean': running_mean, 'running_var': running_var}}",
             "out, cache = {f}(x, gamma, beta, bn_param)", "dx, dgamma, dbeta = {b}(dout, cache)  # train mode")

    def _shape(self, data, N):
        return (N, data.draw(st.integers(1, 5), label="D"))

    def draw(self, data):
        mode = data.draw(st.sampled_from(("train", "test")), label="mode")
        N = _batch(data, 1 if mode == "test" else 2)
        shape = self._shape(data, N)
        momentum = data.draw(st.sampled_from(MOMENTA), label="momentum")
        eps = data.draw(st.sampled_from(EPSILONS), label="eps")
        rng, style, seed = _rng(data)
        C = shape[1]
        arrays = {"x": _values(rng, shape, style), "gamma": rng.uniform(0.5, 1.5, C), "beta": rng.uniform(-0.5, 0.5, C),
                  "running_mean": rng.normal(0, 0.5, C), "running_var": rng.uniform(0.5, 2.0, C),
                  "dout": _values(rng, shape, style)}
        return Case(arrays, {"mode": mode, "eps": eps, "momentum": momentum}, style, seed)

    def explained(self, case):
        a, h = case.arrays, case.hyper
        return Explained(BatchNorm(eps=h["eps"], momentum=1 - h["momentum"]), a["x"],
                         {k: a[k] for k in ("gamma", "beta", "running_mean", "running_var")}, a["dout"],
                         h["mode"] == "train")

    def check(self, fns, names, case, settings, records):
        a, h = case.arrays, case.hyper
        x, dout = a["x"], a["dout"]
        e = self.explained(case)
        training, layer, p = e.training, e.layer, e.params
        ref = reference(layer, x.shape[1:], p, x, dout, training)
        ctx = Context(training=training)
        param = {"mode": h["mode"], "eps": h["eps"], "momentum": h["momentum"],
                 "running_mean": a["running_mean"].copy(), "running_var": a["running_var"].copy()}
        given = (copied(x), copied(a["gamma"]), copied(a["beta"]), param)
        value = call(fns[0], names[0], given, settings.limit)
        m = modified(names[0], x, given[0], "x")
        if m is not None:
            records.append(m)
        out, cache = as_tuple(value, names[0], 2, "(out, cache)")
        view, said = textbook_of(layer)
        if not settings.fd:                           # by FD alone: the forward is its own reference
            records += judge([("out", out, ref["out"], layer.forward_error(x, _zeros(x), p, U, TINY, ctx),
                               view.forward_error(x, _zeros(x), p, U, TINY, ctx))], **said)
            records += self._running(names[0], layer, x, p, h, param, training)
        if not training:
            return                                    # the convention's backward is for training mode
        dx, dgamma, dbeta = self.backward_call(fns[1], names[1], dout, cache, settings, records,
                                               "(dx, dgamma, dbeta)", 3)
        Edx, Eg = layer.backward_error(x, _zeros(x), p, dout, _zeros(dout), U, TINY, ctx)
        Tdx, Tg = view.backward_error(x, _zeros(x), p, dout, _zeros(dout), U, TINY, ctx)
        items = [("dx", dx, ref["dx"], Edx, Tdx), ("dgamma", dgamma, ref["dgamma"], Eg["gamma"], Tg["gamma"]),
                 ("dbeta", dbeta, ref["dbeta"], Eg["beta"], Tg["beta"])]
        if settings.fd:
            fresh = {k: v for k, v in param.items()}
            fresh.update(running_mean=a["running_mean"].copy(), running_var=a["running_var"].copy())
            items = self._by_fd(items, fns[0], names[0], (x, a["gamma"], a["beta"], fresh),
                                ("x", "gamma", "beta"), dout, settings)
        records += judge(items, **said)

    def _running(self, name, layer, x, p, h, param, training) -> list:
        """The running statistics the forward left in bn_param, against the convention's rule
        applied to torch's batch statistics (unchanged in test mode)."""
        items = []
        if training:
            X = torch.from_numpy(x)
            axes = (0,) + tuple(range(2, x.ndim))
            mu = X.mean(dim=axes).numpy()
            var = X.var(dim=axes, unbiased=False).numpy()
            k = h["momentum"]
            want = {"running_mean": k * p["running_mean"] + (1 - k) * mu,
                    "running_var": k * p["running_var"] + (1 - k) * var}
            E = layer.buffer_errors(x, _zeros(x), p, U)
            T = layer.textbook_view.buffer_errors(x, _zeros(x), p, U)
        else:
            want = {key: p[key] for key in ("running_mean", "running_var")}
            E = T = {key: None for key in want}
        for key, value in want.items():
            if not isinstance(param, dict) or key not in param:
                items.append(failed_record(key, f"{name} left no {key!r} in its param dict"))
                continue
            items.append((key, param[key], value, E[key], T[key]))
        judged = judge([r for r in items if isinstance(r, tuple)], **textbook_of(layer)[1])
        if training:
            judged = [r if r.passed else _said(r, param[r.name], torch_rules(p, x, mu, var, h["momentum"])[r.name])
                      for r in judged]
        return [r for r in items if not isinstance(r, tuple)] + judged


def torch_rules(p: dict, x: np.ndarray, mu: np.ndarray, var: np.ndarray, k: float) -> dict[str, list]:
    """What the running statistics would be under the rules a convention's implementation is
    tempted by instead: torch's momentum (the weight of the new value), the unbiased variance."""
    N = x.size // x.shape[1]
    unbiased = var * N / max(N - 1, 1)
    rm, rv = p["running_mean"], p["running_var"]
    new = "torch's momentum convention (momentum weighs the new value)"
    return {"running_mean": [(new, (1 - k) * rm + k * mu)],
            "running_var": [(new, (1 - k) * rv + k * var),
                            ("the unbiased variance (torch's)", k * rv + (1 - k) * unbiased),
                            (f"{new} with the unbiased variance: torch's rule", (1 - k) * rv + k * unbiased)]}


def _said(record, hand, rules: list):
    """A failing running-statistics record with a note naming the rule the user's value follows."""
    h = np.asarray(hand, dtype=np.float64) if isinstance(hand, np.ndarray) else None
    for text, value in rules:
        if h is not None and h.shape == value.shape and np.allclose(h, value, rtol=1e-12, atol=1e-300):
            return dataclasses.replace(record, note=f"matches {text}; the convention's momentum weighs the old "
                                                    f"value and its running variance is biased")
    return record


class SpatialBatchNorm(BatchNormFamily):
    name, forward, backwards = "spatial_batchnorm", "spatial_batchnorm_forward", ("spatial_batchnorm_backward",)

    def _shape(self, data, N):
        C = data.draw(st.integers(1, 3), label="C")
        H, W = data.draw(st.integers(1, 4), label="H"), data.draw(st.integers(1, 4), label="W")
        if N * H * W < 2:
            W = 2
        return (N, C, H, W)


class LayerNormFamily(Family):
    name, forward, backwards = "layernorm", "layernorm_forward", ("layernorm_backward",)
    note = "statistics per example over its D features"
    calls = ("out, cache = {f}(x, gamma, beta, {{'eps': {eps!r}}})", "dx, dgamma, dbeta = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        D = data.draw(st.integers(2, 6), label="D")
        eps = data.draw(st.sampled_from(EPSILONS), label="eps")
        rng, style, seed = _rng(data)
        return Case({"x": _values(rng, (N, D), style), "gamma": rng.uniform(0.5, 1.5, D),
                     "beta": rng.uniform(-0.5, 0.5, D), "dout": _values(rng, (N, D), style)}, {"eps": eps}, style, seed)

    def explained(self, case):
        a = case.arrays
        return Explained(LayerNorm(eps=case.hyper["eps"]), a["x"], {"gamma": a["gamma"], "beta": a["beta"]},
                         a["dout"])

    def check(self, fns, names, case, settings, records):
        a, e = case.arrays, self.explained(case)
        self.layer_pair(fns, names, settings, records, layer=e.layer, p=e.params, x=a["x"], dout=a["dout"],
                        args=(a["x"], a["gamma"], a["beta"], {"eps": case.hyper["eps"]}),
                        labels=("x", "gamma", "beta"), what="(dx, dgamma, dbeta)", grads=NORM_GRADS)


def _values_of(hand: Any, shape: tuple) -> Any:
    """A per-channel gradient in the layout the user chose ((C,) or (1, C, 1, 1)), as (C,)."""
    if isinstance(hand, np.ndarray) and hand.size == int(np.prod(shape)) and hand.shape != shape \
            and tuple(d for d in hand.shape if d != 1) == tuple(d for d in shape if d != 1):
        return hand.reshape(shape)
    return hand


class SpatialGroupNorm(Family):
    name, forward, backwards = "spatial_groupnorm", "spatial_groupnorm_forward", ("spatial_groupnorm_backward",)
    note = "gamma and beta are given as (1, C, 1, 1); gradients are compared by value, (C,) or (1, C, 1, 1)"
    calls = ("out, cache = {f}(x, gamma, beta, {G}, {{'eps': {eps!r}}})", "dx, dgamma, dbeta = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        G = data.draw(st.integers(1, 3), label="G")
        C = G * data.draw(st.integers(1, 2), label="C/G")
        H, W = data.draw(st.integers(1, 3), label="H"), data.draw(st.integers(1, 3), label="W")
        if C // G * H * W < 2:
            W = 2
        eps = data.draw(st.sampled_from(EPSILONS), label="eps")
        rng, style, seed = _rng(data)
        shape = (N, C, H, W)
        return Case({"x": _values(rng, shape, style), "gamma": rng.uniform(0.5, 1.5, (1, C, 1, 1)),
                     "beta": rng.uniform(-0.5, 0.5, (1, C, 1, 1)), "dout": _values(rng, shape, style)},
                    {"G": G, "eps": eps}, style, seed)

    def explained(self, case):
        a, h = case.arrays, case.hyper
        C = a["x"].shape[1]
        return Explained(GroupNorm(h["G"], eps=h["eps"]), a["x"],
                         {"gamma": a["gamma"].reshape(C), "beta": a["beta"].reshape(C)}, a["dout"])

    def check(self, fns, names, case, settings, records):
        a, h = case.arrays, case.hyper
        C = a["x"].shape[1]

        def read(hand):
            return _values_of(hand, (C,))

        e = self.explained(case)
        self.layer_pair(fns, names, settings, records, layer=e.layer, p=e.params, x=a["x"], dout=a["dout"],
                        args=(a["x"], a["gamma"], a["beta"], h["G"], {"eps": h["eps"]}),
                        labels=("x", "gamma", "beta"), what="(dx, dgamma, dbeta)",
                        grads=(("dgamma", "gamma", _same, read), ("dbeta", "beta", _same, read)))


# -- dropout --------------------------------------------------------------------------------------

KEEP_WORDS = re.compile(r"keep|retain", re.I)
DROP_WORDS = re.compile(r"drop(?:ping)?\s+(?:each|a|the)|probability of (?:dropping|zeroing)|zero(?:ing)? out", re.I)
BINOMIAL_ALPHA = 1e-6        # a correct mask fails the kept-fraction check in one case in a million


def _p_sentences(doc: str | None) -> list[str]:
    """The docstring's sentences that speak of p as a probability."""
    return [s for s in re.split(r"(?<=[.\n])", doc or "") if re.search(r"\bp\b", s) and "probab" in s.lower()]


def p_convention(doc: str | None) -> bool | None:
    """True when dropout_forward's docstring says p is the keep probability, False when it says
    the drop probability, None when it says neither. A docstring that names both (CS231n's: "We
    keep each neuron output with probability p", then a note that older versions dropped with p) is
    read by its first sentence that names one."""
    for sentence in _p_sentences(doc):
        keep, drop = bool(KEEP_WORDS.search(sentence)), bool(DROP_WORDS.search(sentence))
        if keep != drop:
            return keep
    return None


def p_names_both(doc: str | None) -> bool:
    """Whether the docstring speaks of p both as the keep and as the drop probability."""
    text = " ".join(_p_sentences(doc))
    return bool(KEEP_WORDS.search(text)) and bool(DROP_WORDS.search(text))


def binomial_p_value(k: int, n: int, q: float) -> float:
    """The two-sided p-value of k successes in n trials of probability q (the sum of the
    probabilities no larger than k's)."""
    if q <= 0 or q >= 1:
        return 1.0 if k == round(n * q) else 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(q)
            + (n - i) * math.log1p(-q) for i in range(n + 1)]
    mine = logs[k]
    return min(1.0, sum(math.exp(v) for v in logs if v <= mine + 1e-9))


class DropoutFamily(Family):
    not_by_fd = "its forward draws a random mask"
    name, forward, backwards = "dropout", "dropout_forward", ("dropout_backward",)
    note = "inverted dropout; masks are the user's own, so the mask is read from out and checked for " \
           "consistency, scaling and a plausible kept fraction"
    calls = ("out, cache = {f}(x, {{'p': {p!r}, 'mode': {mode!r}, 'seed': {seed}}})", "dx = {b}(dout, cache)")

    def draw(self, data):
        mode = data.draw(st.sampled_from(("train", "test")), label="mode")
        N = _batch(data)
        dims = tuple(data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=3), label="dims"))
        p = data.draw(st.sampled_from((0.5, 0.25, 0.75, 0.1, 0.9, 0.3)), label="p")
        seed = data.draw(st.integers(0, 2**31 - 1), label="dropout seed")
        rng, style, vseed = _rng(data, ("normal",))
        x = _values(rng, (N, *dims), style)
        x[x == 0] = 1.0
        return Case({"x": x, "dout": _values(rng, x.shape, style)}, {"p": p, "mode": mode, "seed": seed},
                    style, vseed)

    def check(self, fns, names, case, settings, records):
        x, dout, h = case.arrays["x"], case.arrays["dout"], case.hyper
        q = h["p"] if settings.dropout_keep else 1 - h["p"]
        param = {"p": h["p"], "mode": h["mode"], "seed": h["seed"]}
        out, cache = self.forward_call(fns[0], names[0], (x, param), settings, records, labels=("x",))
        if h["mode"] == "test":
            records += judge([("out", out, x, None)])
            (dx,) = self.backward_call(fns[1], names[1], dout, cache, settings, records, "dx", 1)
            records += judge([("dx", dx, dout, None)])
            return
        if not isinstance(out, np.ndarray) or out.shape != x.shape:
            records += judge([("out", out, x, None)])
            return
        again = guarded_value(fns[0], (copied(x), dict(param)), settings.limit)
        if isinstance(again, (tuple, list)) and again and isinstance(again[0], np.ndarray) \
                and not np.array_equal(again[0], out):
            settings.remarks.add(f"{names[0]} ignores dropout_param['seed']: two calls with the same seed "
                                 f"drew different masks")
        kept = out != 0
        layer, ctx = Dropout(1 - q), Context(training=True, masks={0: kept})
        E_out = layer.forward_error(x, _zeros(x), {}, U, TINY, ctx)
        records += judge([("out", out, np.where(kept, x / q, 0.0), E_out)])
        n, k = x.size, int(kept.sum())
        pv = binomial_p_value(k, n, q)
        if pv < BINOMIAL_ALPHA:
            which = "keep" if settings.dropout_keep else "drop"
            records.append(failed_record("mask", f"{names[0]} kept {k} of {n} elements with p = {h['p']} read as "
                                                 f"the {which} probability (expected about {n * q:.0f}; "
                                                 f"binomial p-value {pv:.1e})"))
        (dx,) = self.backward_call(fns[1], names[1], dout, cache, settings, records, "dx", 1)
        Edx, _ = layer.backward_error(x, _zeros(x), {}, dout, _zeros(dout), U, TINY, ctx)
        records += judge([("dx", dx, np.where(kept, dout / q, 0.0), Edx)])


# -- convolution and max pooling -------------------------------------------------------------------

class ConvFamily(Family):
    name, forward, backwards = "conv", "conv_forward_naive", ("conv_backward_naive",)
    note = "x (N, C, H, W), w (F, C, HH, WW) as torch's Conv2d; valid sizes only ((H + 2·pad − HH) % stride == 0)"
    calls = ("out, cache = {f}(x, w, b, {{'stride': {stride}, 'pad': {pad}}})", "dx, dw, db = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        C, F = data.draw(st.integers(1, 3), label="C"), data.draw(st.integers(1, 3), label="F")
        HH, WW = data.draw(st.integers(1, 4), label="HH"), data.draw(st.integers(1, 4), label="WW")
        stride = data.draw(st.integers(1, 3), label="stride")
        pad = data.draw(st.integers(0, 2), label="pad")
        Ho, Wo = data.draw(st.integers(1, 4), label="Ho"), data.draw(st.integers(1, 4), label="Wo")
        H, W = (Ho - 1) * stride + HH - 2 * pad, (Wo - 1) * stride + WW - 2 * pad
        while min(H, W) < 1:
            pad -= 1
            H, W = H + 2, W + 2
        rng, style, seed = _rng(data)
        return Case({"x": _values(rng, (N, C, H, W), style), "w": _values(rng, (F, C, HH, WW), style),
                     "b": _values(rng, (F,), style), "dout": _values(rng, (N, F, Ho, Wo), style)},
                    {"stride": stride, "pad": pad}, style, seed)

    def explained(self, case):
        x, w, b, dout = (case.arrays[k] for k in ("x", "w", "b", "dout"))
        h = case.hyper
        return Explained(Conv2d(w.shape[0], w.shape[2:], stride=h["stride"], padding=h["pad"]), x,
                         {"W": w, "b": b}, dout)

    def check(self, fns, names, case, settings, records):
        x, w, b, dout = (case.arrays[k] for k in ("x", "w", "b", "dout"))
        h, e = case.hyper, self.explained(case)
        self.layer_pair(fns, names, settings, records, layer=e.layer, p=e.params, x=x, dout=dout,
                        args=(x, w, b, {"stride": h["stride"], "pad": h["pad"]}),
                        labels=("x", "w", "b"),
                        what="(dx, dw, db)", grads=(("dw", "W", _same, None), ("db", "b", _same, None)))


class MaxPoolFamily(Family):
    # (a coordinate's partial derivative exists at a tie shared by two windows while the
    # function is not differentiable: correct routing would be called wrong)
    not_by_fd = "a tie in its windows makes its gradient a convention that coordinate-wise differences cannot see"
    name, forward, backwards = "max_pool", "max_pool_forward_naive", ("max_pool_backward_naive",)
    note = "on ties the gradient goes to the first maximum in row-major order (torch's winner)"
    calls = ("out, cache = {f}(x, {{'pool_height': {pool_height}, 'pool_width': {pool_width}, 'stride': {stride}}})",
             "dx = {b}(dout, cache)")

    def draw(self, data):
        N = _batch(data)
        C = data.draw(st.integers(1, 3), label="C")
        ph, pw = data.draw(st.integers(1, 3), label="pool_height"), data.draw(st.integers(1, 3), label="pool_width")
        stride = data.draw(st.integers(1, 3), label="stride")
        Ho, Wo = data.draw(st.integers(1, 3), label="Ho"), data.draw(st.integers(1, 3), label="Wo")
        H, W = (Ho - 1) * stride + ph, (Wo - 1) * stride + pw
        rng, style, seed = _rng(data)
        return Case({"x": _values(rng, (N, C, H, W), style), "dout": _values(rng, (N, C, Ho, Wo), style)},
                    {"pool_height": ph, "pool_width": pw, "stride": stride}, style, seed)

    def explained(self, case):
        h = case.hyper
        return Explained(MaxPool2d((h["pool_height"], h["pool_width"]), h["stride"]), case.arrays["x"], {},
                         case.arrays["dout"])

    def check(self, fns, names, case, settings, records):
        x, dout, h = case.arrays["x"], case.arrays["dout"], case.hyper
        self.layer_pair(fns, names, settings, records, layer=self.explained(case).layer, p={}, x=x, dout=dout,
                        args=(x, dict(h)),
                        labels=("x",))


# -- losses -----------------------------------------------------------------------------------------

class LossFamily(Family):
    not_by_fd = "a loss returns its own gradient (not supported yet)"
    calls = ("loss, dx = {f}(x, y)",)
    styles = (*STYLES, "extreme")

    def draw(self, data):
        N = _batch(data)
        C = data.draw(st.integers(2, 6), label="C")
        rng, style, seed = _rng(data, self.styles)
        return Case({"x": _values(rng, (N, C), style), "y": rng.integers(0, C, N)}, {}, style, seed)

    def check(self, fns, names, case, settings, records):
        x, y = case.arrays["x"], case.arrays["y"]
        given = (copied(x), copied(y))
        value = call(fns[0], names[0], given, settings.limit)
        m = modified(names[0], x, given[0], "x")
        if m is not None:
            records.append(m)
        loss, dx = as_tuple(value, names[0], 2, "(loss, dx)")
        ref_loss, ref_dx, E_loss, E_dx = self.reference(x, y)
        if isinstance(loss, np.ndarray) and loss.shape != () and loss.size == 1:
            loss = loss.reshape(())
        records += judge([("loss", loss, ref_loss, E_loss), ("dx", dx, ref_dx, E_dx)])

    def reference(self, x, y):
        raise NotImplementedError


class SoftmaxLoss(LossFamily):
    name, forward = "softmax_loss", "softmax_loss"
    note = "loss = mean cross-entropy of the logits x (N, C); logits up to ×1e3 are drawn"

    def reference(self, x, y):
        X = torch.from_numpy(x.copy()).requires_grad_(True)
        with torch.enable_grad():
            J = torch.nn.functional.cross_entropy(X, torch.from_numpy(y))
            J.backward()
        ce = LOSSES["cross_entropy"]
        zero = _zeros(x)
        return (J.detach().numpy(), X.grad.numpy(), ce.value_error(x, y, zero, U), ce.grad_error(x, y, zero, U))


class SvmLoss(LossFamily):
    name, forward = "svm_loss", "svm_loss"
    note = ("loss = mean over rows of Σ_{j≠y} max(0, x_j − x_y + 1): torch's multi_margin_loss × C; "
            "a margin within rounding of 0 may count either way")

    def reference(self, x, y):
        N, C = x.shape
        X = torch.from_numpy(x.copy()).requires_grad_(True)
        with torch.enable_grad():
            J = torch.nn.functional.multi_margin_loss(X, torch.from_numpy(y), margin=1.0) * C
            J.backward()
        correct = x[np.arange(N), y][:, None]
        margin = x - correct + 1
        held = np.abs(x) + np.abs(correct) + 1
        near = (np.abs(margin) <= 4 * U * held)
        near[np.arange(N), y] = False
        loss_E = gamma(N * C + 4, U) * (held * (margin > -4 * U * held)).sum() / N
        dx_E = near / N
        dx_E[np.arange(N), y] += near.sum(axis=1) / N
        return J.detach().numpy(), X.grad.numpy(), loss_E, dx_E + 4 * U * np.abs(X.grad.numpy())


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Affine(), Relu(), BatchNormFamily(), DropoutFamily(), ConvFamily(), MaxPoolFamily(), SoftmaxLoss(), SvmLoss(),
    SpatialBatchNorm(), LayerNormFamily(), SpatialGroupNorm())}
