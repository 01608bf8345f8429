"""Calling one user layer function safely, and judging what it returned.

Every call gets copies of its arguments and runs under verify.byo.guard.guarded with the time
limit: whatever it raises, a hang included, becomes a ``Failed`` (one sentence naming the user's
line), never a traceback. What it returns is checked for the convention's structure (a tuple
``(out, cache)``, a tuple of gradients) before anything is compared; the comparison is
verify.core.compare's, within the layer's a priori bound (never a fixed rtol).
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any, Callable

import numpy as np

from verify.byo import isolation
from verify.byo.call import a_type_name, describe_exception, where_raised
from verify.byo.guard import CallTimedOut, TimeLimit, guarded
from verify.core.compare import UNIT_ROUNDOFF, Comparison, Pair, compare_all, problem_record, tolerances

DTYPE = "float64"                  # the convention's dtype (NumPy's default)
U = UNIT_ROUNDOFF[DTYPE]
RTOL, ATOL = tolerances(DTYPE)


class Failed(Exception):
    """A call that raised, hung, or returned something the convention does not allow."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name, self.message = name, message


def copied(value: Any) -> Any:
    """A deep copy of an argument (arrays, dicts of arrays, numbers)."""
    return copy.deepcopy(value)


def call(fn: Callable, name: str, args: tuple, limit: TimeLimit, blame: Any = None) -> Any:
    """``fn(*args)`` under the guard, its warnings silenced (an overflow shows in what it
    returns); raises Failed for whatever went wrong in it, naming the line of ``blame``'s file
    (default fn's) where it went wrong. With ``limit.isolate``, in a forked child killed at the
    time limit (``_call_isolated``)."""
    blame = fn if blame is None else blame
    if limit.isolate and isolation.AVAILABLE:
        return _call_isolated(fn, name, args, limit, blame)
    def quietly():
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*args)

    value, e = guarded(quietly, limit)
    if e is not None:
        if isinstance(e, CallTimedOut):
            raise Failed(name, f"{name} did not return within {limit.seconds:g} s (the time limit)"
                               f"{where_raised(e, blame)}")
        raise Failed(name, f"{name} raised {describe_exception(e, blame)}")
    return value


def _in_child(fn: Callable, args: tuple, blame: Any = None) -> tuple:
    """In --isolate's child: ('value', what fn returned, its arguments as it left them) or
    ('raised', the exception described with the user's line, None)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return "value", fn(*args), args
    except BaseException as e:            # noqa: BLE001 - user code may raise anything
        return "raised", describe_exception(e, fn if blame is None else blame), None


def _put_back(given: Any, returned: Any) -> None:
    """What the child did to an argument, done to the parent's copy (a dict updated in place,
    bn_param's running statistics; an array written to, a modified dout)."""
    if isinstance(given, np.ndarray) and isinstance(returned, np.ndarray) and given.shape == returned.shape \
            and given.dtype == returned.dtype:
        np.copyto(given, returned)
    elif isinstance(given, dict) and isinstance(returned, dict):
        given.clear()
        given.update(returned)


def _call_isolated(fn: Callable, name: str, args: tuple, limit: TimeLimit, blame: Any = None) -> Any:
    """``fn(*args)`` in a forked child (verify.byo.isolation), killed at the time limit: for code
    that ignores SIGALRM, catches BaseException or ends the process. What it returns comes back
    pickled (a cache that does not pickle is a failing row)."""
    outcome = isolation.run_forked(_in_child, (fn, args, blame), [limit.seconds or None])
    if outcome.timed_out:
        limit.expired = True
        raise Failed(name, f"{name} did not return within {limit.seconds:g} s (the time limit): its process was killed")
    if outcome.ended:
        raise Failed(name, f"{name} ended its process ({outcome.ended})")
    if outcome.raised:
        raise Failed(name, f"{name}: {outcome.raised}")
    kind, value, back = outcome.value
    if kind == "raised":
        raise Failed(name, f"{name} raised {value}")
    for given, returned in zip(args, back):
        _put_back(given, returned)
    return value


def guarded_value(fn: Callable, args: tuple, limit: TimeLimit) -> Any:
    """``fn(*args)``, or None whatever went wrong (a second call made only to remark on it)."""
    try:
        return call(fn, "", args, limit)
    except Failed:
        return None


