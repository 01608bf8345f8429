"""Discrepancy reports from a sweep: pandas frames, CSV, a self-contained HTML page, JSON.

Every frame is built once from the frozen records (verify.core.compare.Comparison)
and the CSV files depend on nothing but the records, so a sweep with the same
seed writes byte-identical CSVs; timings go to report.json only. A report is
written whole or not at all: into a staging directory, then swapped into place
(verify.report.output.write_dir).
"""
from __future__ import annotations

import operator
import platform
from collections import Counter
from typing import Sequence

import hypothesis
import numpy as np
import pandas as pd
import torch

from handimpl.optim import OPTIMIZERS
from verify.byo.target import NOT_IMPORTABLE, importable
from verify.core.verdict import counts
from verify.harness.diagnose import and_join, hint, kink_sentence, refereed, tally, worst_sentence
from verify.harness.trace import OPTIMIZER, CaseResult
from verify.sweep.shrink import Seen, failure_groups, signature, size_key

DISCREPANCY_COLUMNS = [
    "case_id", "spec", "seed", "batch", "dtype", "quantity", "layer", "shape", "max_abs_err",
    "max_rel_err", "norm_rel_err", "max_ulp", "worst_index", "hand_value", "torch_value",
    "n_mismatched", "n_imprecise", "n_elements", "atol", "rtol", "passed", "status", "margin", "allowed",
    "hand_ref_err",
    "torch_ref_err", "note", "impl", "test", "referee", "referee_value", "referee_error", "referee_note",
]
CASE_COLUMNS = [
    "case_id", "spec", "seed", "depth", "widths", "activations", "loss", "dtype", "batch", "passed",
    "worst_norm_rel_err", "first_divergence", "n_diverging", "n_inheriting", "n_imprecise", "note", "impl",
    "test", "referee", "optimizer", "optimizer_hyper",
]
QUANTITY_ORDER = ["z", "a", "loss", "delta", "dW", "db", "dx", "W_after_step", "b_after_step"]
# A stack's quantities: outputs, the loss, gradients into each output, parameter gradients, buffers, updates.
STACK_ORDER = ["out", "loss", "grad", "dW", "db", "dgamma", "dbeta", "dx", "running_mean", "running_var"]


def quantity_order(present) -> list[str]:
    """The quantities in ``present`` in report order: the dense ones, a stack's, then the rest
    (parameter updates last) alphabetically."""
    present = set(present)
    first, then = (STACK_ORDER, QUANTITY_ORDER[:-2]) if "out" in present else (QUANTITY_ORDER[:-2], STACK_ORDER)
    known = [q for q in dict.fromkeys(first + then) if q in present]
    rest = sorted(q for q in present if q not in known)
    return known + [q for q in rest if not q.endswith("_after_step")] + [q for q in rest if q.endswith("_after_step")]
FILES = {"discrepancies": "discrepancies.csv", "cases": "cases.csv", "summary": "summary.csv",
         "html": "report.html", "json": "report.json"}


# -- frames ------------------------------------------------------------------------------------

def _fmt_index(index: tuple) -> str:
    return "(" + ", ".join(map(str, index)) + ")"


def _case_fields(case_id: int, c: CaseResult) -> dict:
    """The CASE_FIELDS of case ``case_id``."""
    return {"case_id": case_id, "spec": str(c.spec), "seed": c.seed, "batch": c.batch,
            "impl": c.impl, "test": c.test}


CASE_FIELDS = ["case_id", "spec", "seed", "batch", "impl", "test"]
# The columns a record's own attribute of the same name fills; the rest are the case's fields and
# the three written out below (shape, worst_index, note). A new column is a new Comparison field
# and its name in DISCREPANCY_COLUMNS.
RECORD_COLUMNS = [c for c in DISCREPANCY_COLUMNS if c not in CASE_FIELDS and c not in ("shape", "worst_index", "note")]


_RECORD_VALUES = operator.attrgetter(*RECORD_COLUMNS)


