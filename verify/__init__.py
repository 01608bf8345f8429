"""verify: compare hand-written NumPy backprop with PyTorch autograd, tensor by tensor.

The names below are imported when first used (PEP 562), so that importing a part of the
package, the `verify` command's entry (verify.cli.entry) above all, does not import torch first:
the command makes Ctrl-C during its ~3 s of imports end with one line."""
from verify.meta import STARTED  # isort: skip  (first: STARTED is when the package was imported)

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:                      # what a type checker sees of the lazily imported names
    from verify.explain import CallableModule
    explain: CallableModule

_EXPORTS = {
    "assert_matches_torch": "verify.api", "check_implementation": "verify.api",
    "TOLERANCES": "verify.core.compare", "Comparison": "verify.core.compare", "NetSpec": "verify.core.spec",
    "build_twin": "verify.core.twin", "from_torch": "verify.core.twin", "torch_trace": "verify.core.twin",
    "SpecError": "verify.errors", "CaseResult": "verify.harness.trace", "check": "verify.harness.trace",
    "__version__": "verify.meta", "check_layers": "verify.layers.run", "StackSpec": "verify.core.stack",
    "check_model": "verify.layers.model", "activation": "verify.core.custom",
}

_SUBPACKAGES = ("explain",)     # callable subpackages: verify.explain(SPEC) renders a page in a notebook

__all__ = ["CaseResult", "Comparison", "NetSpec", "STARTED", "SpecError", "StackSpec", "TOLERANCES", "__version__",
           "activation", "assert_matches_torch", "build_twin", "check", "check_implementation", "check_layers",
           "check_model", "explain", "from_torch", "torch_trace"]


def __getattr__(name: str) -> object:
    if name in _SUBPACKAGES:            # imported as a submodule is (it sets the attribute itself)
        return importlib.import_module(f"verify.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'verify' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    importlib.import_module("verify.report.notebook")   # installs the notebook summaries (_repr_html_)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))
