"""verify: compare hand-written NumPy backprop with PyTorch autograd, tensor by tensor."""
from .check import CaseResult, check
from .compare import TOLERANCES, Comparison
from .spec import NetSpec, SpecError
from .twin import build_twin, from_torch, torch_trace

__all__ = ["CaseResult", "Comparison", "NetSpec", "SpecError", "TOLERANCES", "build_twin",
           "check", "from_torch", "torch_trace"]
