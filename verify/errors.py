"""The errors a command reports as one line with exit status 2. Every layer may raise them;
this module imports nothing of verify's, so raising one never imports the command line."""
from handimpl import UnknownNameError


class UsageError(ValueError):
    """Bad input from the command line: reported as one line, exit status 2."""


class SpecError(ValueError):
    """A spec that cannot be built; the message names the bad part and the valid choices."""


class OutError(ValueError):
    """An --out that cannot take a report; one line, naming the path and why."""


# Refused before any work, one line, exit 2 (verify.cli.app).
INPUT_ERRORS = (SpecError, UnknownNameError, UsageError, OutError)

__all__ = ["INPUT_ERRORS", "OutError", "SpecError", "UnknownNameError", "UsageError"]