def as_tuple(value: Any, name: str, n: int, what: str) -> tuple:
    """``value`` as a tuple of n items (``what`` names them: '(out, cache)'), else Failed."""
    if value is None:
        raise Failed(name, f"{name} returned None where {what} is expected: a missing return?")
    if not isinstance(value, (tuple, list)):
        if n == 1:
            return (value,)
        raise Failed(name, f"{name} returned {a_type_name(value)} where {what} is expected")
    if n == 1 and len(value) != 1:
        return (value,)
    if len(value) != n:
        raise Failed(name, f"{name} returned {len(value)} values where {what} is expected")
    return tuple(value)


def shape_problem(hand: Any, ref: np.ndarray) -> str:
    """Why ``hand`` cannot be compared with ``ref`` elementwise, with a hint; '' when it can."""
    if hand is None:
        return "None where an array is expected: a missing return?"
    if isinstance(hand, bool) or not isinstance(hand, (np.ndarray, np.generic, float, int)):
        return f"{a_type_name(hand)} where an array is expected"
    h = np.asarray(hand)
    if h.dtype.kind not in "fiu":
        return f"dtype {h.dtype} where {ref.dtype} is expected"
    if h.shape == ref.shape:
        return ""
    hint = ""
    if h.ndim == 2 and h.shape == ref.shape[::-1]:
        hint = ": a missing transpose?"
    elif h.size == ref.size and tuple(d for d in h.shape if d != 1) == tuple(d for d in ref.shape if d != 1):
        hint = ": keepdims?" if h.ndim > ref.ndim else ": a lost axis?"
    return f"{h.shape} where {ref.shape} is expected{hint}"


def judge(items: list[tuple], forms: tuple = (), who: str = "") -> list[Comparison]:
    """One record per (name, hand, reference, E[, E_textbook]): |hand − ref| within 2E + the floor
    (the float64 reference is itself a correct float64 evaluation, off by up to E). With E_textbook
    (the textbook allowance: the layer's error model widened to its textbook ``forms``,
    handimpl.textbook), a value beyond 2E but within 2·E_textbook passes as 'imprecise' with a note
    naming the form (``who``: the layer); where E_textbook is not finite the tight E judges. A value
    of the wrong shape or type is a failing record saying so."""
    pairs, records = [], {}
    for i, (name, hand, ref, E, *loose) in enumerate(items):
        ref = np.asarray(ref, dtype=np.float64)
        problem = shape_problem(hand, ref)
        if problem:
            records[i] = problem_record(name, DTYPE, ref.shape, problem, RTOL, ATOL)
            continue
        h = np.asarray(hand)
        if h.dtype != np.float64 and h.dtype.kind == "f" and name == "loss":
            h = h.astype(np.float64)
        elif h.dtype.kind in "iu" and name == "loss":
            h = h.astype(np.float64)
        bound = None if E is None else 2 * np.asarray(E, dtype=np.float64)
        textbook = None
        if loose and loose[0] is not None and bound is not None:
            wide = 2 * np.asarray(loose[0], dtype=np.float64)
            textbook = np.where(np.isfinite(wide), np.maximum(wide, bound), bound)
        pairs.append((i, Pair(name, h, ref, None, bound, textbook)))
    if pairs:
        for (i, _), record in zip(pairs, compare_all([p for _, p in pairs], dtype=DTYPE, rtol=RTOL, atol=ATOL)):
            records[i] = _noted(record, forms, who) if record.status == "imprecise" else record
    return [records[i] for i in range(len(items))]


def _noted(record: Comparison, forms: tuple, who: str) -> Comparison:
    """An imprecise record with the precision note: which textbook form it needed."""
    said = "; ".join(t.sentence() for t in forms) or "a documented formula evaluated as written"
    note = (f"within the textbook allowance only ({record.n_imprecise} of {record.n_elements} "
            f"element{'s' if record.n_elements != 1 else ''}): {said}" + (f" [{who}]" if who else ""))
    return dataclasses.replace(record, note=note)


def failed_record(name: str, message: str) -> Comparison:
    return problem_record(name, DTYPE, (), message, RTOL, ATOL)


def modified(name: str, original: Any, given: Any, what: str) -> Comparison | None:
    """A failing record when the call changed an array argument in place."""
    if isinstance(original, np.ndarray) and isinstance(given, np.ndarray):
        same = original.shape == given.shape and np.array_equal(original, given, equal_nan=True)
        if not same:
            return failed_record(name, f"{name} modified its {what} argument")
    return None
