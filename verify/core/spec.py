"""NetSpec: one network and loss, with a string form that round-trips.

    WIDTHS:ACTIVATIONS:LOSS[:KEY=VALUE,...]

WIDTHS is n₀-n₁-…-n_L (``2-2-1``); ACTIVATIONS is one name per layer, comma
separated, or one name for every layer; LOSS is a torch.nn.functional name or
``quadratic``. Options: ``dtype=float32|float64`` (float64), ``bias=true|false``
(true), ``init=<scheme>`` (default), ``target=index|prob`` (cross_entropy
only: class indices or probability rows, index), ``reduction=mean|sum`` (mean),
and the loss's own options (``label_smoothing=0.2``, ``beta=0.5``, ``delta=2``,
``log_input=false``, ...). ``str(spec)`` writes only what differs from the
defaults, in a fixed order, so ``NetSpec.parse(str(s)) == s``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from handimpl import ACTIVATIONS, INITS, LOSSES
from verify.errors import SpecError

DTYPES = ("float32", "float64")
TARGETS = ("index", "prob")


SHOWN = 80               # characters of a bad part a SpecError repeats, at most
_WIDTH = re.compile(r"[0-9]{1,12}")        # ASCII digits only; more than 12 fit in no memory
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def shown(value: Any) -> str:
    """repr(value), cut to SHOWN characters with an ellipsis: an error never repeats a huge input."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        s = repr(v)
        return s[:-2] if s.endswith(".0") else s
    return str(v)


