"""When the package was first imported (the start of a `verify` command) and its version."""
import time as _time

STARTED = _time.perf_counter()

from importlib.metadata import PackageNotFoundError, version as _version  # noqa: E402, I001

try:
    __version__ = _version("backprop-verify")
except PackageNotFoundError:     # run from a source tree that was never installed
    __version__ = "0+unknown"

COMMAND = False     # True in the `verify` command (verify.cli.entry sets it): its main module only launches it
