"""A sweep's report built as its results come, in bounded memory (docs/reports.md, "Large sweeps").

A Recorder takes each case's result once, in case order (``add``), and

* appends its rows of cases.csv, and of discrepancies.csv those that ``keep`` keeps, to the two
  files in its directory, CHUNK_ROWS rows at a time (a chunk is written exactly as the same rows
  within one frame would be: verify.report.frames' dtypes);
* updates the summaries online: per group of summary.csv, counts, the worst error, and a
  Distribution of the errors for the median (exact up to EXACT_VALUES values a group, then a
  log histogram: within HISTOGRAM_REL_ERR of the exact median);
* keeps what the page draws, bounded: a Distribution per quantity and dtype for the box plots,
  the first FAILING_POINTS failing tensors and cases, a reservoir sample of SCATTER_POINTS passing
  cases for the scatter by depth, and the first FAILING_ROWS_SHOWN failing rows.

Everything depends on the results and their order only, so the same seed writes the same files
whatever the number of worker processes.
"""
from __future__ import annotations

import io
import math
import random
from array import array
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from verify.harness.trace import CaseResult
from verify.report.frames import (
    CASE_COLUMNS,
    CASE_DTYPES,
    DISCREPANCY_COLUMNS,
    DISCREPANCY_DTYPES,
    FILES,
    SUMMARY_GROUPS,
    case_row,
    quantity_order,
    record_rows,
    rows_frame,
    tensor_keys,
)
from verify.report.output import signals_held

CHUNK_ROWS = 20_000          # rows gathered before a chunk is written
KEEP_ALL_UP_TO = 100_000     # --keep's default: every row up to this many cases, failing ones above
KEEP = ("all", "failing")
NEAR_FAILING = 0.5           # a passing row is near-failing from this margin (error / allowance) up
EXACT_VALUES = 50_000        # values a Distribution keeps exactly before it turns into a histogram
BINS_PER_DECADE = 200        # the histogram's resolution: a bin spans a factor 10**(1/200)
LOW_DECADE, HIGH_DECADE = -40, 40      # the histogram's range; values outside fall in its end bins
HISTOGRAM_REL_ERR = 10 ** (0.5 / BINS_PER_DECADE) - 1    # a bin's centre to its edges: about 0.58%
SCATTER_POINTS = 3000        # passing cases drawn in the scatter by depth (a reservoir sample)
FAILING_POINTS = 2000        # failing tensors, and failing cases, drawn at most
FAILING_ROWS_SHOWN = 200     # failing rows in report.html's table
SUMMARY_COLUMNS = ["by", "activation", "loss", "depth", "dtype", "quantity", "kind", "n_cases", "n_tensors",
                   "n_failed", "n_diverging", "n_inheriting", "n_imprecise", "worst_norm_rel_err",
                   "median_norm_rel_err"]
FLOOR = 1e-18            # where exact agreement (error 0) is drawn on log axes
CEIL = 1e30              # where errors above it, inf and (for failing points) NaN are drawn
COUNT_COLUMNS = ["n_cases", "n_tensors", "n_failed", "n_diverging", "n_inheriting", "n_imprecise"]

# NumPy's default print options. pandas writes float64 values through NumPy's repr, which options
# set by anyone in the process (np.set_printoptions(legacy="1.13"): 12 significant digits) would cut.
NUMPY_PRINT_DEFAULTS = dict(edgeitems=3, threshold=1000, floatmode="maxprec", precision=8,
                            suppress=False, linewidth=75, nanstr="nan", infstr="inf", sign="-",
                            formatter=None, legacy=False)


def to_csv_text(df: pd.DataFrame, header: bool = True) -> str:
    buf = io.StringIO()
    with np.printoptions(**NUMPY_PRINT_DEFAULTS):
        df.to_csv(buf, index=False, lineterminator="\n", header=header)
    return buf.getvalue()


def default_keep(examples: int) -> str:
    """--keep's default for a sweep of ``examples`` cases."""
    return "all" if examples <= KEEP_ALL_UP_TO else "failing"


