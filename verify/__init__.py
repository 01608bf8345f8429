"""verify: compare hand-written NumPy backprop with PyTorch autograd, tensor by tensor."""
from verify.meta import STARTED, __version__  # isort: skip  (first: STARTED is when the package was imported)
from verify.api import assert_matches_torch, check_implementation
from verify.core.compare import TOLERANCES, Comparison
from verify.core.spec import NetSpec
from verify.core.twin import build_twin, from_torch, torch_trace
from verify.errors import SpecError
from verify.harness.trace import CaseResult, check
from verify.report import notebook as _notebook  # noqa: F401  (installs the notebook summaries)

__all__ = ["CaseResult", "Comparison", "NetSpec", "STARTED", "SpecError", "TOLERANCES", "__version__",
           "assert_matches_torch", "build_twin", "check", "check_implementation", "from_torch",
           "torch_trace"]
