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

import copy
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

import handimpl
from handimpl.stack import param_key, stack_backprop
from verify.byo import guard, isolation
from verify.byo.guard import TIME_LIMIT, CallTimedOut, TimeLimit, guarded  # noqa: F401 (the first two: public here)
from verify.byo.target import USER_MODULE_PREFIX
from verify.core.compare import Comparison, problem_record, split_name
from verify.errors import UsageError

Impl = Callable[..., Any]
DEFAULT_OUT = Path("reports") / "impl"
CALL = "backprop"        # the record name for problems with the call as a whole
STEP = "step"            # ... and with the implementation's own update
SPEC = "spec"            # ... and with the spec it was handed


class ImplementationWarning(UserWarning):
    """Something about a user implementation the harness tolerates (unknown extra keys)."""


# -- the keys ---------------------------------------------------------------------------------

def required_keys(spec: Any) -> list[str]:
    """``loss``, then ``dW{l}`` (and ``db{l}`` with bias) for l = 1…L (a stack: its own, StackSpec)."""
    if hasattr(spec, "required_keys"):
        return spec.required_keys()
    L = len(spec.widths) - 1
    keys = ["loss"]
    for l in range(1, L + 1):
        keys += [f"dW{l}"] + ([f"db{l}"] if spec.bias else [])
    return keys


def optional_keys(spec: Any) -> list[str]:
    """``z{l}``, ``a{l}``, ``delta{l}`` for l = 1…L, and ``dx`` (a stack: its own, StackSpec)."""
    if hasattr(spec, "optional_keys"):
        return spec.optional_keys()
    L = len(spec.widths) - 1
    return [f"{q}{l}" for l in range(1, L + 1) for q in ("z", "a", "delta")] + ["dx"]


def expected_shape(spec: Any, name: str, m: int) -> tuple:
    """torch's shape for trace key ``name`` with a batch of m."""
    if hasattr(spec, "expected_shape"):
        return spec.expected_shape(name, m)
    if name == "loss":
        return ()
    if name == "dx":
        return (m, spec.widths[0])
    quantity, l = split_name(name)
    return {"z": (m, spec.widths[l]), "a": (m, spec.widths[l]), "delta": (m, spec.widths[l]),
            "dW": (spec.widths[l], spec.widths[l - 1]), "db": (spec.widths[l],)}[quantity]


# -- loading a TARGET ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load_target(target: str) -> Impl:
    """``package.module:function`` or ``path/to/file.py:function`` -> the callable.

    Raises verify.errors.UsageError (one line) when the module cannot be imported,
    has no such attribute, or the attribute is not callable.
    """
    if not isinstance(target, str) or ":" not in target:
        raise UsageError(f"--impl {target!r}: expected package.module:function or path/to/file.py:function")
    where, _, name = target.rpartition(":")
    if not where or not name:
        raise UsageError(f"--impl {target!r}: expected package.module:function or path/to/file.py:function")
    module, e = guarded(lambda: _import(target, where))
    if e is not None:
        if isinstance(e, UsageError):
            raise e
        raise UsageError(f"--impl {target!r}: importing {where} failed: {describe_exception(e, None)}") from None
    fn, e = guarded(lambda: _attribute(module, name))
    if e is not None:
        raise UsageError(f"--impl {target!r}: {where} has no attribute {name!r}"
                     + ("" if isinstance(e, AttributeError) else f" ({describe_exception(e, None)})")) from None
    if not callable(fn):
        raise UsageError(f"--impl {target!r}: {name} is {a_type_name(fn)}, not callable")
    return fn


