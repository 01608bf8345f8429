"""Discrepancy reports from a sweep: pandas frames, CSV, a self-contained HTML page, JSON.

Every frame is built once from the frozen records (verify.compare.Comparison)
and the CSV files depend on nothing but the records, so a sweep with the same
seed writes byte-identical CSVs; timings go to report.json only. A report is
written whole or not at all: into a staging directory, then swapped into place
(verify.output.write_dir).
"""
from __future__ import annotations

import io
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .check import CaseResult
from .verdict import counts
from .output import write_dir, write_file

DISCREPANCY_COLUMNS = [
    "case_id", "spec", "seed", "batch", "dtype", "quantity", "layer", "shape", "max_abs_err",
    "max_rel_err", "norm_rel_err", "max_ulp", "worst_index", "hand_value", "torch_value",
    "n_mismatched", "n_elements", "atol", "rtol", "passed", "status", "margin", "allowed", "hand_ref_err",
    "torch_ref_err", "note",
]
CASE_COLUMNS = [
    "case_id", "spec", "seed", "depth", "widths", "activations", "loss", "dtype", "batch", "passed",
    "worst_norm_rel_err", "first_divergence", "n_diverging", "n_inheriting", "note",
]
QUANTITY_ORDER = ["z", "a", "loss", "delta", "dW", "db", "dx", "W_after_step", "b_after_step"]
FILES = {"discrepancies": "discrepancies.csv", "cases": "cases.csv", "summary": "summary.csv",
         "html": "report.html", "json": "report.json"}


# -- frames ------------------------------------------------------------------------------------

def _fmt_index(index: tuple) -> str:
    return "(" + ", ".join(map(str, index)) + ")"


def _record_row(case_id: int, c: CaseResult, r) -> tuple:
    note = "; ".join(t for t in (r.problem, r.note, c.error) if t)
    return (case_id, str(c.spec), c.seed, c.batch, r.dtype, r.quantity, r.layer,
            "x".join(map(str, r.shape)), r.max_abs_err, r.max_rel_err, r.norm_rel_err, r.max_ulp,
            _fmt_index(r.worst_index), r.hand_value, r.torch_value, r.n_mismatched, r.n_elements,
            r.atol, r.rtol, r.passed, r.status, r.margin, r.allowed, r.hand_ref_err, r.torch_ref_err, note)


def _error_row(case_id: int, c: CaseResult) -> tuple:
    nan = float("nan")
    return (case_id, str(c.spec), c.seed, c.batch, c.spec.dtype, "", None, "", nan, nan, nan, nan,
            "", nan, nan, 0, 0, nan, nan, False, "diverges", nan, nan, None, None, c.error)


