"""Whole models in the CS231n convention: `verify layers --model FILE:ClassName --init '...'`.

The convention's model API: ``model = ClassName(**init)``; ``model.params`` a dict (W1, b1,
gamma1, beta1, …); ``model.loss(X, y) -> (loss, grads)`` with ``grads`` keyed as ``params``, and
``model.loss(X) -> scores`` in test mode; dropout through ``model.dropout_param`` (its ``seed``),
batch and layer norm through ``model.bn_params`` (one dict per hidden layer); the loss carries
the L2 term ½·reg·ΣW² over the weights W alone. Three architectures, told apart by the
constructor's keywords:

    FullyConnectedNet(hidden_dims, input_dim, num_classes, dropout_keep_ratio, normalization,
                      reg, weight_scale, dtype, seed)
        {affine – [batchnorm | layernorm] – relu – [dropout]} × (L − 1) – affine – softmax
    TwoLayerNet(input_dim, hidden_dim, num_classes, weight_scale, reg)
        affine – relu – affine – softmax
    ThreeLayerConvNet(input_dim, num_filters, filter_size, hidden_dim, num_classes, weight_scale, reg, dtype)
        conv (stride 1, pad (k − 1)/2) – relu – 2×2 max pool (stride 2) – affine – relu – affine – softmax

Each case constructs the model with drawn keywords (those given by --init are fixed), checks that
``params`` holds the keys and shapes that structure implies, replaces every parameter with drawn
values (the convention's Solver assigns ``model.params[k]`` the same way) and the running
statistics in ``bn_params``, then compares the loss, every entry of ``grads``, the running
statistics the training call left in ``bn_params``, and the test-mode scores with the torch twin
of the same structure (verify.core.stack_twin), each within the stack's a priori bound
(verify.core.stack_bounds) plus the rounding of the L2 term, never a fixed rtol.

Dropout: the user's random numbers are not torch's, so the masks are read from the model's own
behaviour: during the training call the module-level ``dropout_forward`` the model calls is
wrapped, and each call's mask is read from its output (x ≠ 0 kept where out ≠ 0; where x = 0 the
mask changes nothing downstream, the ReLU before it having cut the gradient). The kept elements
must be x/p_keep within the bound and the kept count plausible for p_keep; the twin then runs
with those masks, so the backward must reuse them. A model whose dropout is not a call of a
module-level ``dropout_forward`` cannot be read: its training-mode comparison with dropout is
skipped, and the note says so.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import re
import sys
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from handimpl.layers import Act, BatchNorm, Context, Conv2d, Dropout, Flatten, LayerNorm, Linear, MaxPool2d
from handimpl.rounding import gamma
from verify.byo.call import a_type_name
from verify.core.data import Case as StackCase
from verify.core.stack import StackSpec
from verify.core.stack_bounds import has_textbook, stack_a_priori
from verify.core.stack_twin import stack_trace
from verify.core.torch_ops import one_thread
from verify.errors import UsageError
from verify.layers.calls import Failed, U, as_tuple, call, failed_record, judge
from verify.layers.families import BINOMIAL_ALPHA, Case, Family, Settings, binomial_p_value
from verify.layers.run import load_module

KEEP_RATIOS = (1, 1, 0.5, 0.8, 0.25)
REGS = (0.0, 0.1, 1.0, 0.37)
WEIGHT_SCALES = (1e-2, 0.1, 1.0)
NORMALIZATIONS = (None, "batchnorm", "layernorm")
EPSILONS = (1e-5, 1e-3)
MOMENTA = (0.9, 0.5)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


# -- the command's inputs --------------------------------------------------------------------------

def parse_init(text: str | None) -> dict[str, Any]:
    """``'hidden_dims=[8,8],normalization=batchnorm,reg=0.1'`` as a dict: each value a Python
    literal or a bare word (a string); one line (UsageError) when it is malformed."""
    if not text or not text.strip():
        return {}
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    if depth:
        raise UsageError(f"--init {text!r}: unbalanced brackets")
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not _KEY.fullmatch(key):
            raise UsageError(f"--init: {item.strip()!r} is not KEY=VALUE (e.g. hidden_dims=[8,8],reg=0.1)")
        if key in out:
            raise UsageError(f"--init: {key} given twice")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            if not _BARE.fullmatch(value):
                raise UsageError(f"--init: {key}={value!r} is neither a Python literal nor a word") from None
            out[key] = value
    if "dtype" in out:
        if out["dtype"] not in ("float64", "np.float64", "numpy.float64"):
            raise UsageError(f"--init: dtype={out['dtype']}: only float64 models are checked (the bounds are "
                             f"float64's)")
        del out["dtype"]
    return out


def load_model_class(where: str) -> tuple[Any, str]:
    """(the class, its name) of ``FILE:ClassName`` (or ``module:ClassName``); one line when it
    cannot be found. Loading the file runs its top-level code."""
    path, sep, name = where.rpartition(":")
    if not sep or not path or not _KEY.fullmatch(name):
        raise UsageError(f"--model {where!r}: expected FILE:ClassName, e.g. fc_net.py:FullyConnectedNet")
    module = load_module(path)
    cls = vars(module).get(name) if hasattr(module, "__dict__") else None
    if cls is None:
        raise UsageError(f"--model {where!r}: {path} has no {name}")
    if not isinstance(cls, type):
        raise UsageError(f"--model {where!r}: {name} is a {type(cls).__name__}, not a class")
    return cls, name


def keywords(cls: Any) -> tuple[set[str], bool]:
    """(the constructor's keyword names, whether it takes any keyword). An ``__init__(self,
    **kwargs)`` that passes them on adds its base classes' keywords (along the MRO)."""
    names: set[str] = set()
    for klass in getattr(cls, "__mro__", (cls,)):
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return names, True
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


