"""StackSpec: a stack of layers and a loss, with a string form that round-trips.

    INPUT>LAYER>LAYER>...|LOSS[:KEY=VALUE,...]

INPUT is the per-example input shape: ``784`` (features), ``3x16`` (channels x length) or
``1x8x8`` (channels x height x width, NCHW as torch); a stack that starts with an embedding
takes T integer tokens per example, written ``T``. Each LAYER is a kind with its arguments
after a colon, comma-separated: positional numbers first, then prefixed ones (``k3`` or
``k3x2`` a kernel, ``s2`` a stride, ``p1`` a padding, ``d2`` a dilation), flags (``nobias``)
and KEY=VALUE options::

    linear:128   linear:10,nobias   relu   (any activation name)   flatten
    batchnorm    batchnorm:eps=1e-3,momentum=0.2   layernorm   groupnorm:2
    dropout:0.25   residual(linear:8>relu>linear:8)
    conv1d:4,k3,p1   conv2d:4,k3x2,s2,p1,d1   maxpool:2   maxpool:3,s2   avgpool:2,s1,p1
    embedding:10,4   embedding:10,4,pad=0

Options after the loss: the loss's own and ``reduction``, ``dtype=float32|float64`` (float64)
and ``mode=train|eval`` (train: batch statistics and dropout; eval: running statistics, dropout
the identity). ``str(spec)`` writes only what differs from the defaults, so
``StackSpec.parse(str(s)) == s``. The dense form ``WIDTHS:ACTIVATIONS:LOSS`` (NetSpec) stays
as it is: ``parse_any`` tells the two apart by the ``|``.

e.g. ``784>linear:128>batchnorm>relu>dropout:0.1>linear:10|cross_entropy`` and
``1x8x8>conv2d:4,k3,p1>relu>maxpool:2>flatten>linear:3|cross_entropy``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from handimpl import ACTIVATIONS, LOSSES
from handimpl.layers import KINDS, Act, Layer
from handimpl.stack import param_key
from verify.core.compare import split_name
from verify.core.spec import DTYPES, NetSpec, _fmt, parse_option_value, shown
from verify.errors import SpecError

MODES = ("train", "eval")
PREFIXES = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation"}
FLAGS = {"nobias": ("bias", False)}
_INT = re.compile(r"[0-9]{1,6}")
_SHAPE = re.compile(r"[0-9]{1,6}(?:x[0-9]{1,6}){0,2}")
_KERNEL = re.compile(r"[0-9]{1,6}x[0-9]{1,6}")
_PREFIXED = re.compile(r"([a-z])([0-9]{1,6}(?:x[0-9]{1,6})?)")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


FLOAT_ARGS = ("p", "eps", "momentum")     # the arguments that take a fraction; every other is an integer


def _number(text: str) -> int | float:
    if _INT.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    raise SpecError(f"{shown(text)}: expected a finite number written with the digits 0-9 (integers: at most 6)")


def _pair(text: str) -> int | tuple[int, int]:
    a, _, b = text.partition("x")
    return (int(a), int(b)) if b else int(a)


def parse_layer(text: str) -> Layer:
    """One LAYER of the grammar (a residual block with its inner stack included)."""
    text = text.strip()
    if text.startswith("residual(") and text.endswith(")"):
        inner = split_layers(text[len("residual("):-1])
        return KINDS["residual"]([parse_layer(t) for t in inner])
    name, _, args = text.partition(":")
    if name in ACTIVATIONS:
        if args:
            raise SpecError(f"layer {shown(text)}: an activation takes no arguments")
        if getattr(ACTIVATIONS[name], "user_defined", False):
            raise SpecError(f"layer {shown(text)}: an activation registered with verify.activation is usable "
                            f"in dense specs (WIDTHS:ACTIVATIONS:LOSS) only, not yet in layer stacks")
        return Act(name)
    if name not in KINDS or name == "residual":
        valid = ", ".join([*KINDS, "any activation (relu, tanh, ...)"])
        raise SpecError(f"unknown layer {shown(name)}; valid: {valid}")
    cls = KINDS[name]
    positional: list[Any] = []
    keyed: dict[str, Any] = {}
    for item in (a.strip() for a in args.split(",") if args.strip()):
        key, sep, value = item.partition("=")
        if sep:
            keyed[cls.keywords.get(key.strip(), key.strip())] = \
                _number(value.strip()) if value.strip() and value.strip()[0].isdigit() else value.strip()
        elif item in FLAGS:
            keyed[FLAGS[item][0]] = FLAGS[item][1]
        elif _PREFIXED.fullmatch(item) and item[0] in PREFIXES:
            keyed[PREFIXES[item[0]]] = _pair(item[1:])
        elif _KERNEL.fullmatch(item):          # a pool's kernel as its spec() writes it: maxpool:2x3
            positional.append(_pair(item))
        else:
            positional.append(_number(item))
    named = dict(zip(cls.positional, positional)) | keyed
    for key, value in named.items():
        if isinstance(value, float) and key not in FLOAT_ARGS:
            raise SpecError(f"layer {shown(text)}: {key} must be a whole number, not {value!r}")
    if len(positional) > len(cls.positional):
        raise SpecError(f"layer {shown(text)}: {name} takes {len(cls.positional)} positional "
                        f"argument{'s' if len(cls.positional) != 1 else ''} ({', '.join(cls.positional) or 'none'})")
    try:
        return cls(*positional, **keyed)
    except TypeError as e:
        raise SpecError(f"layer {shown(text)}: {e}") from None
    except ValueError as e:
        raise SpecError(f"layer {shown(text)}: {e}") from None


def split_layers(text: str) -> list[str]:
    """LAYER>LAYER>... split at the '>' outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"{shown(text)}: a ')' without its '('")
        elif ch == ">" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SpecError(f"{shown(text)}: a '(' without its ')'")
    parts.append(text[start:])
    if any(not p.strip() for p in parts):
        raise SpecError(f"{shown(text)}: an empty layer between two '>'")
    return parts