def discrepancy_frame(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per compared tensor per case (DISCREPANCY_COLUMNS); a case whose implementation
    raised before producing records gets one row whose note is the error."""
    rows = [row for i, c in enumerate(results)
            for row in ([_record_row(i, c, r) for r in c.records] or [_error_row(i, c)])]
    df = pd.DataFrame(rows, columns=DISCREPANCY_COLUMNS)
    df["layer"] = df["layer"].astype("Int64")
    for col in ("hand_ref_err", "torch_ref_err"):
        df[col] = df[col].astype("float64")
    df["passed"] = df["passed"].astype(bool)
    return df


def _worst(c: CaseResult) -> float:
    errs = [r.norm_rel_err for r in c.records if not np.isnan(r.norm_rel_err)]
    return max(errs) if errs else float("nan")


def case_frame(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per case (CASE_COLUMNS)."""
    rows = []
    for i, c in enumerate(results):
        first = c.first_divergence
        tally = counts(c.records)
        rows.append((i, str(c.spec), c.seed, c.spec.depth, "-".join(map(str, c.spec.widths)),
                     ",".join(c.spec.activations), c.spec.loss, c.spec.dtype, c.batch, c.passed,
                     _worst(c), "error" if c.error else (first.name if first else ""),
                     tally["diverges"], tally["inherits"],
                     c.error or (first.problem if first else "")))
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def tensor_frame(results: Sequence[CaseResult], disc: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``disc`` (discrepancy_frame(results)) about real tensors, plus the case's depth,
    loss and the activation of the tensor's layer (layer 1 for dx, the output layer for the
    loss): what the summaries group by."""
    df = disc[disc["quantity"] != ""].copy()
    specs = {i: c.spec for i, c in enumerate(results)}
    df["depth"] = [specs[i].depth for i in df["case_id"]]
    df["loss"] = [specs[i].loss for i in df["case_id"]]
    layer = df["layer"].astype("float64")
    df["activation"] = [specs[i].activations[int(l) - 1] if l == l else
                        (specs[i].activations[0] if q == "dx" else specs[i].activations[-1])
                        for i, l, q in zip(df["case_id"], layer, df["quantity"])]
    return df


def _group_stats(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=True, observed=True)
    return pd.DataFrame({
        "n_cases": g["case_id"].nunique(),
        "n_tensors": g.size(),
        "n_failed": g["passed"].apply(lambda p: int((~p).sum())),
        "n_diverging": g["status"].apply(lambda s: int((s == "diverges").sum())),
        "n_inheriting": g["status"].apply(lambda s: int((s == "inherits").sum())),
        "worst_norm_rel_err": g["norm_rel_err"].max(),
        "median_norm_rel_err": g["norm_rel_err"].median(),
    }).reset_index()


SUMMARY_GROUPS = {"activation x loss": ["activation", "loss"], "depth": ["depth"],
                  "dtype": ["dtype"], "quantity": ["quantity"]}


def summary_frame(tensors: pd.DataFrame) -> pd.DataFrame:
    """Worst and median norm_rel_err (with counts) by activation × loss, depth, dtype, quantity,
    from the tensor frame; long form, one row per group, the grouping columns not used left empty."""
    df = tensors.copy()
    df["quantity"] = pd.Categorical(df["quantity"], QUANTITY_ORDER, ordered=True)
    parts = []
    for by, keys in SUMMARY_GROUPS.items():
        stats = _group_stats(df, keys) if len(df) else pd.DataFrame(columns=keys)
        stats.insert(0, "by", by)
        parts.append(stats)
    out = pd.concat(parts, ignore_index=True)
    cols = ["by", "activation", "loss", "depth", "dtype", "quantity", "n_cases", "n_tensors",
            "n_failed", "n_diverging", "n_inheriting", "worst_norm_rel_err", "median_norm_rel_err"]
    out = out.reindex(columns=cols)
    out["quantity"] = out["quantity"].astype("object")
    out["depth"] = out["depth"].astype("Int64")
    for col in ("n_cases", "n_tensors", "n_failed", "n_diverging", "n_inheriting"):
        out[col] = out[col].astype("Int64")
    return out


# -- words -------------------------------------------------------------------------------------

def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


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
    total = Counter(r.quantity for r in result.records)
    seen = Counter(r.quantity for r in before)
    full = [q for q in seen if q != "loss" and seen[q] == total[q]]
    some = [r.name for r in before if r.quantity != "loss" and r.quantity not in full]
    clauses = []
    if full:
        loss = ", and so does the loss" if "loss" in seen else ""
        clauses.append(f"{_join(full)} agree{'s' if len(full) == 1 else ''} in all layers{loss}")
    if some:
        clauses.append(f"{_join(some)} agree{'s' if len(some) == 1 else ''}{' too' if full else ''}")
    why = f" ({first.problem})" if first.problem else ""
    return "; ".join(clauses + [f"{first.name} is the first to diverge{why}"])


def verdict(result) -> str:
    n, failed = len(result.results), result.n_failed
    prefix = f"PARTIAL ({result.stopped or 'interrupted'}): " if result.partial else ""
    if failed == 0:
        return f"{prefix}all {n} cases agree"
    return f"{prefix}{failed} of {n} cases disagree"


def repro(case, result) -> str:
    """The command that reproduces one case of ``result``, naming the implementation if there is one."""
    impl = result.settings.get("impl")
    return case.repro if not impl else \
        f"verify check '{case.spec}' --impl {impl} --seed {case.seed} --batch {case.batch}"


def summary_lines(result) -> list[str]:
    """The short terminal summary."""
    n_tensors = sum(len(c.records) for c in result.results)
    lines = [f"verify: {verdict(result)} ({n_tensors} tensors compared, {result.wall_time:.1f} s)"]
    if result.minimal:
        lines.append(f"{len(result.minimal)} distinct failure(s); minimal counterexamples:")
        for m in result.minimal:
            lines += [f"  {repro(m, result)}", f"      {divergence_sentence(m)}"]
    return lines


# -- writing -----------------------------------------------------------------------------------

# NumPy's default print options. pandas writes float64 values through NumPy's repr, which options
# set by anyone in the process (np.set_printoptions(legacy="1.13"): 12 significant digits) would cut.
NUMPY_PRINT_DEFAULTS = dict(edgeitems=3, threshold=1000, floatmode="maxprec", precision=8,
                            suppress=False, linewidth=75, nanstr="nan", infstr="inf", sign="-",
                            formatter=None, legacy=False)


def to_csv_text(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    with np.printoptions(**NUMPY_PRINT_DEFAULTS):
        df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def versions() -> dict[str, str]:
    import hypothesis
    import torch
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "pandas": pd.__version__,
            "hypothesis": hypothesis.__version__}


def report_json(result, disc: pd.DataFrame, title: str) -> dict:
    return {
        "title": title,
        "verdict": verdict(result),
        "partial": result.partial,
        "stopped": result.stopped,
        "seed": result.settings.get("seed"),
        "settings": result.settings,
        "counts": {"cases": len(result.results), "failed_cases": result.n_failed,
                   "tensors": int((disc["quantity"] != "").sum()),
                   "failed_tensors": int((~disc["passed"]).sum()),
                   "errors": sum(bool(c.error) for c in result.results),
                   "distinct_failures": len(result.minimal)},
        "minimal": [{"repro": repro(m, result), "first_divergence": divergence_sentence(m)}
                    for m in result.minimal],
        "wall_time_s": round(result.wall_time, 3),
        "versions": versions(),
        "files": list(FILES.values()),
    }


def write_reports(result, out_dir, *, title: str = "verify run") -> dict[str, Path]:
    """Write discrepancies.csv, cases.csv, summary.csv, report.html and report.json as the
    directory ``out_dir``, replacing a previous report there whole (verify.output.write_dir);
    returns their paths by kind (FILES' keys). Raises verify.output.OutError where ``out_dir``
    cannot take a report."""
    from .report_html import render_html

    def write(staging: Path) -> None:
        disc = discrepancy_frame(result.results)
        tensors = tensor_frame(result.results, disc)
        cases = case_frame(result.results)
        summary = summary_frame(tensors)
        files = {k: staging / name for k, name in FILES.items()}
        write_file(files["discrepancies"], to_csv_text(disc))
        write_file(files["cases"], to_csv_text(cases))
        write_file(files["summary"], to_csv_text(summary))
        write_file(files["html"], render_html(result, disc, tensors, cases, summary, title=title))
        write_file(files["json"], json.dumps(report_json(result, disc, title), indent=2) + "\n")

    out = write_dir(out_dir, FILES.values(), write)
    return {k: out / name for k, name in FILES.items()}


def failing_rows(disc: pd.DataFrame, limit: int = 200) -> pd.DataFrame:
    return disc[~disc["passed"]].head(limit)