def _record_row(fields: dict, c: CaseResult, r) -> dict:
    """The discrepancy row of record ``r`` of case ``c`` (``fields``: the case's CASE_FIELDS)."""
    row = {**fields, **dict(zip(RECORD_COLUMNS, _RECORD_VALUES(r)))}
    row.update(shape="x".join(map(str, r.shape)), worst_index=_fmt_index(r.worst_index),
               note="; ".join(t for t in (r.problem, r.note, c.error) if t))
    return row


def _error_row(case_id: int, c: CaseResult) -> dict:
    nan = float("nan")
    return {**_case_fields(case_id, c), "dtype": c.spec.dtype, "quantity": "", "layer": None,
            "shape": "", "max_abs_err": nan, "max_rel_err": nan, "norm_rel_err": nan,
            "max_ulp": nan, "worst_index": "", "hand_value": nan, "torch_value": nan,
            "n_mismatched": 0, "n_imprecise": 0, "n_elements": 0, "atol": nan, "rtol": nan, "passed": False,
            "status": "diverges", "margin": nan, "allowed": nan,
            "hand_ref_err": None, "torch_ref_err": None, "note": c.error,
            "referee": "", "referee_value": None, "referee_error": None, "referee_note": ""}


def record_rows(case_id: int, c: CaseResult, which=None) -> list[dict]:
    """The discrepancy rows of one case: one per record (``which``: those records it is true
    of), or one error row when it has none."""
    fields = _case_fields(case_id, c)
    if not c.records:
        return [_error_row(case_id, c)]
    return [_record_row(fields, c, r) for r in c.records if which is None or which(r)]


# The dtype of each typed column of the two per-row CSV files, so that a chunk of rows is written
# exactly as the same rows within the whole frame would be (verify.report.stream writes chunks).
DISCREPANCY_DTYPES = {"layer": "Int64", "hand_ref_err": "float64", "torch_ref_err": "float64",
                      "referee_value": "float64", "referee_error": "float64",
                      "passed": bool, **dict.fromkeys(["max_abs_err", "max_rel_err", "norm_rel_err", "max_ulp",
                                                       "hand_value", "torch_value", "atol", "rtol",
                                                       "margin", "allowed"], "float64")}
CASE_DTYPES = {"passed": bool, "worst_norm_rel_err": "float64"}


def rows_frame(rows: list[dict], columns: list[str], dtypes: dict) -> pd.DataFrame:
    """The frame of ``rows`` with ``columns``, each typed column cast to its dtype."""
    return pd.DataFrame(rows, columns=columns).astype(dtypes)


