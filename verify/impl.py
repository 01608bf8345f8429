"""Bring your own backprop: load a TARGET, call it safely, sweep it against torch.

The contract is handimpl.backprop's::

    fn(spec, params, x, y) -> Mapping[str, array | float]

Required keys: ``loss``, ``dW{l}`` and, when ``spec.bias``, ``db{l}``; optional
keys, compared when present: ``z{l}``, ``a{l}``, ``delta{l}``, ``dx``. Shapes and
dtypes exactly as torch's. Optional extensions, read from attributes of ``fn``:

- ``fn.step(params, grads, lr) -> [(W, b), ...]``: the implementation's own
  SGD update, used instead of handimpl.sgd_step to produce ``W{l}_after`` and
  ``b{l}_after`` (compared with torch.optim.SGD);
- ``fn.supports = {"activations": [...], "losses": [...], "dtypes": [...]}``:
  what the implementation handles; sweeps are restricted to it.

Everything user code can do wrong becomes a failing record, never a crash:
``call_safely`` hands it copies of its inputs (and reports any it modified),
catches every exception (naming the line of user code that raised), stops a
call that runs past its time limit (naming the line it was stopped at), and
checks the returned mapping before anything is compared.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .compare import Comparison, problem_record, split_name

Impl = Callable[..., Any]
DEFAULT_OUT = Path("reports") / "impl"
CALL = "backprop"        # the record name for problems with the call as a whole
STEP = "step"            # ... and with the implementation's own update


TIME_LIMIT = 10.0        # seconds one call of a user implementation may take (verify check --time-limit)


class CallTimedOut(BaseException):
    """Raised inside a user implementation that ran past its time limit. A BaseException, so
    that the implementation's own ``except Exception`` cannot swallow it."""


@dataclasses.dataclass
class TimeLimit:
    """Seconds one call of user code may take (None or 0: no limit). ``applied()`` guards a
    call; ``expired`` records that it stopped one, with CallTimedOut.

    It uses SIGALRM, so it works in the main thread on Unix only (a sweep's worker processes
    included); elsewhere, or while another ITIMER_REAL timer is running, there is no limit."""
    seconds: float | None = None
    expired: bool = False

    @contextlib.contextmanager
    def applied(self):
        """Raise CallTimedOut in the body after ``seconds``."""
        seconds = self.seconds
        usable = seconds and hasattr(signal, "setitimer") and \
            threading.current_thread() is threading.main_thread()
        if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            yield
            return

        def expire(signum, frame):
            self.expired = True
            raise CallTimedOut(f"did not return within {seconds:g} s (the time limit)")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class ImplementationWarning(UserWarning):
    """Something about a user implementation the harness tolerates (unknown extra keys)."""


# -- the keys ---------------------------------------------------------------------------------

def required_keys(spec: Any) -> list[str]:
    """``loss``, then ``dW{l}`` (and ``db{l}`` with bias) for l = 1…L."""
    L = len(spec.widths) - 1
    keys = ["loss"]
    for l in range(1, L + 1):
        keys += [f"dW{l}"] + ([f"db{l}"] if spec.bias else [])
    return keys


def optional_keys(spec: Any) -> list[str]:
    """``z{l}``, ``a{l}``, ``delta{l}`` for l = 1…L, and ``dx``."""
    L = len(spec.widths) - 1
    return [f"{q}{l}" for l in range(1, L + 1) for q in ("z", "a", "delta")] + ["dx"]


def expected_shape(spec: Any, name: str, m: int) -> tuple:
    """torch's shape for trace key ``name`` with a batch of m."""
    if name == "loss":
        return ()
    if name == "dx":
        return (m, spec.widths[0])
    quantity, l = split_name(name)
    return {"z": (m, spec.widths[l]), "a": (m, spec.widths[l]), "delta": (m, spec.widths[l]),
            "dW": (spec.widths[l], spec.widths[l - 1]), "db": (spec.widths[l],)}[quantity]


# -- loading a TARGET ---------------------------------------------------------------------------

def _usage(message: str) -> Exception:
    from .cli import UsageError
    return UsageError(message)


