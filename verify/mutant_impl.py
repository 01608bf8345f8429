"""The mutants of verify.mutant_zoo as import targets: ``verify.mutant_impl:NAME`` is the
mutant NAME's ``backprop`` (verify.mutants.build), so that a mutant's counterexample is a
runnable command, ``verify check 'SPEC' --impl 'verify.mutant_impl:NAME' --seed S --batch M``."""
from __future__ import annotations

from typing import Callable

from .mutant_zoo import BY_NAME
from .mutants import build


def __getattr__(name: str) -> Callable:
    if name in BY_NAME:
        return build(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (no such mutant)")


def __dir__() -> list[str]:
    return sorted(BY_NAME)