def discrepancy_frame(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per compared tensor per case (DISCREPANCY_COLUMNS); a case whose implementation
    raised before producing records gets one row whose note is the error."""
    rows = [row for i, c in enumerate(results) for row in record_rows(i, c)]
    return rows_frame(rows, DISCREPANCY_COLUMNS, DISCREPANCY_DTYPES)


def _worst(c: CaseResult) -> float:
    errs = [r.norm_rel_err for r in c.records if not np.isnan(r.norm_rel_err)]
    return max(errs) if errs else float("nan")


def _widths(spec) -> str:
    """'2-2-1' for a dense network; a stack's input shape and layers, '1x8x8>conv2d:4,k3>…'."""
    if hasattr(spec, "layers"):
        return str(spec).partition("|")[0]
    return "-".join(map(str, spec.widths))


def _activations(spec) -> str:
    """The activations, one per layer (a stack: its activation layers)."""
    return ",".join(spec.activations)


def _layer_label(spec, quantity: str, layer) -> str:
    """The activation of a dense tensor's layer (layer 1 for dx, the output layer for the loss);
    for a stack, the kind of the layer whose step makes the tensor (verify.core.verdict.step_key)."""
    if hasattr(spec, "layers"):
        return ""
    if layer == layer and layer is not None:
        return spec.activations[int(layer) - 1]
    return spec.activations[0] if quantity == "dx" else spec.activations[-1]


def case_row(case_id: int, c: CaseResult) -> dict:
    """The row of cases.csv of one case (CASE_COLUMNS)."""
    first = c.first_divergence
    tally = counts(c.records)
    return {**_case_fields(case_id, c), "depth": c.spec.depth,
            "widths": _widths(c.spec), "activations": _activations(c.spec), "loss": c.spec.loss,
            "dtype": c.spec.dtype, "passed": c.passed, "worst_norm_rel_err": _worst(c),
            "first_divergence": "error" if c.error else (first.name if first else ""),
            "n_diverging": tally["diverges"], "n_inheriting": tally["inherits"],
            "n_imprecise": tally["imprecise"],
            "note": c.error or (first.problem if first else ""),
            "referee": first.referee if first else "",
            # verify run --optimizers: the optimizer drawn and its hyperparameters other than torch's defaults
            "optimizer": c.optimizer.partition(":")[0], "optimizer_hyper": c.optimizer.partition(":")[2]}


def tensor_keys(spec, quantity: str, layer) -> tuple[str, str, int, str]:
    """What the summaries group a tensor of ``spec`` by besides its dtype and quantity: (the
    activation of the tensor's layer (layer 1 for dx, the output layer for the loss), the case's
    loss, its depth, the kind of the layer whose step makes the tensor)."""
    layer = float("nan") if layer is None else float(layer)
    return _layer_label(spec, quantity, layer), spec.loss, spec.depth, _kind(spec, quantity, layer)


def _kind(spec, quantity: str, layer: float) -> str:
    """The kind of the layer whose step makes a tensor (a stack's ∂J/∂out⁽ⁱ⁾ is made by layer
    i + 1's backward, or the loss's); 'dense' for the dense network's tensors."""
    if not hasattr(spec, "layers"):
        return "dense"
    if quantity.startswith(OPTIMIZER):        # a training's update (verify run --optimizers)
        return "optimizer"
    if quantity == "loss" or (quantity == "grad" and layer == spec.depth):
        return "loss"
    i = 1 if quantity == "dx" else int(layer) + (1 if quantity == "grad" else 0)
    return spec.kinds[i - 1]


SUMMARY_GROUPS = {"activation x loss": ["activation", "loss"], "depth": ["depth"],
                  "dtype": ["dtype"], "quantity": ["quantity"], "layer kind": ["kind"]}


# -- words -------------------------------------------------------------------------------------

def divergence_sentence(result: CaseResult) -> str:
    """E.g. 'z and a agree in all layers, and so does the loss; delta2 is the first to diverge',
    followed by the case's note in parentheses if it has one."""
    sentence = _divergence(result)
    return f"{sentence} ({result.note})" if result.note else sentence


def _divergence(result: CaseResult) -> str:
    if result.error:
        return result.error_sentence
    pos = next((i for i, r in enumerate(result.records) if r.status == "diverges"), None)
    if pos is None:
        return f"all {len(result.records)} tensors agree"
    first = result.records[pos]
    before = result.records[:pos]
    trained = [r for r in before if r.quantity.startswith(OPTIMIZER)]     # verify run --optimizers
    if trained:
        before = tuple(r for r in before if not r.quantity.startswith(OPTIMIZER))
    total = Counter(r.quantity for r in result.records)
    seen = Counter(r.quantity for r in before)
    full = [q for q in seen if q != "loss" and seen[q] == total[q]]
    some = [r.name for r in before if r.quantity != "loss" and r.quantity not in full]
    clauses = []
    if full:
        loss = ", and so does the loss" if "loss" in seen else ""
        where = f" in all {result.spec.depth} layers" if result.spec.depth > 1 else ""
        clauses.append(f"{and_join(full)} agree{'s' if len(full) == 1 else ''}{where}{loss}")
    if some:
        clauses.append(f"{and_join(some)} agree{'s' if len(some) == 1 else ''}{' too' if full else ''}")
    if trained:
        n = len(trained)
        clauses.append(f"then, training from torch's state, {plural(n, 'tensor')} agree{'s' if n == 1 else ''}")
    why = f" ({first.problem})" if first.problem else ""
    return "; ".join(clauses + [f"{first.name} is the first to diverge{why}"])


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 case', '2 cases', '0 cases' (``many`` for an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _disagree(n: int) -> str:
    return "disagrees" if n == 1 else "disagree"


def verdict(result) -> str:
    """'all 300 cases agree', '3 of 300 cases disagree'; the pytest gate's expected failures
    (failing checks of passing tests) are named apart and do not fail the verdict."""
    n, failed = result.n_cases, result.n_failed
    expected = len(result.expected_failures)
    prefix = f"PARTIAL ({result.stopped or 'interrupted'}): " if result.partial else ""
    if failed == 0 and expected:
        return (f"{prefix}no unexpected failure in {plural(n, 'case')}: the {expected} that "
                f"{_disagree(expected)} {'is' if expected == 1 else 'are'} in tests that passed "
                f"(expected failures)")
    if failed == 0:
        return f"{prefix}the one case agrees" if n == 1 else f"{prefix}all {n} cases agree"
    also = f", and {expected} more in tests that passed (expected failures)" if expected else ""
    return f"{prefix}{failed} of {plural(n, 'case')} {_disagree(failed)}{also}"


QUANTITIES = set(QUANTITY_ORDER)


def seen_with(result) -> dict[tuple, Seen]:
    """Per signature of the sweep's failures (those that count): where it was seen."""
    return failure_groups(result.failures)


def counterexample(case: CaseResult, seen: dict[tuple, Seen] | None = None) -> dict:
    """What a report says about one failing case (terminal, report.html and report.json
    alike): the command that runs it again, the first tensor to diverge with what agreed
    before it, where to look and the formula there (verify.harness.diagnose.hint), the worst
    element of the first diverging tensor, and (from ``seen``, seen_with's) in how many cases,
    with which activations, losses, dtypes and depths, its failure was seen."""
    first = case.first_divergence
    group = (seen or {}).get(signature(case))
    out = {"spec": str(case.spec), "seed": case.seed, "batch": case.batch, "impl": case.impl,
           "test": case.test, "repro": case.repro, "runnable": importable(case.impl),
           "first_divergence": divergence_sentence(case),
           "tensor": first.name if first else "", "look_at": "", "formula": "", "worst": None,
           "worst_text": "", "seen": group.as_dict() if group else None,
           "seen_text": group.text if group else "", "referee": []}
    if first is None:
        return out
    _, where = hint(case.spec, first.name)
    if first.quantity.startswith(OPTIMIZER):    # the training's update (verify run --optimizers)
        name = case.optimizer.partition(":")[0]
        out.update(look_at=f"the {name} update", formula=OPTIMIZERS[name].formula)
    elif first.quantity in QUANTITIES:
        look, _, formula = where.partition(": ")
        out.update(look_at=look, formula=formula)
    else:
        out.update(look_at=where)
    if not first.problem:
        index = list(first.worst_index)
        out["worst"] = {"tensor": first.name, "index": index, "hand": first.hand_value,
                        "torch": first.torch_value, "reference": first.reference_value,
                        "error": abs(first.hand_value - first.reference_value), "allowed": first.allowed,
                        "n_mismatched": first.n_mismatched, "n_elements": first.n_elements,
                        "max_abs_err": first.max_abs_err}
        out["worst_text"] = f"worst element {first.name} {worst_sentence(first)}"
    out["tally"] = tally(case.records)
    out["notes"] = [text for text in (f"tensors that do not agree: {out['tally']}", first.note,
                                      kink_sentence(case.spec, first), case.located, case.note) if text]
    judged = refereed(case)
    out["notes"] += [r.referee_note for r in judged]
    out["referee"] = [{"tensor": r.name, "supports": r.referee, "value": r.referee_value,
                       "error": r.referee_error, "note": r.referee_note} for r in judged]
    return out


def hint_text(cx: dict) -> str:
    """'look at the backward step of layer 1: δ¹ = (δ²W²) ⊙ f′(z¹)', or ''."""
    if not cx["look_at"]:
        return ""
    return f"look at {cx['look_at']}" + (f": {cx['formula']}" if cx["formula"] else "")


def counterexample_lines(case: CaseResult, indent: str = "  ", seen: dict[tuple, Seen] | None = None) -> list[str]:
    """The terminal's lines for one counterexample: its command, then what diverged and where
    to look, then its worst element, then where its failure was seen."""
    cx = counterexample(case, seen)
    more = indent + "    "
    lines = [indent + cx["repro"], more + cx["first_divergence"]]
    if cx["seen_text"]:
        lines.append(more + cx["seen_text"])
    if cx["look_at"]:
        lines.append(more + hint_text(cx))
    if cx["worst_text"]:
        lines.append(more + cx["worst_text"])
    lines += [more + text for text in cx.get("notes", [])]
    if not cx["runnable"]:
        lines.append(more + NOT_IMPORTABLE)
    return lines


def expected_groups(result) -> list[dict]:
    """The expected failures (failing checks of passing tests), one entry per (test,
    implementation): how many of its checks fail, and its smallest failing case."""
    groups: dict[tuple, dict] = {}
    for i, c in enumerate(result.results):
        key = (c.test, c.impl)
        g = groups.setdefault(key, {"test": c.test, "impl": c.impl, "checks": 0, "failing": 0,
                                    "smallest": None})
        g["checks"] += 1
        if not c.passed and result.is_expected(i):
            g["failing"] += 1
            if g["smallest"] is None or size_key(c) < size_key(g["smallest"]):
                g["smallest"] = c
    return [{**{k: v for k, v in g.items() if k != "smallest"},
             "example": counterexample(g["smallest"])}
            for g in groups.values() if g["failing"]]


def timing_text(result) -> str:
    """'0.6 s checking, 5.6 s in all' (the sweep's own time, and the command's when known)."""
    checking = f"{result.wall_time:.1f} s checking"
    return f"{checking}, {result.total_time:.1f} s in all" if result.total_time else checking


def summary_lines(result, n_tensors: int | None = None, imprecise: int | None = None) -> list[str]:
    """The short terminal summary: the verdict, then each minimal counterexample once
    (``n_tensors``, ``imprecise``: the records compared and the imprecise ones, counted from
    ``result.results`` where not given)."""
    if n_tensors is None:
        n_tensors = sum(len(c.records) for c in result.results)
    if imprecise is None:
        imprecise = sum(r.status == "imprecise" for c in result.results for r in c.records)
    lines = [f"verify: {verdict(result)} ({plural(n_tensors, 'tensor')} compared; {timing_text(result)})"]
    lines += blocks_lines(result)
    if imprecise:
        lines.append(f"{plural(imprecise, 'tensor')} passed only by the textbook allowance (imprecise: "
                     f"a documented formula evaluated as written, less accurate than torch; --strict fails them)")
    if result.minimal:
        k = len(result.minimal)
        seen = seen_with(result)
        lines.append(f"{plural(k, 'distinct failure')}; "
                     f"{'its minimal counterexample' if k == 1 else 'minimal counterexamples'}:")
        for m in result.minimal:
            lines += counterexample_lines(m, seen=seen)
    return lines


def blocks_lines(result) -> list[str]:
    """With a Dask scheduler: the blocks of cases retried after a worker died, and those lost
    (whose cases fail, saying so)."""
    lines = []
    for blocks, what in ((getattr(result, "blocks_retried", ()), "retried on another worker after a worker died"),
                         (getattr(result, "blocks_lost", ()), "lost: their cases are failing rows")):
        if blocks:
            lines.append(f"{plural(len(blocks), 'block')} of cases {what}: {', '.join(map(str, blocks))}")
    return lines


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "pandas": pd.__version__,
            "hypothesis": hypothesis.__version__}
