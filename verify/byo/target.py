"""Naming an implementation, and the command that re-runs one of its checks.

Every check records the implementation it ran (``CaseResult.impl``) as a TARGET that
``verify check --impl`` imports again: ``package.module:function`` when the module imports
by that name from the current directory or the installed packages, else
``path/to/file.py:function`` (relative to the current directory when it lies below it).
handimpl's own ``backprop``, the default, is ``handimpl.backprop``, and its repro lines
have no ``--impl``. A function may name its own TARGET in a ``verify_target`` attribute
(the mutants of ``verify mutants`` do).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import handimpl

DEFAULT_IMPL = "handimpl.backprop"
USER_MODULE_PREFIX = "verify_user_impl_"   # the module name of a file loaded by its path (verify.byo.call)


def _module_path(module: str) -> Path | None:
    mod = sys.modules.get(module)
    file = getattr(mod, "__file__", None)
    if not file or file.startswith("<"):
        return None
    return Path(file).resolve()


def _imports_by_name(module: str, path: Path) -> bool:
    """Whether ``import module`` from the current directory (first on the path, as
    verify.byo.call.load_target puts it) or from the installed packages finds ``path``."""
    if module == "__main__" or module.startswith(USER_MODULE_PREFIX):
        return False
    mod = sys.modules.get(module)
    origin = getattr(getattr(mod, "__spec__", None), "origin", None)
    if origin is None or Path(origin).resolve() != path:
        return False
    below_cwd = Path.cwd().resolve().joinpath(*module.split("."))
    if path in (below_cwd.with_suffix(".py"), below_cwd / "__init__.py"):
        return True
    return not _below(path, Path.cwd().resolve()) and any(
        _below(path, Path(p).resolve()) for p in sys.path if p and "site-packages" in p)


def _below(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def target_of(fn: Any) -> str:
    """The TARGET that names ``fn`` for ``verify check --impl`` (DEFAULT_IMPL for None or
    handimpl.backprop)."""
    if fn is None or fn is handimpl.backprop:
        return DEFAULT_IMPL
    try:
        return _cached(fn)
    except TypeError:                     # an unhashable callable
        return _target(fn)


_CACHE: dict = {}


def _cached(fn: Any) -> str:
    if fn not in _CACHE:
        _CACHE[fn] = _target(fn)
    return _CACHE[fn]


def _target(fn: Any) -> str:
    named = getattr(fn, "verify_target", None)
    if isinstance(named, str):
        return named
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    path = _module_path(module)
    if path is None or _imports_by_name(module, path):
        return f"{module}:{qualname}"
    cwd = Path.cwd().resolve()
    shown = path.relative_to(cwd) if _below(path, cwd) else path
    return f"{shown.as_posix()}:{qualname}"


NOT_IMPORTABLE = ("(the implementation is defined inside a function or is a lambda, so --impl cannot "
                  "import it: call it on this case from Python to rerun it)")


def importable(target: str) -> bool:
    """Whether ``--impl`` can import ``target``: not a function defined inside another
    function (``<locals>``) or a lambda."""
    return "<locals>" not in target and "<lambda>" not in target


def quote(text: str) -> str:
    """``text`` as one shell word, always in single quotes (shlex.quote's form, which keeps
    any quote inside it safe)."""
    quoted = shlex.quote(text)
    return quoted if quoted.startswith("'") else f"'{quoted}'"


def repro_command(spec: Any, seed: int, batch: int, impl: str = DEFAULT_IMPL) -> str:
    """``verify check 'SPEC' [--impl 'TARGET'] --seed S --batch M``: the command that runs this
    check again, every argument a single shell word."""
    parts = ["verify", "check", quote(str(spec))]
    if impl != DEFAULT_IMPL:
        parts += ["--impl", quote(impl)]
    return " ".join(parts + ["--seed", str(int(seed)), "--batch", str(int(batch))])