def _import(target: str, where: str):
    """The module ``where`` names (a dotted name or a file path), imported. Its top-level code is
    user code: load_target runs this under verify.byo.guard.guarded."""
    if not (where.endswith(".py") or os.sep in where or "/" in where):
        _current_directory_importable()
        return importlib.import_module(where)
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"--impl {target!r}: no file {where}")
    # As Python runs a script: its directory first on sys.path, so that it imports the files beside
    # it; a file inside a package (__init__.py beside it) is imported as that package's module, so
    # that its relative imports (from ..layers import *) work.
    package = _in_package(path)
    if package is not None:
        root, dotted = package
        _importable(str(root))
        return importlib.import_module(dotted)
    _importable(str(path.parent))
    mod_name = f"{USER_MODULE_PREFIX}{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"--impl {target!r}: cannot load {where} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module          # so that the function pickles for --jobs
    module_spec.loader.exec_module(module)
    return module


def _attribute(module: Any, name: str) -> Any:
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


def _current_directory_importable() -> None:
    """Put the current directory first on sys.path, as ``python -m`` and pytest's rootdir
    do, so that ``mypkg.mlp:backprop`` imports from where the command runs."""
    if "" not in sys.path:
        _importable(os.getcwd())


def _importable(directory: str) -> None:
    """``directory`` first on sys.path, unless it is there already."""
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _in_package(path: Path) -> tuple[Path, str] | None:
    """(the directory above the outermost package, the module's dotted name) for a file inside a
    package (a directory with __init__.py); None for a file on its own."""
    parts = [path.stem]
    directory = path.parent
    while (directory / "__init__.py").is_file() and directory.name.isidentifier():
        parts.insert(0, directory.name)
        directory = directory.parent
    return (directory, ".".join(parts)) if len(parts) > 1 and path.stem.isidentifier() else None


def resolve(impl: Impl | str) -> Impl:
    """A callable as it is; a TARGET string loaded (cached, so workers load it once)."""
    return load_target(impl) if isinstance(impl, str) else impl


# -- calling user code safely ------------------------------------------------------------------

def _user_file(fn: Any) -> str | None:
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None) or getattr(getattr(target, "__call__", None), "__code__", None)
    return code.co_filename if code is not None else None


def _plain_str(text: Any) -> str:
    """``text`` as an exact str (a str subclass could override the methods used on it)."""
    return str.__str__(text) if isinstance(text, str) else "?"


def describe_exception(e: BaseException, fn: Any) -> str:
    """``ValueError: shapes ... at impl.py:42 in backprop: dW = delta @ a`` — the innermost
    traceback frame in the user's file (else the innermost outside this module). Never raises:
    an exception whose ``__str__`` raises is named by its type and what that raised."""
    try:
        name = _plain_str(type(e).__name__)
    except BaseException:                 # noqa: BLE001 - a metaclass may make even this raise
        name = "an exception"
    try:
        message = _plain_str(str(e))
    except BaseException as inner:        # noqa: BLE001 - __str__ is user code
        message = f"(its str() raised {type(inner).__name__})"
    text = f"{name}: {message}".strip().splitlines()[0] if message.strip() else name
    if len(text) > 300:
        text = text[:297] + "..."
    return text + where_raised(e, fn)


def where_raised(e: BaseException, fn: Any) -> str:
    """`` at impl.py:42 in backprop: dW = delta @ a``: the innermost frame in ``fn``'s file (else
    the innermost outside this module); for a SyntaxError, the line it names. '' when none."""
    try:
        if isinstance(e, SyntaxError) and e.filename and e.lineno:
            line = (e.text or "").strip()
            return f" at {os.path.basename(e.filename)}:{e.lineno}" + (f": {line}" if line else "")
        frames = traceback.extract_tb(e.__traceback__)
        user = _user_file(fn)
        mine = [f for f in frames if f.filename == user] or \
            [f for f in frames if f.filename not in (__file__, _GUARD_FILE)]
    except BaseException:                 # noqa: BLE001 - a __traceback__ property, say
        mine = []
    if not mine:
        return ""
    f = mine[-1]
    line = (f.line or "").strip()
    # source compiled from a string is named "<label path/file.py>" (a mutant's, say): its file
    return f" at {os.path.basename(f.filename.strip('<>'))}:{f.lineno} in {f.name}" + (f": {line}" if line else "")


