"""`python -m verify.cli`: the `verify` command."""
from verify.cli.app import entry

entry()