@functools.lru_cache(maxsize=None)
def load_target(target: str) -> Impl:
    """``package.module:function`` or ``path/to/file.py:function`` -> the callable.

    Raises verify.cli.UsageError (one line) when the module cannot be imported,
    has no such attribute, or the attribute is not callable.
    """
    if not isinstance(target, str) or ":" not in target:
        raise _usage(f"--impl {target!r}: expected package.module:function or path/to/file.py:function")
    where, _, name = target.rpartition(":")
    if not where or not name:
        raise _usage(f"--impl {target!r}: expected package.module:function or path/to/file.py:function")
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise _usage(f"--impl {target!r}: no file {where}")
            mod_name = f"verify_user_impl_{abs(hash(str(path)))}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise _usage(f"--impl {target!r}: cannot load {where} as a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module          # so that the function pickles for --jobs
            module_spec.loader.exec_module(module)
        else:
            _current_directory_importable()
            module = importlib.import_module(where)
    except Exception as e:           # noqa: BLE001 - any import failure is bad input
        if type(e).__name__ == "UsageError":
            raise
        raise _usage(f"--impl {target!r}: importing {where} failed: {type(e).__name__}: {e}") from None
    fn = module
    for part in name.split("."):
        if not hasattr(fn, part):
            raise _usage(f"--impl {target!r}: {where} has no attribute {name!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise _usage(f"--impl {target!r}: {name} is a {type(fn).__name__}, not callable")
    return fn


def _current_directory_importable() -> None:
    """Put the current directory first on sys.path, as ``python -m`` and pytest's rootdir
    do, so that ``mypkg.mlp:backprop`` imports from where the command runs."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def resolve(impl: Impl | str) -> Impl:
    """A callable as it is; a TARGET string loaded (cached, so workers load it once)."""
    return load_target(impl) if isinstance(impl, str) else impl


# -- calling user code safely ------------------------------------------------------------------

def _user_file(fn: Any) -> str | None:
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None) or getattr(getattr(target, "__call__", None), "__code__", None)
    return code.co_filename if code is not None else None


def describe_exception(e: BaseException, fn: Any) -> str:
    """``ValueError: shapes ... at impl.py:42 in backprop: dW = delta @ a`` — the innermost
    traceback frame in the user's file (else the innermost outside this module)."""
    frames = traceback.extract_tb(e.__traceback__)
    user = _user_file(fn)
    mine = [f for f in frames if f.filename == user] or [f for f in frames if f.filename != __file__]
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e) else type(e).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    if mine:
        f = mine[-1]
        line = (f.line or "").strip()
        text += f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}" + (f": {line}" if line else "")
    return text


def copy_params(params: list) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """A fresh list of fresh (W, b) tuples of copied arrays (what a user function may scribble on)."""
    return [(W.copy(), None if b is None else b.copy()) for W, b in params]


def _snapshot(params: list, x: np.ndarray, y: np.ndarray) -> list[tuple[str, Any]]:
    named = [("x", x), ("y", y)]
    for l, (W, b) in enumerate(params, start=1):
        named += [(f"W{l}", W), (f"b{l}", b)]
    return named


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if not isinstance(b, np.ndarray):
        return False
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def modified_inputs(params: list, x: np.ndarray, y: np.ndarray,
                    given_params: Any, given_x: Any, given_y: Any) -> list[str]:
    """Names of the inputs (x, y, W{l}, b{l}, params) whose copies the call changed."""
    if not isinstance(given_params, list) or len(given_params) != len(params) or \
            not all(isinstance(p, tuple) and len(p) == 2 for p in given_params):
        changed = ["params"]
        given_pairs = [(None, None)] * len(params)
    else:
        changed, given_pairs = [], given_params
    before = _snapshot(params, x, y)
    after = dict(_snapshot(given_pairs, given_x, given_y))
    for name, value in before:
        if name.startswith(("W", "b")) and changed == ["params"]:
            continue
        if not _same(value, after[name]):
            changed.append(name)
    return changed


_WARNED: set = set()


def reset_warnings() -> None:
    """Forget which implementations were warned about (called at the start of each sweep)."""
    _WARNED.clear()


def _warn_unknown(fn: Any, keys: list[str]) -> None:
    ident = getattr(fn, "__qualname__", None) or repr(fn)
    if ident in _WARNED:
        return
    _WARNED.add(ident)
    warnings.warn(f"{ident} returned keys the harness does not know, ignored: {', '.join(keys[:8])}"
                  f"{' ...' if len(keys) > 8 else ''} (known: loss, z{{l}}, a{{l}}, delta{{l}}, "
                  f"dW{{l}}, db{{l}}, dx)", ImplementationWarning, stacklevel=2)


def _is_numeric(value: Any) -> bool:
    if type(value) is np.ndarray:
        return value.dtype.kind in "fiu"
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value).dtype.kind in "fiu"
    return False


def _not_a_tensor(name: str, spec: Any, problem: str, rtol: float, atol: float) -> Comparison:
    """A failing record about the call rather than one tensor (quantity ''; reports plot none)."""
    return dataclasses.replace(problem_record(name, spec.dtype, (), problem, rtol, atol),
                               quantity="", layer=None)