_GUARD_FILE = guard.__file__


def _name(fn: Any, default: str = CALL) -> str:
    """``fn.__name__`` if it is a str, else ``default`` (reading it may run user code)."""
    try:
        name = getattr(fn, "__name__", default)
    except BaseException:                 # noqa: BLE001
        return default
    return _plain_str(name) if isinstance(name, str) else default


def copy_params(params: list) -> list:
    """A fresh list of fresh (W, b) tuples of copied arrays (what a user function may scribble on);
    a stack's fresh dicts of copied arrays."""
    if params and isinstance(params[0], dict):
        return [{k: v.copy() for k, v in p.items()} for p in params]
    return [(W.copy(), None if b is None else b.copy()) for W, b in params]


def copy_spec(spec: Any) -> Any:
    """A fresh copy of the (frozen) spec: user code can write into one with object.__setattr__,
    and must not reach the harness's, which later cases and shrinking read. A stack's layers are
    objects too, copied with it."""
    return copy.deepcopy(spec) if hasattr(spec, "layers") else copy.copy(spec)


def _stack_changed(spec: Any, given: Any) -> bool:
    """Whether a stack spec's copy differs: its fields, or any layer's class or attributes."""
    mine, theirs = vars(spec), object.__getattribute__(given, "__dict__")
    if type(theirs) is not dict or set(mine) != set(theirs):
        return True
    if not all(_same_value(mine[k], theirs[k]) for k in mine if k != "layers"):
        return True
    layers = theirs["layers"]
    if type(layers) is not tuple or len(layers) != len(spec.layers):
        return True
    return any(type(a) is not type(b) or vars(a).keys() != vars(b).keys() or
               any(not _same_layer_value(vars(a)[k], vars(b)[k]) for k in vars(a))
               for a, b in zip(spec.layers, layers))


def _same_layer_value(a: Any, b: Any) -> bool:
    """A layer attribute's value against its copy's: plain values as _same_value, a residual
    block's inner layers and an activation object by their type and attributes."""
    if _same_value(a, b):
        return True
    if type(a) is tuple and type(b) is tuple and len(a) == len(b):
        return all(_same_layer_value(x, y) for x, y in zip(a, b))
    if type(a) is type(b) and hasattr(a, "__dict__") and hasattr(b, "__dict__"):
        da, db = vars(a), vars(b)
        return da.keys() == db.keys() and all(_same_layer_value(da[k], db[k]) for k in da)
    return False


