"""verify: compare hand-written NumPy backprop with PyTorch autograd, tensor by tensor."""
from .check import CaseResult, check
from .compare import TOLERANCES, Comparison
from .impl_sweep import assert_matches_torch, check_implementation
from .spec import NetSpec, SpecError
from .twin import build_twin, from_torch, torch_trace

__all__ = ["CaseResult", "Comparison", "NetSpec", "SpecError", "TOLERANCES", "assert_matches_torch",
           "build_twin", "check", "check_implementation", "from_torch", "torch_trace"]