@dataclass(frozen=True, eq=False)
class StackSpec:
    input: tuple[int, ...]
    layers: tuple[Layer, ...]
    loss: str
    options: tuple[tuple[str, Any], ...] = ()    # the loss's own options, non-default only
    reduction: str = "mean"
    dtype: str = "float64"
    mode: str = "train"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", tuple(self.input))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.loss not in LOSSES:
            raise SpecError(f"unknown loss {shown(self.loss)}; valid: {', '.join(LOSSES)}")
        defaults = LOSSES[self.loss].options
        opts = {k: float(v) if isinstance(defaults.get(k), float) and type(v) is int else v
                for k, v in dict(self.options).items()}
        object.__setattr__(self, "options", tuple((k, v) for k, v in sorted(opts.items()) if v != defaults.get(k)))
        self._validate()

    # -- what handimpl's stack and the twin read ---------------------------------------------------
    @property
    def loss_kwargs(self) -> dict[str, Any]:
        return {"reduction": self.reduction, **LOSSES[self.loss].options, **dict(self.options)}

    @property
    def loss_options(self) -> dict[str, Any]:
        return {**LOSSES[self.loss].options, **dict(self.options)}

    target = "index"              # cross_entropy takes class indices (verify.core.data)

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of every activation layer, a residual block's included, in order."""
        def names(layers):
            for layer in layers:
                if isinstance(layer, Act):
                    yield layer.name
                yield from names(getattr(layer, "inner", ()))
        return tuple(names(self.layers))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Each layer's kind (an activation layer by its activation's name)."""
        return tuple(layer.name if isinstance(layer, Act) else layer.kind for layer in self.layers)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The per-example shape into each layer and out of the last: depth + 1 shapes."""
        shapes = [self.input]
        for layer in self.layers:
            shapes.append(layer.out_shape(shapes[-1]))
        return tuple(shapes)

    @property
    def tokens(self) -> bool:
        """Whether the input is integer tokens (the stack starts with an embedding)."""
        return bool(self.layers) and self.layers[0].kind == "embedding"

    @property
    def min_batch(self) -> int:
        return max([layer.min_batch if self.training else 1 for layer in self.layers] + [1])

    def _validate(self) -> None:
        if not self.input or not all(isinstance(n, int) and n >= 1 for n in self.input) or len(self.input) > 3:
            raise SpecError(f"input {shown(self.input)}: expected 1 to 3 positive sizes, like 784 or 1x8x8")
        if not self.layers:
            raise SpecError("a stack needs at least one layer")
        for i, layer in enumerate(self.layers):
            if layer.kind == "embedding" and i:
                raise SpecError("an embedding takes integer tokens: it must be the stack's first layer")
        try:
            shapes = self.shapes
        except ValueError as e:
            raise SpecError(str(e)) from None
        if len(shapes[-1]) != 1:
            raise SpecError(f"the last layer gives {shapes[-1]} per example; the loss takes (k,): end with "
                            f"flatten or linear")
        loss = LOSSES[self.loss]
        for key, value in self.options:
            if key not in loss.options:
                valid = ", ".join(loss.options) or "none"
                raise SpecError(f"option {shown(key)} does not apply to {self.loss}; its options: {valid}")
        if self.reduction not in loss.reductions:
            raise SpecError(f"reduction {shown(self.reduction)} for {self.loss}; valid: {', '.join(loss.reductions)}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype {shown(self.dtype)}; valid: {', '.join(DTYPES)}")
        if self.mode not in MODES:
            raise SpecError(f"mode {shown(self.mode)}; valid: {', '.join(MODES)}")
        last = self.layers[-1]
        lo, hi = loss.domain(**self.loss_kwargs)
        f_lo, f_hi = last.f.range if isinstance(last, Act) else (-float("inf"), float("inf"))
        if f_lo < lo or f_hi > hi:
            raise SpecError(f"{self.loss} needs outputs in [{lo:g}, {hi:g}], but the last layer "
                            f"({last.spec()}) ranges over [{f_lo:g}, {f_hi:g}]")
        # the dense network's own checks (a loss's options in range) apply as they are
        NetSpec((1, 1), ("identity",) if (lo, hi) == (-float("inf"), float("inf")) else
                (next(n for n, a in ACTIVATIONS.items() if a.range[0] >= lo and a.range[1] <= hi),),
                self.loss, self.options, self.reduction)

    # -- the contract's keys (handimpl.stack) ----------------------------------------------------------
    def required_keys(self) -> list[str]:
        """``loss``, then every parameter's gradient, layer by layer."""
        return ["loss"] + [param_key("d", name, i) for i, layer in enumerate(self.layers, start=1)
                           for name in layer.param_names]

    def optional_keys(self) -> list[str]:
        """Each layer's output and ∂J/∂output, ∂J/∂x (not for tokens), each buffer after the forward."""
        keys = [k for i in range(1, self.depth + 1) for k in (f"out{i}", f"grad{i}")]
        keys += [] if self.tokens else ["dx"]
        return keys + [param_key("", name, i) for i, layer in enumerate(self.layers, start=1)
                       for name in getattr(layer, "buffer_names", layer.buffers)]

    def expected_shape(self, name: str, m: int) -> tuple:
        """torch's shape for trace key ``name`` with a batch of m."""
        if name == "loss":
            return ()
        shapes = self.shapes
        if name == "dx":
            return (m, *shapes[0])
        quantity, i = split_name(name)
        if quantity in ("out", "grad"):
            return (m, *shapes[i])
        layer = self.layers[i - 1]
        own = name[1:] if name.startswith("d") and quantity.startswith("d") else name
        for key, shape in layer.param_shapes(shapes[i - 1]).items():
            if param_key("", key, i) == own:
                return shape
        return ()

    def values(self, batch: int) -> int:
        """How many values one case holds: every parameter and buffer, and every layer's output
        for a batch of ``batch`` (what verify.cli.limits estimates its memory from)."""
        shapes = self.shapes
        params = sum(int(np.prod(s, dtype=np.int64)) for i, layer in enumerate(self.layers)
                     for s in layer.param_shapes(shapes[i]).values())
        return params + batch * sum(int(np.prod(s, dtype=np.int64)) for s in shapes)

    # -- string form -----------------------------------------------------------------------------
    def __str__(self) -> str:
        opts = [f"{k}={_fmt(getattr(self, k))}" for k, d in (("dtype", "float64"), ("mode", "train"),
                                                            ("reduction", "mean")) if getattr(self, k) != d]
        opts += [f"{k}={_fmt(v)}" for k, v in self.options]
        head = "x".join(map(str, self.input)) + "".join(">" + layer.spec() for layer in self.layers)
        return f"{head}|{self.loss}" + (":" + ",".join(opts) if opts else "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StackSpec) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @classmethod
    def parse(cls, text: str) -> "StackSpec":
        if not isinstance(text, str):
            raise SpecError(f"spec must be a string, got {type(text).__name__}")
        stack, bar, tail = text.strip().partition("|")
        if not bar:
            raise SpecError(f"spec {shown(text)}: expected INPUT>LAYER>...|LOSS[:KEY=VALUE,...], "
                            f"e.g. 784>linear:10|cross_entropy")
        pieces = split_layers(stack)
        if len(pieces) < 2:
            raise SpecError(f"spec {shown(text)}: expected INPUT>LAYER>..., at least one layer")
        if not _SHAPE.fullmatch(pieces[0].strip()):
            raise SpecError(f"input {shown(pieces[0])}: expected sizes in the digits 0-9 joined by 'x', "
                            f"like 784 or 1x8x8")
        shape = tuple(int(n) for n in pieces[0].strip().split("x"))
        layers = tuple(parse_layer(p) for p in pieces[1:])
        loss, _, opts_text = tail.strip().partition(":")
        loss = loss.strip()
        if loss not in LOSSES:
            raise SpecError(f"unknown loss {shown(loss)}; valid: {', '.join(LOSSES)}")
        fields: dict[str, Any] = {}
        options: dict[str, Any] = {}
        defaults = LOSSES[loss].options
        for item in (opts_text.split(",") if opts_text.strip() else []):
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key:
                raise SpecError(f"option {shown(item)}: expected KEY=VALUE")
            if key in fields or key in options:
                raise SpecError(f"option {shown(key)} given twice")
            if key in ("dtype", "mode", "reduction"):
                fields[key] = value
            elif key in defaults:
                options[key] = parse_option_value(key, value, defaults[key])
            else:
                valid = ["dtype", "mode", "reduction", *defaults]
                raise SpecError(f"unknown option {shown(key)} for {loss}; valid: {', '.join(valid)}")
        return cls(shape, layers, loss, tuple(options.items()), **fields)

    @classmethod
    def coerce(cls, spec: "StackSpec | str") -> "StackSpec":
        return spec if isinstance(spec, StackSpec) else cls.parse(spec)


def parse_any(text: "str | NetSpec | StackSpec") -> NetSpec | StackSpec:
    """A spec in either form: a stack when it has a '|', else the dense WIDTHS:ACTIVATIONS:LOSS."""
    if isinstance(text, (NetSpec, StackSpec)):
        return text
    if isinstance(text, str) and "|" in text:
        return StackSpec.parse(text)
    return NetSpec.parse(text)