def _same_value(a: Any, b: Any) -> bool:
    """Whether ``b`` is ``a`` or an equal value of the same built-in type (never runs user code)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) in (str, int, float, bool):
        return a == b
    if type(a) is tuple:
        return len(a) == len(b) and all(map(_same_value, a, b))
    return False


def spec_modified(spec: Any, given: Any) -> bool:
    """Whether the copy ``given`` of ``spec`` differs from it: its class, or any attribute (a
    stack's layers: their written form, every hyperparameter)."""
    if type(given) is not type(spec):
        return True
    if hasattr(spec, "layers"):
        return _stack_changed(spec, given)
    mine, theirs = vars(spec), object.__getattribute__(given, "__dict__")
    return type(theirs) is not dict or set(mine) != set(theirs) or \
        not all(_same_value(mine[k], theirs[k]) for k in mine)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if not isinstance(b, np.ndarray):
        return False
    return a.shape == b.shape and a.dtype == b.dtype and _same_bytes(a, b)


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b (one shape and dtype) hold the same bytes: read as unsigned integers of
    the item's width where that is possible (plain contiguous arrays of numbers: nothing copied,
    where tobytes copies both, which on a 4096-wide layer costs more than the comparison),
    else as bytes."""
    width = _UNSIGNED.get(a.dtype.itemsize)
    if width is not None and a.dtype.kind in "biufc" and type(a) is np.ndarray and type(b) is np.ndarray \
            and a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(np.array_equal(a.view(width), b.view(width)))
    return a.tobytes() == b.tobytes()


def _pair(p: Any) -> bool:
    return isinstance(p, tuple) and len(p) == 2


def modified_inputs(params: list, x: np.ndarray, y: np.ndarray,
                    given_params: Any, given_x: Any, given_y: Any) -> list[str]:
    """Names of the inputs whose copies the call changed: ``params`` when the list itself was
    changed (items added, removed or replaced by something other than a (W, b) pair), then x, y
    and each W{l}, b{l} whose values changed (compared where layer l still holds a pair)."""
    listed = isinstance(given_params, list)
    if params and isinstance(params[0], dict):          # a stack: one dict per layer
        same_kind = listed and len(given_params) == len(params) and all(isinstance(p, dict) for p in given_params)
        changed = [] if same_kind else ["params"]
        changed += [name for name, a, b in (("x", x, given_x), ("y", y, given_y)) if not _same(a, b)]
        if same_kind:
            changed += [f"{key}{i}" for i, (p, g) in enumerate(zip(params, given_params), start=1)
                        for key, value in p.items() if not _same(value, g.get(key))]
        return changed
    changed = [] if listed and len(given_params) == len(params) and all(map(_pair, given_params)) \
        else ["params"]
    changed += [name for name, a, b in (("x", x, given_x), ("y", y, given_y)) if not _same(a, b)]
    for l, (W, b) in enumerate(params, start=1):
        if not listed or l > len(given_params) or not _pair(given_params[l - 1]):
            continue
        given_W, given_b = given_params[l - 1]
        changed += [name for name, a, g in ((f"W{l}", W, given_W), (f"b{l}", b, given_b)) if not _same(a, g)]
    return changed


_WARNED: set = set()


def reset_warnings() -> None:
    """Forget which implementations were warned about (called at the start of each sweep)."""
    _WARNED.clear()


def _warn_unknown(fn: Any, keys: list[str]) -> None:
    try:
        ident = getattr(fn, "__qualname__", None)
    except BaseException:                 # noqa: BLE001
        ident = None
    ident = _plain_str(ident) if isinstance(ident, str) else _name(fn)
    if ident in _WARNED:
        return
    _WARNED.add(ident)
    warnings.warn(f"{ident} returned keys the harness does not know, ignored: {', '.join(keys[:8])}"
                  f"{' ...' if len(keys) > 8 else ''} (known: loss, z{{l}}, a{{l}}, delta{{l}}, "
                  f"dW{{l}}, db{{l}}, dx)", ImplementationWarning, stacklevel=3)


def _plain(value: Any) -> Any:
    """``value`` as a plain NumPy array or scalar, or Python int or float, where it is one of
    those or a subclass (whose overridden methods the harness must not run); else as it is.

    An ndarray subclass stays as it is (and is refused: ``_is_numeric``), but for np.memmap,
    whose values are its data: a masked array's data includes what its mask hides, an
    np.matrix is two-dimensional whatever it holds, and any other subclass may give its
    values a meaning (units, a mask, a sparse layout) that reading them as a plain array loses."""
    if type(value) is np.ndarray or type(value) is float or type(value) is int:
        return value
    if isinstance(value, np.memmap):
        return np.ndarray.view(value, np.ndarray)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)[()]
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        return int.__int__(value)
    return value


def _is_numeric(value: Any) -> bool:
    if type(value) is np.ndarray:
        return value.dtype.kind in "fiu"
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, np.generic):
        return np.asarray(value).dtype.kind in "fiu"
    return False


def _not_numeric(value: Any, dtype: str, shape: tuple) -> str:
    """Why a value that _is_numeric refuses is not torch's array, in one line."""
    if type(value) is np.ndarray:
        return f"array of {value.dtype} where torch has a {dtype} array of shape {shape}"
    what = f"{dtype} array of shape {shape}"
    if isinstance(value, np.ndarray):
        return (f"{_type_name(value)} where torch has a plain {what} (masked arrays, np.matrix and "
                f"other ndarray subclasses are refused: return a plain np.ndarray)")
    return f"{_type_name(value)} where torch has a {what}"


