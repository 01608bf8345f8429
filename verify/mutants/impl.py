"""The mutants of verify.mutants.zoo as import targets: ``verify.mutants.impl:NAME`` is the
mutant NAME's ``backprop`` (verify.mutants.run.build), so that a mutant's counterexample is a
runnable command, ``verify check 'SPEC' --impl 'verify.mutants.impl:NAME' --seed S --batch M``."""
from __future__ import annotations

from typing import Callable

from verify.mutants.run import build
from verify.mutants.zoo import BY_NAME


def __getattr__(name: str) -> Callable:
    if name in BY_NAME:
        return build(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (no such mutant)")


def __dir__() -> list[str]:
    return sorted(BY_NAME)
