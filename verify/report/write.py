"""Writing a report: the five files of write_reports, CSV text that no print option changes,
report.json with the versions, and a sweep's result with the whole command's time."""
from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from verify.meta import STARTED
from verify.report import html
from verify.report.frames import (
    FILES,
    case_frame,
    counterexample,
    discrepancy_frame,
    expected_groups,
    seen_with,
    summary_frame,
    summary_lines,
    tensor_frame,
    verdict,
    versions,
)
from verify.report.output import write_dir, write_file
from verify.sweep.execute import INTERRUPTED
from verify.sweep.run import SweepResult


def finished(result: SweepResult) -> SweepResult:
    """``result`` with the whole command's time so far (since verify was imported)."""
    return dataclasses.replace(result, total_time=time.perf_counter() - STARTED)


def conclude(result: SweepResult, out_dir: Path | str, *, title: str = "verify run") -> int:
    """The end of a sweep command (verify run, verify check --impl): the reports written, the
    summary printed; the exit status, 0 all agree, 1 any discrepancy, 130 interrupted."""
    result = finished(result)
    paths = write_reports(result, out_dir, title=title)
    for line in summary_lines(result):
        print(line)
    print(f"report: {paths['html']}")
    if result.stopped == INTERRUPTED:
        return 130
    return 0 if result.passed else 1


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


def report_json(result, disc: pd.DataFrame, title: str) -> dict:
    seen = seen_with(result)
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
                   "imprecise_tensors": int((disc["status"] == "imprecise").sum()),
                   "errors": sum(bool(c.error) for c in result.results),
                   "distinct_failures": len(result.minimal),
                   "expected_failures": len(result.expected_failures)},
        "minimal": [counterexample(m, seen) for m in result.minimal],
        "expected_failures": expected_groups(result),
        "wall_time_s": round(result.wall_time, 3),
        "total_time_s": round(result.total_time, 3) if result.total_time else None,
        "versions": versions(),
        "files": list(FILES.values()),
    }


def write_reports(result, out_dir, *, title: str = "verify run") -> dict[str, Path]:
    """Write discrepancies.csv, cases.csv, summary.csv, report.html and report.json as the
    directory ``out_dir``, replacing a previous report there whole (verify.report.output.write_dir);
    returns their paths by kind (FILES' keys). Raises verify.report.output.OutError where ``out_dir``
    cannot take a report."""

    def write(staging: Path) -> None:
        disc = discrepancy_frame(result.results)
        tensors = tensor_frame(result.results, disc)
        cases = case_frame(result.results)
        summary = summary_frame(tensors)
        files = {k: staging / name for k, name in FILES.items()}
        write_file(files["discrepancies"], to_csv_text(disc))
        write_file(files["cases"], to_csv_text(cases))
        write_file(files["summary"], to_csv_text(summary))
        write_file(files["html"], html.render_html(result, disc, tensors, cases, summary, title=title))
        write_file(files["json"], json.dumps(report_json(result, disc, title), indent=2) + "\n")

    out = write_dir(out_dir, FILES.values(), write)
    return {k: out / name for k, name in FILES.items()}