def kept_row(row: dict) -> bool:
    """Whether --keep failing writes a discrepancy row: failing, imprecise, or near-failing."""
    margin = row["margin"]
    return not row["passed"] or row["status"] == "imprecise" or (margin == margin and margin >= NEAR_FAILING)


class Distribution:
    """The non-NaN values of one group, for its quantiles: kept exactly up to EXACT_VALUES, then
    counted in a log histogram of BINS_PER_DECADE bins a decade (zeros and infinities apart; the
    exact smallest and largest kept), whose quantiles lie within HISTOGRAM_REL_ERR of the exact
    ones (and never outside the smallest and largest value)."""

    __slots__ = ("exact", "pending", "bins", "zeros", "infs", "lo", "hi", "n")
    N_BINS = (HIGH_DECADE - LOW_DECADE) * BINS_PER_DECADE

    def __init__(self) -> None:
        self.exact: array | None = array("d")
        self.pending = array("d")
        self.bins: np.ndarray | None = None
        self.zeros = self.infs = self.n = 0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, v: float) -> None:
        """One value (NaN is left out)."""
        if v != v:
            return
        self.n += 1
        if self.exact is not None:
            self.exact.append(v)
            if len(self.exact) > EXACT_VALUES:
                self.pending, self.exact = self.exact, None
                self.bins = np.zeros(self.N_BINS, dtype=np.int64)
                self._fold()
            return
        self.pending.append(v)
        if len(self.pending) >= 4096:
            self._fold()

    def _fold(self) -> None:
        v = np.frombuffer(self.pending, dtype=np.float64)
        if len(v):
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
            zero, inf = v <= 0, np.isinf(v)
            self.zeros += int(zero.sum())
            self.infs += int(inf.sum())
            finite = v[~zero & ~inf]
            idx = np.floor((np.log10(finite) - LOW_DECADE) * BINS_PER_DECADE).astype(np.int64)
            assert self.bins is not None
            self.bins += np.bincount(np.clip(idx, 0, self.N_BINS - 1), minlength=self.N_BINS)
        self.pending = array("d")

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def median(self) -> float:
        if self.exact is not None:
            return float(np.median(np.frombuffer(self.exact, dtype=np.float64))) if self.n else math.nan
        return self.quantile(0.5)

    def quantile(self, q: float) -> float:
        """The q-quantile (exact: numpy's linear interpolation; histogram: the centre of the bin
        holding the value of rank q·(n-1), within the smallest and largest value)."""
        if not self.n:
            return math.nan
        if self.exact is not None:
            return float(np.quantile(np.frombuffer(self.exact, dtype=np.float64), q))
        self._fold()
        assert self.bins is not None
        rank = q * (self.n - 1)
        if rank < self.zeros:
            return 0.0
        finite = int(self.bins.sum())
        if rank >= self.zeros + finite:
            return math.inf
        i = int(np.searchsorted(np.cumsum(self.bins), rank - self.zeros, side="right"))
        centre = 10 ** (LOW_DECADE + (i + 0.5) / BINS_PER_DECADE)
        return min(max(centre, self.lo), self.hi)

    def minimum(self) -> float:
        if self.exact is not None:
            return min(self.exact) if self.n else math.nan
        self._fold()
        return self.lo

    def maximum(self) -> float:
        if self.exact is not None:
            return max(self.exact) if self.n else math.nan
        self._fold()
        return self.hi


