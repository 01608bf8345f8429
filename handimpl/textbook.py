"""Textbook forms: a function as its documented formula writes it, and what that form loses.

torch evaluates several functions in a form that keeps every digit where the formula as
written loses some: ELU's α(eᶻ − 1) cancels for small |z| (torch uses expm1), softplus's
log(1 + eᶻ) for z < 0 (torch uses log1p), σ(z) written (1 + tanh(z/2))/2 for z < 0. Code that
evaluates the formula as written is not wrong: it is less accurate than torch. The verdict
(verify.core.bounds, docs/verdict.md) allows such code a second, wider allowance built from
the magnitudes of the textbook form's terms, and says which operation it lost digits in.

An activation or a loss lists its textbook forms in ``textbook`` (one per part it evaluates:
the forward value ``f`` or the derivative ``df`` of an activation, the ``value`` or the
``grad`` of a loss). Each form is data: the formula, the operation that cancels, what torch
uses instead, the naive evaluation itself (for the tests and the benchmark) and the
magnitudes of its terms, Σ|terms|, whose LIBRARY_ULPS·u multiple bounds what the
cancellation can lose. That bound is absolute, at the scale of the terms: it cannot excuse
a float32 intermediate in a float64 case, or a relative perturbation of a result.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PARTS = ("f", "df", "value", "grad", "var")      # 'var': a normalisation layer's variance


@dataclass(frozen=True)
class Textbook:
    """One textbook form of one part of an activation or loss.

    part      'f' or 'df' (an activation), 'value' or 'grad' (a loss), 'var' (the variance of a
              normalisation layer: handimpl.layers.norm);
    formula   the documented formula as written, e.g. 'α(eᶻ − 1)';
    cancels   the operation that loses digits, e.g. 'eᶻ − 1';
    instead   what torch evaluates instead, e.g. 'expm1';
    evaluate  the naive evaluation, in its argument's dtype: (z) for an activation, (a, y,
              **options) for a loss, (x, axes) for a variance;
    terms     Σ|terms| of that evaluation, in float64: (z, a) for an activation, (a, y,
              **options) for a loss, (x, axes) for a variance.
    """
    part: str
    formula: str
    cancels: str
    instead: str
    evaluate: Callable[..., Any]
    terms: Callable[..., Any]

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"unknown textbook part {self.part!r}; valid: {', '.join(PARTS)}")

    def sentence(self, digits: float | None = None) -> str:
        """'loses 9 digits to cancellation in eᶻ − 1 (α(eᶻ − 1)); torch uses expm1'."""
        lost = f"loses {digits:.0f} digit{'s' if round(digits) != 1 else ''}" if digits and digits >= 0.5 \
            else "loses digits"
        return f"{lost} to cancellation in {self.cancels} ({self.formula}); torch uses {self.instead}"


def widened(obj: Any, methods: dict[str, str]) -> Any:
    """A copy of ``obj`` (an activation or a loss) whose term methods (``methods``: part ->
    method name) return, elementwise, the largest of their own terms and those of each of the
    object's textbook forms of that part; ``obj`` itself where it declares no textbook form."""
    forms = getattr(obj, "textbook", ())
    if not forms:
        return obj
    view = object.__new__(type(obj))        # a shallow copy (copy.copy would reduce it by name to obj itself)
    view.__dict__.update(obj.__dict__)
    for part, method in methods.items():
        extra = [t.terms for t in forms if t.part == part]
        if extra:
            setattr(view, method, _largest([getattr(obj, method), *extra]))
    return view


def _largest(functions: list[Callable[..., Any]]) -> Callable[..., Any]:
    def terms(*args: Any, **kwargs: Any) -> Any:
        return functools.reduce(np.maximum, [np.asarray(f(*args, **kwargs), dtype=np.float64) for f in functions])
    return terms


@dataclass(frozen=True)
class Convention:
    """Where torch's result follows a documented convention rather than the formula as written
    (a clamp, a threshold): a result that differs from torch only there differs by that
    convention, not by an arithmetic error, and the verdict's card says so.

    part   'f' or 'df' (an activation), 'value' or 'grad' (a loss);
    where  the elements where the convention holds: (z) for an activation, (a, y, **options)
           for a loss, in float64;
    text   what torch does there, as a sentence."""
    part: str
    where: Callable[..., Any]
    text: str