def _not_a_tensor(name: str, spec: Any, problem: str, rtol: float, atol: float) -> Comparison:
    """A failing record about the call rather than one tensor (quantity ''; reports plot none)."""
    return dataclasses.replace(problem_record(name, spec.dtype, (), problem, rtol, atol),
                               quantity="", layer=None)


def _read_result(out: Any, spec: Any, m: int, name: str, rtol: float, atol: float
                 ) -> tuple[dict[str, Any], list[Comparison], list[str]]:
    """(the known keys' plain values, failing records, unknown keys) of what the call returned.
    Reading a mapping runs its methods, which are user code: call under ``guarded``."""
    if not isinstance(out, Mapping):
        problem = (f"{name} returned {type(out).__name__} where a mapping of tensor names to arrays "
                   f"belongs ({{'loss': ..., 'dW1': ..., ...}})")
        return {}, [_not_a_tensor(CALL, spec, problem, rtol, atol)], []
    required, optional = required_keys(spec), optional_keys(spec)
    known = set(required) | set(optional)
    unknown = sorted(_plain_str(str(k)) for k in out if k not in known)
    hand: dict[str, Any] = {}
    problems: list[Comparison] = []
    for key in required + optional:
        if key not in out:
            if key in required:
                problems.append(problem_record(key, spec.dtype, expected_shape(spec, key, m),
                                               f"missing: {name} did not return required key {key!r}",
                                               rtol, atol))
            continue
        value = _plain(out[key])
        if not _is_numeric(value):
            shape = expected_shape(spec, key, m)
            problems.append(problem_record(key, spec.dtype, shape, _not_numeric(value, spec.dtype, shape),
                                           rtol, atol))
            continue
        hand[key] = value
    return hand, problems, unknown


def call_safely(fn: Impl, spec: Any, params: list, x: np.ndarray, y: np.ndarray, *,
                rtol: float, atol: float, limit: TimeLimit | None = None, guard=guarded
                ) -> tuple[dict[str, Any], list[Comparison], list[Comparison], str]:
    """Call ``fn`` on copies of its inputs, stopping it at ``limit``; never raise (but for a
    real Ctrl-C, KeyboardInterrupt).

    The call, and the reading of what it returned (a mapping's methods are user code too), run
    under verify.byo.guard.guarded: whatever they raise is caught, BaseExceptions included, and the
    state the harness depends on is put back afterwards.

    Returns
    -------
    hand : dict
        The known keys the implementation returned (to be compared), as plain arrays or numbers.
    problems : list of Comparison
        Failing records for what could not be compared: a non-mapping, a mapping that raised
        when read, a missing required key, a value that is not a number array.
    mutations : list of Comparison
        One failing record per input the call modified in place.
    error : str
        What the call raised (type, message, user line), or "" (then ``hand`` and
        ``problems`` are empty: the CaseResult carries the error). A call stopped at
        its time limit gives ``CallTimedOut: did not return within ... at FILE:LINE``.

    ``guard(thunk, limit) -> (value, exception)`` runs the code: verify.byo.guard.guarded, or for
    the harness's own handimpl a plain call (see call_and_step).
    """
    m = x.shape[0]
    p_copy, x_copy, y_copy, spec_copy = copy_params(params), x.copy(), y.copy(), copy_spec(spec)
    name = _name(fn)
    returned = []

    def call_and_read():
        out = fn(spec_copy, p_copy, x_copy, y_copy)
        returned.append(out)
        return _read_result(out, spec, m, name, rtol, atol)

    read, e = guard(call_and_read, limit)
    mutations = _mutations(name, spec, spec_copy, params, x, y, p_copy, x_copy, y_copy, rtol, atol, guard)
    if e is not None and not returned:
        return {}, [], mutations, describe_exception(e, fn)
    if e is not None:
        problem = f"{name} returned {a_type_name(returned[0])} that raised {describe_exception(e, fn)} when read"
        return {}, [_not_a_tensor(CALL, spec, problem, rtol, atol)], mutations, ""
    hand, problems, unknown = read
    if unknown:
        _warn_unknown(fn, unknown)
    return hand, problems, mutations, ""