def parse_option_value(key: str, text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() not in ("true", "false"):
            raise SpecError(f"option {key}={shown(text)}: expected true or false")
        return text.lower() == "true"
    if isinstance(like, float):
        if text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
            raise SpecError(f"option {key}={shown(text)}: must be a finite number")
        if not _NUMBER.fullmatch(text):
            raise SpecError(f"option {key}={shown(text)}: expected a number written with the digits 0-9, "
                            f"like 0.5 or 1e-3")
        return float(text)
    return text


@dataclass(frozen=True)
class NetSpec:
    widths: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    options: tuple[tuple[str, Any], ...] = ()   # the loss's own options, non-default only
    reduction: str = "mean"
    bias: bool = True
    dtype: str = "float64"
    init: str = "default"
    target: str = "index"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        acts = (self.activations,) if isinstance(self.activations, str) else tuple(self.activations)
        if len(acts) == 1 and self.depth > 1:
            acts = acts * self.depth
        object.__setattr__(self, "activations", acts)
        defaults = LOSSES[self.loss].options if self.loss in LOSSES else {}
        opts = {k: float(v) if isinstance(defaults.get(k), float) and type(v) is int else v
                for k, v in dict(self.options).items()}
        object.__setattr__(self, "options", tuple(sorted(opts.items())))
        self._validate()
        object.__setattr__(self, "options", tuple((k, v) for k, v in self.options if v != defaults[k]))

    # -- the contract handimpl.backprop reads -------------------------------------------------
    @property
    def loss_kwargs(self) -> dict[str, Any]:
        """reduction plus the loss's own options (every one, defaults filled in)."""
        return {"reduction": self.reduction, **self.loss_options}

    @property
    def loss_options(self) -> dict[str, Any]:
        return {**LOSSES[self.loss].options, **dict(self.options)}

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    # -- validation ------------------------------------------------------------------------------
    def _validate(self) -> None:
        if len(self.widths) < 2 or not all(isinstance(n, int) and n >= 1 for n in self.widths):
            raise SpecError(f"widths {shown(self.widths)}: need at least two positive integers, like 2-2-1")
        if len(self.activations) != self.depth:
            n, L = len(self.activations), self.depth
            raise SpecError(f"{n} activation{'s' if n != 1 else ''} for {L} layer{'s' if L != 1 else ''}: "
                            f"give one name per layer or one for all")
        for name in self.activations:
            if name not in ACTIVATIONS:
                raise SpecError(f"unknown activation {shown(name)}; valid: {', '.join(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            raise SpecError(f"unknown loss {shown(self.loss)}; valid: {', '.join(LOSSES)}")
        loss = LOSSES[self.loss]
        for key, value in self.options:
            if key not in loss.options:
                valid = ", ".join(loss.options) or "none"
                raise SpecError(f"option {shown(key)} does not apply to {self.loss}; its options: {valid}")
            if type(value) is not type(loss.options[key]):
                raise SpecError(f"option {key}={shown(value)}: expected {type(loss.options[key]).__name__}")
        if self.reduction not in loss.reductions:
            raise SpecError(f"reduction {shown(self.reduction)} for {self.loss}; valid: {', '.join(loss.reductions)}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype {shown(self.dtype)}; valid: {', '.join(DTYPES)}")
        if self.init not in INITS:
            raise SpecError(f"unknown init {shown(self.init)}; valid: {', '.join(INITS)}")
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias={shown(self.bias)}: expected true or false")
        if self.target not in TARGETS:
            raise SpecError(f"target {shown(self.target)}; valid: {', '.join(TARGETS)}")
        if self.target != "index" and self.loss != "cross_entropy":
            raise SpecError("target=prob applies to cross_entropy only")
        self._validate_option_values()
        lo, hi = loss.domain(**self.loss_options)
        f_lo, f_hi = ACTIVATIONS[self.activations[-1]].range
        if f_lo < lo or f_hi > hi:
            fits = [n for n, a in ACTIVATIONS.items() if a.range[0] >= lo and a.range[1] <= hi]
            raise SpecError(f"{self.loss} needs outputs in [{lo:g}, {hi:g}] but {self.activations[-1]} "
                            f"ranges over [{f_lo:g}, {f_hi:g}]; output activations that fit: {', '.join(fits)}")

    def _validate_option_values(self) -> None:
        o = self.loss_options
        for key, value in o.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SpecError(f"option {key}={value!r}: must be a finite number")
        bounds = {"delta": (0, False), "beta": (0, True), "eps": (0, False)}
        for key, (lo, closed) in bounds.items():
            if key in o and not (o[key] > lo or (closed and o[key] == lo)):
                raise SpecError(f"option {key}={o[key]!r}: must be {'>=' if closed else '>'} {lo}")
        if "label_smoothing" in o and not 0.0 <= o["label_smoothing"] <= 1.0:
            raise SpecError(f"option label_smoothing={o['label_smoothing']!r}: must lie in [0, 1]")

    # -- string form -----------------------------------------------------------------------------
    def __str__(self) -> str:
        acts = self.activations
        act = acts[0] if len(set(acts)) == 1 else ",".join(acts)
        opts = []
        for key, default in (("dtype", "float64"), ("bias", True), ("init", "default"),
                             ("target", "index"), ("reduction", "mean")):
            if getattr(self, key) != default:
                opts.append(f"{key}={_fmt(getattr(self, key))}")
        opts += [f"{k}={_fmt(v)}" for k, v in self.options]
        head = f"{'-'.join(map(str, self.widths))}:{act}:{self.loss}"
        return head + (":" + ",".join(opts) if opts else "")

    @classmethod
    def parse(cls, text: str) -> "NetSpec":
        if not isinstance(text, str):
            raise SpecError(f"spec must be a string, got {type(text).__name__}")
        parts = text.strip().split(":")
        if len(parts) not in (3, 4):
            raise SpecError(f"spec {shown(text)}: expected WIDTHS:ACTIVATIONS:LOSS[:KEY=VALUE,...], "
                            f"e.g. 2-2-1:sigmoid:quadratic")
        widths_s, acts_s, loss = (p.strip() for p in parts[:3])
        texts = [w.strip() for w in widths_s.split("-")]
        if not all(_WIDTH.fullmatch(w) for w in texts):
            raise SpecError(f"widths {shown(widths_s)}: expected integers (at most 12 digits 0-9) "
                            f"joined by '-', like 2-2-1")
        widths = tuple(int(w) for w in texts)
        if loss not in LOSSES:
            raise SpecError(f"unknown loss {shown(loss)}; valid: {', '.join(LOSSES)}")
        fields: dict[str, Any] = {}
        options: dict[str, Any] = {}
        loss_defaults = LOSSES[loss].options
        for item in (parts[3].split(",") if len(parts) == 4 and parts[3].strip() else []):
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key:
                raise SpecError(f"option {shown(item)}: expected KEY=VALUE")
            if key in fields or key in options:
                raise SpecError(f"option {shown(key)} given twice")
            if key == "bias":
                fields[key] = parse_option_value(key, value, True)
            elif key in ("dtype", "init", "target", "reduction"):
                fields[key] = value
            elif key in loss_defaults:
                options[key] = parse_option_value(key, value, loss_defaults[key])
            else:
                valid = ["dtype", "bias", "init", "target", "reduction", *loss_defaults]
                raise SpecError(f"unknown option {shown(key)} for {loss}; valid: {', '.join(valid)}")
        acts = tuple(a.strip() for a in acts_s.split(","))
        return cls(widths, acts, loss, tuple(options.items()), **fields)

    @classmethod
    def coerce(cls, spec: "NetSpec | str") -> "NetSpec":
        return spec if isinstance(spec, NetSpec) else cls.parse(spec)