def call_safely(fn: Impl, spec: Any, params: list, x: np.ndarray, y: np.ndarray, *,
                rtol: float, atol: float, limit: TimeLimit | None = None
                ) -> tuple[dict[str, Any], list[Comparison], list[Comparison], str]:
    """Call ``fn`` on copies of its inputs, stopping it at ``limit``; never raise.

    Returns
    -------
    hand : dict
        The known keys the implementation returned (to be compared).
    problems : list of Comparison
        Failing records for what could not be compared: an exception, a
        non-mapping, a missing required key, a value that is not a number array.
    mutations : list of Comparison
        One failing record per input the call modified in place.
    error : str
        What the call raised (type, message, user line), or "" (then ``hand`` and
        ``problems`` are empty: the CaseResult carries the error). A call stopped at
        its time limit gives ``CallTimedOut: did not return within ... at FILE:LINE``.
    """
    m = x.shape[0]
    p_copy, x_copy, y_copy = copy_params(params), x.copy(), y.copy()
    name = getattr(fn, "__name__", CALL)
    try:
        with (limit or TimeLimit()).applied():
            out = fn(spec, p_copy, x_copy, y_copy)
    except (Exception, SystemExit, CallTimedOut) as e:   # noqa: BLE001 - user code may raise anything
        error = describe_exception(e, fn)
        return {}, [], _mutations(name, spec, params, x, y, p_copy, x_copy, y_copy, rtol, atol), error
    mutations = _mutations(name, spec, params, x, y, p_copy, x_copy, y_copy, rtol, atol)
    if not isinstance(out, Mapping):
        problem = (f"{name} returned {type(out).__name__} where a mapping of tensor names to arrays "
                   f"belongs ({{'loss': ..., 'dW1': ..., ...}})")
        return {}, [_not_a_tensor(CALL, spec, problem, rtol, atol)], mutations, ""
    required, optional = required_keys(spec), optional_keys(spec)
    known = set(required) | set(optional)
    unknown = sorted(str(k) for k in out if k not in known)
    if unknown:
        _warn_unknown(fn, unknown)
    hand: dict[str, Any] = {}
    problems: list[Comparison] = []
    for key in required + optional:
        if key not in out:
            if key in required:
                problems.append(problem_record(key, spec.dtype, expected_shape(spec, key, m),
                                               f"missing: {name} did not return required key {key!r}",
                                               rtol, atol))
            continue
        value = out[key]
        if not _is_numeric(value):
            shape = expected_shape(spec, key, m)
            what = f"array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            problems.append(problem_record(key, spec.dtype, shape,
                                           f"{what} where torch has a {spec.dtype} array of shape {shape}",
                                           rtol, atol))
            continue
        hand[key] = value
    return hand, problems, mutations, ""


def _mutations(name, spec, params, x, y, p_copy, x_copy, y_copy, rtol, atol) -> list[Comparison]:
    return [_not_a_tensor(arg, spec, f"{name} modified its input {arg} in place (the harness "
                          f"passed a copy; compute into new arrays, e.g. W = W - ..., not W -= ...)",
                          rtol, atol)
            for arg in modified_inputs(params, x, y, p_copy, x_copy, y_copy)]


def after_step_safely(fn: Impl | None, spec: Any, params: list, hand: dict, lr: float, *,
                      rtol: float, atol: float, limit: TimeLimit | None = None
                      ) -> tuple[dict[str, Any], list[Comparison]]:
    """``W{l}_after``/``b{l}_after`` from one update with the implementation's gradients.

    The update is ``fn.step(params, grads, lr)`` when the implementation has one,
    else handimpl.sgd_step. Layers whose gradients are missing or misshapen get
    no after-step value (their gradient record already fails).
    """
    import handimpl

    step = getattr(fn, "step", None) if fn is not None else None
    step = step if callable(step) else handimpl.sgd_step
    grads: dict[str, Any] = {}
    usable: list[int] = []
    for l, (W, b) in enumerate(params, start=1):
        dW, db = hand.get(f"dW{l}"), hand.get(f"db{l}")
        ok = isinstance(dW, np.ndarray) and dW.shape == W.shape
        if b is not None:
            ok = ok and isinstance(db, np.ndarray) and db.shape == b.shape
        grads[f"dW{l}"] = dW if ok else np.zeros_like(W)
        if b is not None:
            grads[f"db{l}"] = db if ok else np.zeros_like(b)
        if ok:
            usable.append(l)
    if not usable:
        return {}, []
    p_copy = copy_params(params)
    try:
        with (limit or TimeLimit()).applied():
            stepped = step(p_copy, grads, lr)
            pairs = list(stepped)
        if len(pairs) != len(params) or not all(len(p) == 2 for p in pairs):
            raise TypeError(f"step returned {len(pairs)} items, expected {len(params)} (W, b) pairs")
    except (Exception, SystemExit, CallTimedOut) as e:   # noqa: BLE001
        where = describe_exception(e, step)
        return {}, [_not_a_tensor(STEP, spec, f"step raised {where}", rtol, atol)]
    out: dict[str, Any] = {}
    problems: list[Comparison] = []
    for l in usable:
        W_new, b_new = pairs[l - 1]
        for key, value, like in ((f"W{l}_after", W_new, params[l - 1][0]),
                                 (f"b{l}_after", b_new, params[l - 1][1])):
            if like is None:
                continue
            if _is_numeric(value):
                out[key] = value
            else:
                problems.append(problem_record(key, spec.dtype, like.shape,
                                               f"step returned {type(value).__name__} where torch has an array",
                                               rtol, atol))
    return out, problems