def _type_name(value: Any) -> str:
    try:
        return _plain_str(type(value).__name__)
    except BaseException:                 # noqa: BLE001
        return "value"


def a_type_name(value: Any) -> str:
    """The value's type with its article, as a sentence reads it: "an ndarray", "a tuple", "None"."""
    if value is None:
        return "None"
    name = _type_name(value)
    return ("an " if name[:1].lower() in "aeiou" or name.startswith("nd") else "a ") + name


def _mutations(name, spec, spec_copy, params, x, y, p_copy, x_copy, y_copy, rtol, atol, guard=guarded
               ) -> list[Comparison]:
    changed, e = guard(lambda: modified_inputs(params, x, y, p_copy, x_copy, y_copy))
    records = [_not_a_tensor(arg, spec, f"{name} modified its input {arg} in place (the harness "
                             f"passed a copy; compute into new arrays, e.g. W = W - ..., not W -= ...)",
                             rtol, atol)
               for arg in (["params"] if e is not None else changed)]
    if spec_modified(spec, spec_copy):
        records.insert(0, _not_a_tensor(SPEC, spec, f"{name} modified its spec argument (the harness "
                                        f"passed a copy; the spec is read-only: keep what you derive "
                                        f"from it in variables of your own)", rtol, atol))
    return records


def after_step_safely(fn: Impl | None, spec: Any, params: list, hand: dict, lr: float, *,
                      rtol: float, atol: float, limit: TimeLimit | None = None, guard=guarded
                      ) -> tuple[dict[str, Any], list[Comparison]]:
    """``W{l}_after``/``b{l}_after`` from one update with the implementation's gradients.

    The update is ``fn.step(params, grads, lr)`` when the implementation has one,
    else handimpl.sgd_step. Layers whose gradients are missing or misshapen get
    no after-step value (their gradient record already fails). The step runs under
    verify.byo.guard.guarded, as the call does.
    """
    if params and isinstance(params[0], dict):          # a stack: plain SGD on every parameter
        return stack_after_step(spec, params, hand, lr), []
    step, e = guarded(lambda: getattr(fn, "step", None)) if fn is not None else (None, None)
    if e is not None:
        return {}, [_not_a_tensor(STEP, spec, f"reading {_name(fn)}.step raised {describe_exception(e, fn)}",
                                  rtol, atol)]
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

    def step_and_read():
        pairs = list(step(p_copy, grads, lr))
        if len(pairs) != len(params):
            raise TypeError(f"step returned {len(pairs)} items, expected {len(params)} (W, b) pairs")
        unpacked = []
        for pair in pairs:
            pair = list(pair)
            if len(pair) != 2:
                raise TypeError(f"step returned {len(pair)} values where a (W, b) pair belongs")
            unpacked.append((_plain(pair[0]), _plain(pair[1])))
        return unpacked

    pairs, e = guard(step_and_read, limit)
    if e is not None:
        return {}, [_not_a_tensor(STEP, spec, f"step raised {describe_exception(e, step)}", rtol, atol)]
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
                                               f"step returned {_not_numeric(value, spec.dtype, like.shape)}",
                                               rtol, atol))
    return out, problems


def stack_after_step(spec: Any, params: list[dict], hand: dict, lr: float) -> dict[str, Any]:
    """A stack's ``{param}{i}_after`` = θ − η·∂J/∂θ from the implementation's gradients, where
    they have θ's shape (the step torch.optim.SGD takes; a missing or misshapen gradient's
    record fails already)."""
    out: dict[str, Any] = {}
    for i, (layer, p) in enumerate(zip(spec.layers, params), start=1):
        for name in layer.param_names:
            grad = hand.get(param_key("d", name, i))
            if isinstance(grad, np.ndarray) and grad.shape == p[name].shape:
                out[param_key("", name, i) + "_after"] = p[name] - lr * grad
    return out


