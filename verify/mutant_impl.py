"""``verify.mutant_impl:NAME``: the older import path of ``verify.mutants.impl:NAME``."""
from __future__ import annotations

from verify.mutants.impl import __dir__, __getattr__  # noqa: F401
