"""The `verify` command (verify.cli.app) and its resource limits (verify.cli.limits)."""
from verify.cli.app import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
