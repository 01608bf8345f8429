"""When the package was first imported (the start of a `verify` command) and its version.

The version is looked up when first asked for: importing importlib.metadata takes tens of
milliseconds, during which a Ctrl-C at start-up would find no handler of the command's yet."""
import time as _time

STARTED = _time.perf_counter()
COMMAND = False     # True in the `verify` command (verify.cli.entry sets it): its main module only launches it


def __getattr__(name: str):
    if name != "__version__":
        raise AttributeError(f"module 'verify.meta' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        found = version("backprop-verify")
    except PackageNotFoundError:     # run from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
