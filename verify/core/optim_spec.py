"""An optimizer and its hyperparameters, written NAME[:KEY=VALUE,...] as `verify train --optimizer`
takes it: ``adam:lr=1e-3,betas=0.9/0.999``, ``sgd:lr=0.1,momentum=0.9,nesterov=true``.

Names and keywords are torch.optim's (handimpl.optim.OPTIMIZERS, the registry shared with the
torch side); a pair such as betas is written a/b, a flag true|false. ``str()`` writes only what
differs from the defaults, so ``OptimizerSpec.parse(str(o)) == o``. A bad spec raises SpecError,
one line naming the bad part and the valid choices."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from handimpl.optim import OPTIMIZERS, Optimizer
from verify.errors import SpecError

FLAGS = {"true": True, "false": False}


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SpecError(f"{key}={text!r}: expected a finite number")
    return value


def _value(optimizer: Optimizer, key: str, text: str) -> Any:
    """``text`` read as the type of ``key``'s default."""
    default = optimizer.hyper[key]
    if isinstance(default, bool):
        if text.lower() not in FLAGS:
            raise SpecError(f"{optimizer.name}: {key}={text!r}: expected true or false")
        return FLAGS[text.lower()]
    if isinstance(default, tuple):
        parts = text.split("/")
        if len(parts) != len(default):
            raise SpecError(f"{optimizer.name}: {key}={text!r}: expected {len(default)} numbers written "
                            f"a/b, e.g. {key}={'/'.join(map(str, default))}")
        return tuple(_number(f"{optimizer.name}: {key}", p.strip()) for p in parts)
    return _number(f"{optimizer.name}: {key}", text)


def _shown(value: Any) -> str:
    """A value as the spec writes it: the shortest text that reads back as the same float (so a
    report's repro line trains with the very hyperparameters that were judged)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "/".join(map(_shown, value))
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    options: tuple[tuple[str, Any], ...] = ()      # the hyperparameters given, non-default only

    @property
    def optimizer(self) -> Optimizer:
        return OPTIMIZERS[self.name]

    @property
    def hyper(self) -> dict[str, Any]:
        """Every hyperparameter, defaults filled in and checked."""
        return self.optimizer.filled(dict(self.options))

    @classmethod
    def parse(cls, text: str) -> "OptimizerSpec":
        name, _, rest = str(text).strip().partition(":")
        name = name.strip().lower()
        if name not in OPTIMIZERS:
            raise SpecError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
        optimizer = OPTIMIZERS[name]
        options: dict[str, Any] = {}
        for item in (t.strip() for t in rest.split(",") if t.strip()):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not value.strip():
                raise SpecError(f"{name}: {item!r}: expected KEY=VALUE; keys: {', '.join(optimizer.hyper)}")
            if key not in optimizer.hyper:
                raise SpecError(f"{name}: unknown hyperparameter {key!r}; valid: {', '.join(optimizer.hyper)}")
            if key in options:
                raise SpecError(f"{name}: {key} given twice")
            options[key] = _value(optimizer, key, value.strip())
        try:
            optimizer.filled(options)
        except ValueError as e:
            raise SpecError(str(e)) from None
        kept = tuple((k, v) for k, v in options.items() if v != optimizer.hyper[k])
        return cls(name, kept)

    def __str__(self) -> str:
        return self.name + (":" + ",".join(f"{k}={_shown(v)}" for k, v in self.options) if self.options else "")