SAMPLE = {"conv": {"input_dim": (1, 4, 4), "num_filters": 1, "filter_size": 3, "hidden_dim": 2},
          "fc": {"input_dim": 3, "hidden_dims": [2]}, "two": {"input_dim": 3, "hidden_dim": 2}}
ARCHITECTURES = {"conv": ("num_filters", "filter_size"), "fc": ("hidden_dims",), "two": ("hidden_dim",)}


def architecture(cls: Any, name: str, init: dict) -> str:
    names, _ = keywords(cls)
    names |= set(init)
    for arch, needs in ARCHITECTURES.items():
        if all(k in names for k in needs):
            return arch
    raise UsageError(f"--model: cannot tell {name}'s architecture from its keywords ({', '.join(sorted(names))}): "
                     f"expected those of FullyConnectedNet (hidden_dims), TwoLayerNet (hidden_dim) or "
                     f"ThreeLayerConvNet (num_filters, filter_size)")


# -- the structure a case's keywords imply ----------------------------------------------------------

def _keep_ratio(init: dict, dropout_keep: bool) -> float:
    if "dropout_keep_ratio" in init:
        return float(init["dropout_keep_ratio"])
    if "dropout" in init:
        return float(init["dropout"]) if dropout_keep else 1.0 - float(init["dropout"])
    return 1.0


def _normalization(init: dict) -> str | None:
    if init.get("use_batchnorm"):
        return "batchnorm"
    return init.get("normalization") or None


