"""verify: compare hand-written NumPy backprop with PyTorch autograd, tensor by tensor."""
import time as _time

STARTED = _time.perf_counter()   # when the package was first imported: the start of a `verify` command

from importlib.metadata import PackageNotFoundError, version as _version  # noqa: E402

try:
    __version__ = _version("backprop-verify")
except PackageNotFoundError:     # run from a source tree that was never installed
    __version__ = "0+unknown"

from .check import CaseResult, check  # noqa: E402
from .compare import TOLERANCES, Comparison  # noqa: E402
from .impl_sweep import assert_matches_torch, check_implementation  # noqa: E402
from .spec import NetSpec, SpecError  # noqa: E402
from .twin import build_twin, from_torch, torch_trace  # noqa: E402

__all__ = ["CaseResult", "Comparison", "NetSpec", "STARTED", "SpecError", "TOLERANCES", "__version__",
           "assert_matches_torch", "build_twin", "check", "check_implementation", "from_torch",
           "torch_trace"]