class GroupStats:
    """One row of summary.csv, online: counts, the worst error, the errors' Distribution."""

    __slots__ = ("n_cases", "last_case", "n_tensors", "n_failed", "n_diverging", "n_inheriting",
                 "n_imprecise", "worst", "errors")

    def __init__(self) -> None:
        self.n_cases = self.n_tensors = self.n_failed = 0
        self.n_diverging = self.n_inheriting = self.n_imprecise = 0
        self.last_case = -1
        self.worst = math.nan
        self.errors = Distribution()

    def add(self, case_id: int, passed: bool, status: str, err: float) -> None:
        if case_id != self.last_case:
            self.n_cases += 1
            self.last_case = case_id
        self.n_tensors += 1
        self.n_failed += not passed
        self.n_diverging += status == "diverges"
        self.n_inheriting += status == "inherits"
        self.n_imprecise += status == "imprecise"
        if err == err and not err <= self.worst:      # NaN left out, as pandas' max does
            self.worst = err
        self.errors.add(err)

    def row(self) -> dict:
        return {"n_cases": self.n_cases, "n_tensors": self.n_tensors, "n_failed": self.n_failed,
                "n_diverging": self.n_diverging, "n_inheriting": self.n_inheriting,
                "n_imprecise": self.n_imprecise, "worst_norm_rel_err": self.worst,
                "median_norm_rel_err": self.errors.median()}


class _Spool:
    """One CSV file written in chunks: its header first, then CHUNK_ROWS rows at a time."""

    def __init__(self, path: Path, columns: list[str], dtypes: dict) -> None:
        self.path, self.columns, self.dtypes = path, columns, dtypes
        self.rows: list[dict] = []
        self.written = 0
        self.file: TextIO | None = open(path, "w", encoding="utf-8", newline="")
        self.file.write(to_csv_text(pd.DataFrame(columns=columns)))

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        if len(self.rows) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows and self.file is not None:
            self.file.write(to_csv_text(rows_frame(self.rows, self.columns, self.dtypes), header=False))
            self.written += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.close()
            self.file = None