ISOLATE_GRACE = 1.0      # seconds past its time limit after which an isolated call's process is killed


def call_and_step(fn: Impl, spec: Any, params: list, x: np.ndarray, y: np.ndarray, lr: float, *,
                  rtol: float, atol: float, limit: TimeLimit | None = None
                  ) -> tuple[dict[str, Any], list[Comparison], list[Comparison], str, list[Comparison]]:
    """call_safely, then after_step_safely on what it returned: (hand with the after-step
    values, problems, mutations, error, the step's problems).

    With ``limit.isolate`` both run in a forked child process (verify.byo.isolation), which is
    killed when the call, or the step, runs ISOLATE_GRACE seconds past the time limit (code that
    ignores SIGALRM or swallows CallTimedOut); whatever the code changes in the process dies
    with it, and a call that ends the process fails the case instead of ending the sweep."""
    limit = limit or TimeLimit()
    if fn is handimpl.backprop or fn is stack_backprop:
        return _call_trusted(fn, spec, params, x, y, lr, rtol=rtol, atol=atol)
    if limit.isolate and isolation.AVAILABLE:
        return _call_isolated(fn, spec, params, x, y, lr, rtol=rtol, atol=atol, limit=limit)
    hand, problems, mutations, error = call_safely(fn, spec, params, x, y, rtol=rtol, atol=atol, limit=limit)
    isolation.checkpoint()
    stepped, step_problems = after_step_safely(fn, spec, params, hand, lr, rtol=rtol, atol=atol, limit=limit)
    hand.update(stepped)
    return hand, problems, mutations, error, step_problems


def _call_trusted(fn, spec, params, x, y, lr, *, rtol, atol):
    """handimpl's own backprop, the harness's code: called on copies and checked as any other,
    without the guard's state saving (a sweep of handimpl makes this call for every case)."""
    hand, problems, mutations, error = call_safely(fn, spec, params, x, y, rtol=rtol, atol=atol,
                                                   guard=_unguarded)
    stepped, step_problems = after_step_safely(None, spec, params, hand, lr, rtol=rtol, atol=atol,
                                               guard=_unguarded)
    hand.update(stepped)
    return hand, problems, mutations, error, step_problems


def _unguarded(thunk, limit=None):
    """guarded's contract for the harness's own code: (value, None) or (None, the Exception)."""
    try:
        return thunk(), None
    except Exception as e:               # noqa: BLE001 - a failing row, as for user code
        return None, e


def _in_child(fn, spec, params, x, y, lr, rtol, atol, seconds):
    limit = TimeLimit(seconds)
    return call_and_step(fn, spec, params, x, y, lr, rtol=rtol, atol=atol, limit=limit), limit.expired


def _call_isolated(fn, spec, params, x, y, lr, *, rtol, atol, limit):
    seconds = limit.seconds or None
    deadline = None if seconds is None else seconds + ISOLATE_GRACE
    outcome = isolation.run_forked(_in_child, (fn, spec, params, x, y, lr, rtol, atol, seconds),
                                   deadlines=(deadline, deadline))
    if outcome.ok:
        result, expired = outcome.value
        limit.expired = limit.expired or expired
        return result
    if outcome.timed_out:
        limit.expired = True
        error = (f"CallTimedOut: did not return within {seconds:g} s (the time limit) and did not stop "
                 f"when told to: its process was killed (--isolate)")
    elif outcome.ended:
        error = f"{PROCESS_ENDED}: the implementation ended the process ({outcome.ended})"
    else:
        error = outcome.raised
    return {}, [], [], error, []


PROCESS_ENDED = "ProcessEnded"     # the error type of a case whose process the implementation ended
