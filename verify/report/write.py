"""Writing a report: the five files of write_reports, CSV text that no print option changes,
report.json with the versions, and a sweep's result with the whole command's time."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from verify.meta import STARTED
from verify.report import html
from verify.report.frames import (
    FILES,
    counterexample,
    expected_groups,
    seen_with,
    summary_lines,
    verdict,
    versions,
)
from verify.report.output import spool_dir, write_dir, write_file
from verify.report.stream import (  # noqa: F401 - NUMPY_PRINT_DEFAULTS, record_all, to_csv_text re-exported
    NUMPY_PRINT_DEFAULTS,
    Recorder,
    default_keep,
    record_all,
    to_csv_text,
)
from verify.sweep.execute import INTERRUPTED
from verify.sweep.run import SweepResult


def finished(result: SweepResult) -> SweepResult:
    """``result`` with the whole command's time so far (since verify was imported)."""
    return dataclasses.replace(result, total_time=time.perf_counter() - STARTED)


@contextlib.contextmanager
def recording(out_dir: Path | str, examples: int, keep: str | None, *, stream: bool = True
              ) -> Iterator[Recorder | None]:
    """The Recorder that writes a sweep command's rows as its cases come (``keep``: all or failing;
    None: verify.report.stream.default_keep of ``examples``), spooled beside ``out_dir`` and removed
    after; None where not ``stream`` (the referee judges after the sweep: the rows are written
    from memory then). Pass its ``add`` as the sweep's on_result, then it to conclude."""
    spool = spool_dir(out_dir, FILES.values()) if stream else None
    try:
        yield None if spool is None else Recorder(spool, keep or default_keep(examples))
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)


def conclude(result: SweepResult, out_dir: Path | str, *, title: str = "verify run",
             recorder: Recorder | None = None) -> int:
    """The end of a sweep command (verify run, verify check --impl): the reports written, the
    summary printed (``recorder``: as write_reports); the exit status, 0 all agree, 1 any
    discrepancy, 130 interrupted."""
    result = finished(result)
    paths, recorder = _write(result, out_dir, title, recorder)
    for line in summary_lines(result, recorder.n_records, recorder.n_imprecise):
        print(line)
    print(f"report: {paths['html']}")
    if result.stopped == INTERRUPTED:
        return 130
    return 0 if result.passed else 1


# -- writing -----------------------------------------------------------------------------------

def report_json(result, recorder: Recorder, title: str) -> dict:
    seen = seen_with(result)
    return {
        "title": title,
        "verdict": verdict(result),
        "partial": result.partial,
        "stopped": result.stopped,
        "seed": result.settings.get("seed"),
        "settings": result.settings,
        "counts": {"cases": result.n_cases, "failed_cases": result.n_failed,
                   "tensors": recorder.n_tensors,
                   "failed_tensors": recorder.n_failing_rows,
                   "imprecise_tensors": recorder.n_imprecise,
                   "errors": recorder.n_errors,
                   "distinct_failures": len(result.minimal),
                   "expected_failures": len(result.expected_failures)},
        "discrepancies": {"keep": recorder.keep, "rows": recorder.n_rows,
                          "rows_left_out": recorder.n_all_rows - recorder.n_rows,
                          "summary_medians": "approximate" if recorder.approximate() else "exact"},
        **({"scheduler": {"address": result.settings["scheduler"], "blocks_retried": list(result.blocks_retried),
                          "blocks_lost": list(result.blocks_lost)}} if "scheduler" in result.settings else {}),
        "minimal": [counterexample(m, seen) for m in result.minimal],
        "expected_failures": expected_groups(result),
        "wall_time_s": round(result.wall_time, 3),
        "total_time_s": round(result.total_time, 3) if result.total_time else None,
        "versions": versions(),
        "files": list(FILES.values()),
    }


def write_reports(result, out_dir, *, title: str = "verify run", recorder: Recorder | None = None
                  ) -> dict[str, Path]:
    """Write discrepancies.csv, cases.csv, summary.csv, report.html and report.json as the
    directory ``out_dir``, replacing a previous report there whole (verify.report.output.write_dir);
    returns their paths by kind (FILES' keys). ``recorder``: the Recorder the sweep's results
    went to as they came (verify.report.stream; its two CSV files are moved into the report);
    None: every result is in ``result`` and goes to one now. Raises
    verify.report.output.OutError where ``out_dir`` cannot take a report."""
    return _write(result, out_dir, title, recorder)[0]


def _write(result, out_dir, title: str, recorder: Recorder | None) -> tuple[dict[str, Path], Recorder]:
    made: list[Recorder] = []

    def write(staging: Path) -> None:
        files = {k: staging / name for k, name in FILES.items()}
        if recorder is None:
            made.append(record_all(result, staging))
        else:
            recorder.close()
            for kind in ("discrepancies", "cases"):
                os.replace(recorder.directory / FILES[kind], files[kind])
            made.append(recorder)
        rec = made[-1]
        write_file(files["summary"], to_csv_text(rec.summary_frame()))
        write_file(files["html"], html.render_html(result, rec, title=title))
        write_file(files["json"], json.dumps(report_json(result, rec, title), indent=2) + "\n")

    out = write_dir(out_dir, FILES.values(), write)
    return {k: out / name for k, name in FILES.items()}, made[-1]