def structure(arch: str, init: dict, dropout_keep: bool, hyper: dict) -> tuple[StackSpec, list[tuple]]:
    """The twin's StackSpec and, per user parameter, (its key, the stack layer (0-based), the
    layer's parameter name, the user's shape, whether torch's layout is the transpose)."""
    def size(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{key}={value!r}: expected a positive integer")
        return int(value)

    C = size("num_classes", init["num_classes"])
    keys: list[tuple] = []
    norm = init.get("normalization")
    if norm not in NORMALIZATIONS:
        raise ValueError(f"normalization={norm!r}: expected None, 'batchnorm' or 'layernorm'")
    q = _keep_ratio(init, dropout_keep)
    if not 0 < q <= 1:
        raise ValueError(f"a keep ratio of {q!r}: expected one in (0, 1]")
    if arch == "conv":
        if not isinstance(init["input_dim"], (tuple, list)) or len(init["input_dim"]) != 3:
            raise ValueError(f"input_dim={init['input_dim']!r}: expected (C, H, W)")
        ch, H, W = (size("input_dim", v) for v in init["input_dim"])
        F, k, Hd = (size(key, init[key]) for key in ("num_filters", "filter_size", "hidden_dim"))
        if k % 2 == 0 or H < 2 or W < 2:
            raise ValueError(f"filter_size={k}, input_dim={init['input_dim']!r}: the convention's conv net needs an "
                             f"odd filter size (its padding keeps the size) and H, W of at least 2 (its 2×2 pool)")
        layers = [Conv2d(F, (k, k), stride=1, padding=(k - 1) // 2), Act("relu"), MaxPool2d(2, 2), Flatten(),
                  Linear(Hd), Act("relu"), Linear(C)]
        spec = StackSpec((ch, H, W), layers, "cross_entropy")
        D2 = int(np.prod(spec.shapes[4]))
        keys = [("W1", 0, "W", (F, ch, k, k), False), ("b1", 0, "b", (F,), False),
                ("W2", 4, "W", (D2, Hd), True), ("b2", 4, "b", (Hd,), False),
                ("W3", 6, "W", (Hd, C), True), ("b3", 6, "b", (C,), False)]
        return spec, keys
    hidden = [size("hidden_dim", init["hidden_dim"])] if arch == "two" else \
        [size("hidden_dims", h) for h in init["hidden_dims"]]
    D = size("input_dim", init["input_dim"])
    norm = _normalization(init) if arch == "fc" else None
    q = q if arch == "fc" else 1.0
    layers, dims = [], [D, *hidden, C]
    for i, width in enumerate(hidden, start=1):
        keys += [(f"W{i}", len(layers), "W", (dims[i - 1], width), True), (f"b{i}", len(layers), "b", (width,), False)]
        layers.append(Linear(width))
        if norm == "batchnorm":
            layers.append(BatchNorm(eps=hyper["eps"], momentum=1 - hyper["momentum"]))
        elif norm == "layernorm":
            layers.append(LayerNorm(eps=hyper["eps"]))
        if norm:
            keys += [(f"gamma{i}", len(layers) - 1, "gamma", (width,), False),
                     (f"beta{i}", len(layers) - 1, "beta", (width,), False)]
        layers.append(Act("relu"))
        if q < 1:
            layers.append(Dropout(1 - q))
    L = len(hidden) + 1
    keys += [(f"W{L}", len(layers), "W", (dims[-2], C), True), (f"b{L}", len(layers), "b", (C,), False)]
    layers.append(Linear(C))
    return StackSpec((D,), layers, "cross_entropy"), keys


# -- the family -------------------------------------------------------------------------------------

def _sizes(data, label: str, fixed: dict, key: str, strategy) -> Any:
    return fixed[key] if key in fixed else data.draw(strategy, label=label)


class ModelFamily(Family):
    """One model class, swept as one 'pair' (verify.layers.run.sweep_pair)."""
    name = "model"

    def __init__(self, cls_name: str, arch: str, accepted: set[str], fixed: dict, dropout_keep: bool):
        self.forward, self.arch, self.accepted, self.fixed = cls_name, arch, accepted, dict(fixed)
        self.dropout_keep = dropout_keep
        self.note = ("the twin is built from model.params with the structure the keywords imply; loss = "
                     "softmax loss + ½·reg·ΣW² (W only); test-mode scores compared too")

    def functions(self) -> list[tuple[str, ...]]:
        return [(self.forward,)]

    def run(self, fns, names, case: Case, settings: Settings) -> list:
        """As Family.run, and an error in verify's own checking of this case (never expected) is a
        failing record saying so rather than a case passed in silence."""
        try:
            return super().run(fns, names, case, settings)
        except Exception as e:            # noqa: BLE001 - see the docstring
            return [failed_record("verify", f"verify could not check this case (an internal error, not "
                                            f"necessarily the model's): {type(e).__name__}: {e}")]

    # -- drawing -----------------------------------------------------------------------------------
    def draw(self, data) -> Case:
        fx, acc = self.fixed, self.accepted
        init: dict[str, Any] = {}

        def maybe(key: str, strategy) -> None:
            if key in fx:
                init[key] = fx[key]
            elif key in acc:
                init[key] = data.draw(strategy, label=key)

        if self.arch == "conv":
            init["input_dim"] = _sizes(data, "input_dim", fx, "input_dim", st.tuples(
                st.integers(1, 2), st.sampled_from((2, 4, 6)), st.sampled_from((2, 4, 6))))
            maybe("num_filters", st.integers(1, 3))
            maybe("filter_size", st.sampled_from((1, 3, 5)))
            maybe("hidden_dim", st.integers(1, 5))
        else:
            init["input_dim"] = _sizes(data, "input_dim", fx, "input_dim", st.integers(1, 6))
            if self.arch == "two":
                maybe("hidden_dim", st.integers(1, 6))
            else:
                maybe("hidden_dims", st.lists(st.integers(1, 6), min_size=1, max_size=3))
                maybe("normalization", st.sampled_from(NORMALIZATIONS))
                maybe("use_batchnorm", st.booleans())
                maybe("dropout_keep_ratio", st.sampled_from(KEEP_RATIOS))
                if "dropout_keep_ratio" not in acc:
                    maybe("dropout", st.sampled_from(KEEP_RATIOS if self.dropout_keep else (0, 0, 0.5, 0.2)))
        init["num_classes"] = _sizes(data, "num_classes", fx, "num_classes", st.integers(2, 5))
        maybe("reg", st.sampled_from(REGS))
        maybe("weight_scale", st.sampled_from(WEIGHT_SCALES))
        maybe("seed", st.integers(0, 2**31 - 1))
        init.update({k: v for k, v in fx.items() if k not in init})
        norm = _normalization(init) if self.arch == "fc" else None
        hyper: dict[str, Any] = {"init": init}
        if norm:
            hyper["eps"] = data.draw(st.sampled_from(EPSILONS), label="eps")
        if norm == "batchnorm":
            hyper["momentum"] = data.draw(st.sampled_from(MOMENTA), label="momentum")
        N = data.draw(st.integers(2 if norm == "batchnorm" else 1, 5), label="N")
        value_seed = data.draw(st.integers(0, 2**31 - 1), label="value seed")
        style = data.draw(st.sampled_from(("normal", "integers")), label="values")
        rng = np.random.default_rng(value_seed)
        try:
            arrays = self._arrays(init, hyper, norm, N, rng, style)
        except Exception as e:            # noqa: BLE001 - keywords that give no model: a failing case
            hyper["invalid"] = f"{type(e).__name__}: {e}"
            arrays = {}
        return Case(arrays, hyper, style, value_seed)

    def _arrays(self, init: dict, hyper: dict, norm: str | None, N: int, rng: np.random.Generator,
                style: str) -> dict[str, Any]:
        """X, y, every parameter and the running statistics of one case."""
        spec, keys = structure(self.arch, init, self.dropout_keep, {"eps": 1e-5, "momentum": 0.9, **hyper})
        shape = (N, *init["input_dim"]) if self.arch == "conv" else (N, int(init["input_dim"]))
        X = rng.standard_normal(shape) if style == "normal" else rng.integers(-2, 3, shape).astype(np.float64)
        arrays: dict[str, Any] = {"X": X, "y": rng.integers(0, int(init["num_classes"]), N)}
        scale = float(init.get("weight_scale", 1e-2) or 1e-2)
        for key, _, pname, shp, _ in keys:
            arrays[key] = {"W": lambda s: rng.standard_normal(s) * scale, "b": lambda s: rng.normal(0, 0.5, s),
                           "gamma": lambda s: rng.uniform(0.5, 1.5, s),
                           "beta": lambda s: rng.uniform(-0.5, 0.5, s)}[pname](shp)
        if norm == "batchnorm":
            for i, width in enumerate(init["hidden_dims"], start=1):
                arrays[f"running_mean{i}"] = rng.normal(0, 0.5, int(width))
                arrays[f"running_var{i}"] = rng.uniform(0.5, 2.0, int(width))
        return arrays

    # -- one case ----------------------------------------------------------------------------------
    def check(self, fns, names, case, settings, records):
        cls, name = fns[0], names[0]
        h, a = case.hyper, case.arrays
        init = h["init"]
        if "invalid" in h:
            raise Failed(name, f"the keywords {init} give no valid {self.arch} model: {h['invalid']}")
        try:
            spec, keys = structure(self.arch, init, self.dropout_keep, {"eps": 1e-5, "momentum": 0.9, **h})
        except (TypeError, ValueError, KeyError) as e:
            raise Failed(name, f"the keywords {init} give no valid {self.arch} structure: {e}") from None
        kwargs = {**init, **({"dtype": np.float64} if "dtype" in self.accepted else {})}
        model = call(functools.partial(cls, **kwargs), f"{name}(...)", (), settings.limit)
        params = _attr(model, "params")
        if not isinstance(params, dict):
            raise Failed(name, f"{name}(...) has no params dict (model.params is {type(params).__name__})")
        _check_keys(name, params, keys)
        for key, *_ in keys:
            params[key] = a[key].copy()
        norm = _normalization(init) if self.arch == "fc" else None
        L = sum(1 for k in keys if k[2] == "W")
        bn_params = self._bn_params(model, name, norm, L, h, a)
        dropout_fn, holders = _dropout_holders(model)
        q = _keep_ratio(init, self.dropout_keep) if self.arch == "fc" else 1.0
        X, y = a["X"], a["y"]

        blame = inspect.getattr_static(type(model), "loss", None)
        value, recorded, bn_after = call(_loss_call, f"{name}.loss", (model, X.copy(), y.copy(), dropout_fn, holders),
                                         settings.limit, blame)
        loss, grads = as_tuple(value, f"{name}.loss", 2, "(loss, grads)")
        if not isinstance(grads, dict):
            raise Failed(name, f"{name}.loss returned {a_type_name(grads)} where a dict of gradients is expected")
        masks: dict[int, np.ndarray] = {}
        compare_train = True
        if q < 1:
            compare_train = self._masks(name, spec, recorded, dropout_fn, q, settings, records, masks)
        if compare_train:
            stack_params = _stack_params(spec, keys, a, h, masks, training=True)
            ref = stack_trace(spec, stack_params, X, y, lr=0.0, dtype="float64")
            case = StackCase(stack_params, X, y, 1.0, 0.0)
            E = stack_a_priori(spec, case, ref, 0.0)
            # the textbook allowance (a norm's σ² as mean(x²) − μ²), as verify layers gives each function
            E_tb = stack_a_priori(spec, case, ref, 0.0, textbook=True) if has_textbook(spec) else None
            reg = float(init.get("reg", 0.0) or 0.0)
            records += _train_items(spec, keys, a, ref, E, reg, loss, grads, E_tb)
            if norm == "batchnorm" and bn_after is not None:
                records += _running_items(spec, ref, E, a, h, bn_after, E_tb)
        # test mode: the running statistics drawn, dropout the identity
        if bn_params is not None and norm == "batchnorm":
            for i, p in enumerate(bn_params, start=1):
                p["running_mean"], p["running_var"] = a[f"running_mean{i}"].copy(), a[f"running_var{i}"].copy()
        scores, _, _ = call(_loss_call, f"{name}.loss", (model, X.copy(), None, None, []), settings.limit, blame)
        test = StackSpec(spec.input, spec.layers, spec.loss, mode="eval")
        test_params = _stack_params(test, keys, a, h, {}, training=False)
        ref_t = stack_trace(test, test_params, X, y, lr=0.0, dtype="float64")
        E_t = stack_a_priori(test, StackCase(test_params, X, y, 1.0, 0.0), ref_t, 0.0)
        n = len(spec.layers)
        records += judge([("scores (test mode)", scores, ref_t[f"out{n}"], E_t[f"out{n}"])])

    def _bn_params(self, model, name, norm, L, h, a) -> list | None:
        """model.bn_params with the case's eps, momentum and running statistics set (None without
        normalization); Failed when the convention's list of L − 1 dicts is not there."""
        if not norm:
            return None
        bn_params = _attr(model, "bn_params")
        if not isinstance(bn_params, list) or len(bn_params) != L - 1 or \
                not all(isinstance(p, dict) for p in bn_params):
            raise Failed(name, f"{name}.bn_params: expected a list of {L - 1} dicts (one per hidden layer, the "
                               f"convention's), got {_short(bn_params)}")
        for i, p in enumerate(bn_params, start=1):
            p["eps"] = h["eps"]
            if norm == "batchnorm":
                p.update(momentum=h["momentum"], running_mean=a[f"running_mean{i}"].copy(),
                         running_var=a[f"running_var{i}"].copy())
        return bn_params

    def _masks(self, name, spec, recorded, dropout_fn, q, settings, records, masks) -> bool:
        """Each dropout layer's keep-mask, read from the model's own dropout_forward calls, and
        their checks (inverted scaling, a plausible kept count); False when they cannot be read."""
        positions = [i for i, layer in enumerate(spec.layers) if layer.kind == "dropout"]
        if dropout_fn is None:
            settings.remarks.add(f"{name} calls no module-level dropout_forward: its dropout masks cannot be read, "
                                 f"so the training-mode loss and grads with dropout are not compared")
            return False
        if recorded is None or len(recorded) != len(positions):
            records.append(failed_record("dropout_forward", f"{name}.loss called dropout_forward "
                                         f"{0 if recorded is None else len(recorded)} times in training mode where "
                                         f"{len(positions)} (one per hidden layer) is expected"))
            return False
        for k, (pos, (x, out)) in enumerate(zip(positions, recorded), start=1):
            if not isinstance(out, np.ndarray) or out.shape != x.shape:
                records += judge([(f"dropout_forward (layer {k})", out, x, None)])
                return False
            kept = (out != 0) & (x != 0)
            masks[pos] = kept
            layer = Dropout(1 - q)
            E_out = layer.forward_error(x, np.zeros_like(x), {}, U, 0.0, Context(training=True, masks={0: kept}))
            records += judge([(f"dropout_forward (layer {k})", out, np.where(kept, x / q, 0.0), E_out)])
            live = x != 0
            n_live, n_kept = int(live.sum()), int(kept.sum())
            if n_live and binomial_p_value(n_kept, n_live, q) < BINOMIAL_ALPHA:
                records.append(failed_record(f"dropout mask (layer {k})",
                                             f"dropout_forward kept {n_kept} of {n_live} nonzero elements with "
                                             f"keep ratio {q} (expected about {n_live * q:.0f})"))
        return True

    def call_lines(self, names: tuple[str, ...], case: Case) -> list[str]:
        init = case.hyper["init"]
        args = ", ".join(f"{k}={v!r}" for k, v in init.items())
        lines = [f"model = {names[0]}({args}{', dtype=np.float64' if 'dtype' in self.accepted else ''})"]
        keys = [k for k in case.arrays if k not in ("X", "y") and not k.startswith("running_")]
        lines.append("model.params.update(" + ", ".join(f"{k}={k}" for k in keys) + ")")
        for k in case.arrays:
            if k.startswith("running_mean"):
                i = int(k[len("running_mean"):])
                lines.append(f"model.bn_params[{i - 1}].update(eps={case.hyper['eps']!r}, "
                             f"momentum={case.hyper['momentum']!r}, running_mean=running_mean{i}, "
                             f"running_var=running_var{i})")
        if "eps" in case.hyper and "momentum" not in case.hyper:
            lines.append(f"for p in model.bn_params: p['eps'] = {case.hyper['eps']!r}")
        lines.append("loss, grads = model.loss(X, y)")
        return lines


def _attr(obj: Any, name: str) -> Any:
    try:
        return inspect.getattr_static(obj, name)
    except AttributeError:
        return None


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (list, dict, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(name: str, params: dict, keys: list[tuple]) -> None:
    want = {k: shape for k, _, _, shape, _ in keys}
    missing = [k for k in want if k not in params]
    if missing:
        raise Failed(name, f"model.params has no {', '.join(map(repr, missing))} (the keywords imply "
                           f"{', '.join(want)})")
    extra = sorted(set(map(str, params)) - set(want))
    if extra:
        raise Failed(name, f"model.params has {', '.join(map(repr, extra))}, which the keywords do not imply "
                           f"(expected {', '.join(want)})")
    for key, shape in want.items():
        got = np.shape(params[key]) if isinstance(params[key], np.ndarray) else None
        if got != shape:
            raise Failed(name, f"model.params[{key!r}] is {got if got is not None else type(params[key]).__name__} "
                               f"where {shape} is expected")


def _dropout_holders(model: Any) -> tuple[Callable | None, list[str]]:
    """The module-level dropout_forward the model's loss calls (a global of the module its
    ``loss`` was written in), and the names of every module holding that same function (that
    module, and a layer_utils it calls through)."""
    loss = inspect.getattr_static(type(model), "loss", None)
    namespace = getattr(loss, "__globals__", None)
    fn = namespace.get("dropout_forward") if isinstance(namespace, dict) else None
    if not callable(fn):
        return None, []
    holders = [name for name, m in list(sys.modules.items())
               if m is not None and isinstance(getattr(m, "__dict__", None), dict)
               and (m.__dict__ is namespace or m.__dict__.get("dropout_forward") is fn)]
    if not any(sys.modules[n].__dict__ is namespace for n in holders):
        return None, []                # the loss's own module is not importable: its calls cannot be wrapped
    return fn, holders


def _loss_call(model: Any, X: np.ndarray, y: np.ndarray | None, dropout_fn: Callable | None,
               holders: list[str]) -> tuple:
    """(model.loss(X, y) or model.loss(X), each training-mode dropout_forward call's (x, out), a
    copy of model.bn_params after the call). The dropout_forward of ``holders`` is wrapped for the
    call's duration only."""
    recorded: list = []

    def recording(x, dropout_param, *args, **kwargs):
        value = dropout_fn(x, dropout_param, *args, **kwargs)
        mode = dropout_param.get("mode") if isinstance(dropout_param, dict) else None
        if mode == "train":
            out = value[0] if isinstance(value, (tuple, list)) and value else value
            recorded.append((np.array(x, dtype=np.float64), np.array(out, dtype=np.float64)
                             if isinstance(out, np.ndarray) else out))
        return value

    patched = [sys.modules[n] for n in holders if n in sys.modules] if dropout_fn is not None else []
    for m in patched:
        m.__dict__["dropout_forward"] = recording
    try:
        value = model.loss(X) if y is None else model.loss(X, y)
    finally:
        for m in patched:
            m.__dict__["dropout_forward"] = dropout_fn
    bn = _attr(model, "bn_params")
    return value, recorded, copy.deepcopy(bn) if isinstance(bn, list) else None


def _stack_params(spec: StackSpec, keys: list[tuple], a: dict, h: dict, masks: dict, training: bool) -> list[dict]:
    """One dict per stack layer in the twin's layout (torch's W is the user's affine w transposed)."""
    params: list[dict] = [{} for _ in spec.layers]
    for key, i, pname, _, transpose in keys:
        params[i][pname] = a[key].T.copy() if transpose else a[key].copy()
    bn = 0
    for i, layer in enumerate(spec.layers):
        if layer.kind == "batchnorm":
            bn += 1
            params[i]["running_mean"] = a[f"running_mean{bn}"].copy()
            params[i]["running_var"] = a[f"running_var{bn}"].copy()
        if layer.kind == "dropout" and training:
            params[i]["mask"] = masks[i]
    return params


def _textbook_said(spec) -> dict:
    """judge's keywords naming the textbook forms the stack's norm layers declare."""
    layers = [layer for layer in spec.layers if getattr(layer, "textbook", ())]
    forms = tuple(dict.fromkeys(form for layer in layers for form in layer.textbook))
    return {"forms": forms, "who": ", ".join(dict.fromkeys(layer.kind for layer in layers))} if forms else {}


def _train_items(spec, keys, a, ref, E, reg, loss, grads, E_tb=None) -> list:
    """(name, the user's value, the reference, its bound, its textbook bound) for the loss and each
    gradient: torch's data loss + ½·reg·ΣW², torch's gradient + reg·W for each W; the L2 term's
    rounding added to both bounds (``E_tb``: the textbook allowance's E, or None)."""
    W = [a[k] for k, _, pname, _, _ in keys if pname == "W"]
    squares = float(sum(np.sum(w * w) for w in W))
    n_terms = sum(w.size for w in W) + 2 * len(W) + 2
    ref_loss = float(ref["loss"]) + 0.5 * reg * squares
    l2 = gamma(n_terms, U) * (abs(float(ref["loss"])) + 0.5 * reg * squares)
    E_loss = float(np.max(E["loss"])) + l2
    if isinstance(loss, np.ndarray) and loss.size == 1:
        loss = loss.reshape(())
    items = [("loss", loss, np.asarray(ref_loss), np.asarray(E_loss),
              None if E_tb is None else np.asarray(float(np.max(E_tb["loss"])) + l2))]
    for key, i, pname, _, transpose in keys:
        trace = f"d{pname}{i + 1}"
        g, Eg = ref[trace], E[trace]
        if transpose:
            g, Eg = g.T, Eg.T
        Eg_tb = None if E_tb is None else (E_tb[trace].T if transpose else E_tb[trace])
        if pname == "W":
            want = g + reg * a[key]
            step = gamma(1, U) * (np.abs(g) + reg * np.abs(a[key]))
            bound, bound_tb = Eg + step, None if Eg_tb is None else Eg_tb + step
        else:
            want, bound, bound_tb = g, Eg, Eg_tb
        if key not in grads:
            items.append(failed_record(f"grads[{key!r}]", f"grads has no {key!r} (grads[k] is the gradient of "
                                                          f"params[k])"))
            continue
        items.append((f"grads[{key!r}]", grads[key], want, bound, bound_tb))
    judged = judge([t for t in items if isinstance(t, tuple)], **_textbook_said(spec))
    data_loss = float(ref["loss"])
    tempting = {"loss": [("the L2 term without its ½ (reg·ΣW²)", data_loss + reg * squares),
                         ("no L2 term", data_loss)]}
    for key, i, pname, _, transpose in keys:
        if pname == "W":
            g = ref[f"dW{i + 1}"].T if transpose else ref[f"dW{i + 1}"]
            tempting[f"grads[{key!r}]"] = [("the data gradient alone (reg·W missing)", g),
                                           ("the data gradient + 2·reg·W", g + 2 * reg * a[key])]
    judged = [r if r.passed or r.name not in tempting else _said(r, hand, tempting[r.name])
              for r, hand in zip(judged, [t[1] for t in items if isinstance(t, tuple)])]
    it = iter(judged)
    return [r if not isinstance(r, tuple) else next(it) for r in items]


def _said(record, hand: Any, rules: list):
    """A failing record with a note naming the tempting wrong rule the user's value follows."""
    try:
        h = np.asarray(hand, dtype=np.float64)
    except (TypeError, ValueError):
        return record
    for text, value in rules:
        value = np.asarray(value, dtype=np.float64)
        if h.shape == value.shape and np.allclose(h, value, rtol=1e-9, atol=1e-300):
            return dataclasses.replace(record, note=f"matches {text}")
    return record


def _running_items(spec, ref, E, a, h, bn_after, E_tb=None) -> list:
    """The running statistics the training call left in bn_params, against the convention's rule
    (momentum weighs the old value, the biased variance) from torch's batch statistics."""
    m = h["momentum"]
    out, bn = [], 0
    items: list = []
    for i, layer in enumerate(spec.layers):
        if layer.kind != "batchnorm":
            continue
        bn += 1
        x = ref[f"out{i}"] if i else None
        mu, var = x.mean(axis=0), x.var(axis=0)
        want = {"running_mean": m * a[f"running_mean{bn}"] + (1 - m) * mu,
                "running_var": m * a[f"running_var{bn}"] + (1 - m) * var}
        param = bn_after[bn - 1] if bn - 1 < len(bn_after) and isinstance(bn_after[bn - 1], dict) else {}
        for key, value in want.items():
            name = f"bn_params[{bn - 1}][{key!r}]"
            if key not in param:
                out.append(failed_record(name, f"the training call left no {key!r} in bn_params[{bn - 1}]"))
                continue
            items.append((name, param[key], value, E[f"{key}{i + 1}"],
                          None if E_tb is None else E_tb[f"{key}{i + 1}"]))
    return out + judge(items, **_textbook_said(spec))


# -- the sweep ---------------------------------------------------------------------------------------

def model_family(where: Any, init_text: str | None, dropout_p: str | None) -> tuple[ModelFamily, Any, str]:
    """(the family, the class, the note on dropout's p) for ``--model FILE:Class --init ...``;
    one line (UsageError) for whatever is malformed or unknown."""
    init = parse_init(init_text)
    cls, name = (where, where.__name__) if isinstance(where, type) else load_model_class(where)
    accepted, takes_any = keywords(cls)
    unknown = sorted(set(init) - accepted) if not takes_any else []
    if unknown:
        raise UsageError(f"--init: {name} takes no {', '.join(unknown)} (its keywords: "
                         f"{', '.join(sorted(accepted)) or 'none'})")
    arch = architecture(cls, name, init)
    keep = dropout_p != "drop"
    sample = {**SAMPLE[arch], "num_classes": 2, **init}
    try:
        structure(arch, sample, keep, {"eps": 1e-5, "momentum": 0.9})
    except Exception as e:                # noqa: BLE001 - any malformed value: one line
        raise UsageError(f"--init: {e}") from None
    family = ModelFamily(name, arch, accepted, init, keep)
    how = ""
    if "dropout" in accepted and "dropout_keep_ratio" not in accepted:
        how = (f"the dropout keyword read as the {'keep' if keep else 'drop'} probability "
               f"({'--dropout-p' if dropout_p else 'assumed; --dropout-p drop for the early convention'})")
    return family, cls, how


def check_model(where: Any, init: str | None = None, *, examples: int = 100, seed_value: int = 0,
                time_limit: float = 10.0, isolate: bool = False, dropout_p: str | None = None,
                prepared: tuple | None = None) -> Any:
    """Sweep the model class ``FILE:ClassName`` (verify layers --model; or a class object): a
    LayersResult with one row. ``prepared``: model_family's answer for ``where`` (loaded once)."""
    from verify.byo.guard import TimeLimit
    from verify.layers.run import LayersResult, sweep_pair
    family, cls, how = prepared or model_family(where, init, dropout_p)
    if isinstance(where, type):
        where = f"{where.__module__}:{where.__name__}"
    conf = Settings(limit=TimeLimit(time_limit or None, isolate=isolate))
    with one_thread():
        pair = sweep_pair(family, (family.forward,), (cls,), conf, examples=examples, seed_value=seed_value)
    pair.note = "; ".join([family.note, *([how] if how else []), *sorted(conf.remarks)])
    return LayersResult(where, [pair], {"examples": examples, "seed": seed_value, "only": None, "model": where,
                                        "init": init or "", "dropout_p": dropout_p, "time_limit": time_limit,
                                        "isolate": isolate})
