"""`python -m verify`: the `verify` command."""
from verify.cli import entry

entry()