class Recorder:
    """A report's files and summaries, built case by case (see the module's docstring).

    directory : where discrepancies.csv and cases.csv are written as the cases come.
    keep : 'all' (every discrepancy row) or 'failing' (failing, imprecise and near-failing ones).
    """

    def __init__(self, directory: Path, keep: str = "all") -> None:
        if keep not in KEEP:
            raise ValueError(f"keep {keep!r}: one of {', '.join(KEEP)}")
        self.directory, self.keep = Path(directory), keep
        self.disc = _Spool(self.directory / FILES["discrepancies"], DISCREPANCY_COLUMNS, DISCREPANCY_DTYPES)
        self.cases = _Spool(self.directory / FILES["cases"], CASE_COLUMNS, CASE_DTYPES)
        self.groups: dict[str, dict[tuple, GroupStats]] = {by: {} for by in SUMMARY_GROUPS}
        self.n_cases = self.n_records = self.n_tensors = self.n_rows = self.n_all_rows = 0
        self.n_failing_rows = self.n_diverging_rows = self.n_imprecise = self.n_errors = 0
        self.errors_unexpected = False
        self.failing_rows: list[dict] = []
        self.box: dict[tuple[str, str], Distribution] = {}     # (quantity, dtype) -> floored errors
        self.failing_points: list[tuple[str, float]] = []       # (quantity, norm_rel_err)
        self.depths: set[int] = set()
        self.passing_cases: list[tuple[int, float, str]] = []   # (depth, worst, dtype), a sample
        self.n_passing_cases = 0
        self.failing_cases: list[tuple[int, float]] = []        # (depth, worst)
        self._sample = random.Random(0)

    def add(self, case_id: int, c: CaseResult, expected: bool = False) -> None:
        """Case ``case_id``'s result; cases come in case order. SIGINT and SIGTERM wait until
        it is recorded whole (a partial report holds whole cases)."""
        rows = record_rows(case_id, c)
        case = case_row(case_id, c)
        with signals_held():
            self._add(case_id, c, expected, rows, case)

    def _add(self, case_id: int, c: CaseResult, expected: bool, rows: list[dict], case: dict) -> None:
        self.n_cases += 1
        self.n_records += len(c.records)
        self.n_errors += bool(c.error)
        self.errors_unexpected |= bool(c.error) and not expected
        for row in rows:
            self._tally(row, c.spec)
        written = rows if self.keep == "all" else [row for row in rows if kept_row(row)]
        self.n_rows += len(written)
        self.n_all_rows += len(rows)
        self.disc.add(written)
        self.cases.add([case])
        self._draw_case(case)

    def _tally(self, row: dict, spec) -> None:
        passed, status = row["passed"], row["status"]
        if not passed:
            self.n_failing_rows += 1
            self.n_diverging_rows += status == "diverges"
            if len(self.failing_rows) < FAILING_ROWS_SHOWN:
                self.failing_rows.append(row)
        self.n_imprecise += status == "imprecise"
        quantity = row["quantity"]
        if quantity == "":
            return
        self.n_tensors += 1
        keys = {**tensor_keys(spec, quantity, row["layer"]), "dtype": row["dtype"], "quantity": quantity}
        err = row["norm_rel_err"]
        for by, names in SUMMARY_GROUPS.items():
            key = tuple(keys[k] for k in names)
            stats = self.groups[by].get(key)
            if stats is None:
                stats = self.groups[by][key] = GroupStats()
            stats.add(row["case_id"], passed, status, err)
        box = self.box.get((quantity, row["dtype"]))
        if box is None:
            box = self.box[(quantity, row["dtype"])] = Distribution()
        box.add(min(max(err, FLOOR), CEIL) if err == err else err)
        if not passed and len(self.failing_points) < FAILING_POINTS:
            self.failing_points.append((quantity, err))

    def _draw_case(self, case: dict) -> None:
        point = (case["depth"], case["worst_norm_rel_err"])
        self.depths.add(case["depth"])
        if not case["passed"]:
            if len(self.failing_cases) < FAILING_POINTS:
                self.failing_cases.append(point)
            return
        k = self.n_passing_cases
        self.n_passing_cases += 1
        if k < SCATTER_POINTS:
            self.passing_cases.append((*point, case["dtype"]))
        else:
            j = self._sample.randrange(k + 1)
            if j < SCATTER_POINTS:
                self.passing_cases[j] = (*point, case["dtype"])

    def close(self) -> None:
        """Write what is left of the chunks and close the files (add may not be called after)."""
        self.disc.close()
        self.cases.close()

    # -- what the report shows ------------------------------------------------------------------

    def quantities(self) -> list[str]:
        return quantity_order(key[0] for key in self.groups["quantity"])

    def summary_frame(self) -> pd.DataFrame:
        """summary.csv: per group of SUMMARY_GROUPS, in sorted order of its keys (quantities in
        report order), the counts, the worst and the median norm_rel_err."""
        order = {q: i for i, q in enumerate(self.quantities())}
        rows = []
        for by, names in SUMMARY_GROUPS.items():
            groups = self.groups[by]
            sort = (lambda key: order[key[0]]) if names == ["quantity"] else None
            for key in sorted(groups, key=sort):
                rows.append({"by": by, **dict(zip(names, key)), **groups[key].row()})
        out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
        out["quantity"] = out["quantity"].astype("object")
        out["depth"] = out["depth"].astype("Int64")
        for col in COUNT_COLUMNS:
            out[col] = out[col].astype("Int64")
        for col in ("worst_norm_rel_err", "median_norm_rel_err"):
            out[col] = out[col].astype("float64")
        return out

    def failing_frame(self) -> pd.DataFrame:
        """The first FAILING_ROWS_SHOWN failing discrepancy rows."""
        return rows_frame(self.failing_rows, DISCREPANCY_COLUMNS, DISCREPANCY_DTYPES)

    def approximate(self) -> bool:
        """Whether any median of summary.csv came from a histogram."""
        return any(not s.errors.is_exact for groups in self.groups.values() for s in groups.values())



def record_all(result, directory: Path, keep: str = "all") -> Recorder:
    """A Recorder given every result a SweepResult holds in memory, closed."""
    recorder = Recorder(directory, keep)
    try:
        for i, (case_id, c) in enumerate(zip(result.case_ids, result.results)):
            recorder.add(case_id, c, result.is_expected(i))
    finally:
        recorder.close()
    return recorder
