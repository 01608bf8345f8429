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

import csv
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


def kept(record) -> bool:
    """Whether --keep failing writes the discrepancy row of a record (a Comparison): failing,
    imprecise, or near-failing."""
    margin = record.margin
    return not record.passed or record.status == "imprecise" or (margin == margin and margin >= NEAR_FAILING)


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
        self.add_many(np.array([v], dtype=np.float64))

    def add_many(self, values: np.ndarray) -> None:
        """Values, NaN left out."""
        values = values[~np.isnan(values)]
        self.n += len(values)
        if self.exact is not None:
            self.exact.frombytes(values.astype(np.float64).tobytes())
            if len(self.exact) > EXACT_VALUES:
                self.pending, self.exact = self.exact, None
                self.bins = np.zeros(self.N_BINS, dtype=np.int64)
                self._fold()
            return
        self.pending.frombytes(values.astype(np.float64).tobytes())
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

    def add_many(self, case_ids: np.ndarray, codes: np.ndarray, failed: np.ndarray, errors: np.ndarray) -> None:
        """Tensors of this group: their case ids (in order), STATUS_CODES, whether each failed,
        and errors."""
        if case_ids[0] != self.last_case:
            self.n_cases += 1
        self.n_cases += int(np.count_nonzero(case_ids[1:] != case_ids[:-1]))
        self.last_case = int(case_ids[-1])
        self.n_tensors += len(codes)
        counted = np.bincount(codes, minlength=4)
        self.n_imprecise += int(counted[1])
        self.n_inheriting += int(counted[2])
        self.n_diverging += int(counted[3])
        self.n_failed += int(np.count_nonzero(failed))
        finite = errors[~np.isnan(errors)]
        if len(finite):
            worst = float(finite.max())
            if not worst <= self.worst:           # NaN left out, as pandas' max does
                self.worst = worst
        self.errors.add_many(finite)

    def row(self) -> dict:
        return {"n_cases": self.n_cases, "n_tensors": self.n_tensors, "n_failed": self.n_failed,
                "n_diverging": self.n_diverging, "n_inheriting": self.n_inheriting,
                "n_imprecise": self.n_imprecise, "worst_norm_rel_err": self.worst,
                "median_norm_rel_err": self.errors.median()}


def _text(v) -> str:
    return "" if v is None else str(v)


def _float(v) -> str:
    """A float as pandas writes a float64 column: its shortest repr, NaN (and None) empty."""
    if v is None:
        return ""
    v = float(v)
    return "" if v != v else repr(v)


def _int_or_empty(v) -> str:
    return "" if v is None or v != v else str(int(v))


_FORMATS = {"float64": _float, "Int64": _int_or_empty}


def formatters(columns: list[str], dtypes: dict) -> list:
    """Per column, how a value is written: as pandas writes a column of that dtype."""
    return [_FORMATS.get(dtypes.get(c), _text) if dtypes.get(c) is not bool else str for c in columns]


class _Spool:
    """One CSV file written as the rows come (csv's writer, as pandas uses it; each value
    formatted as pandas writes its column's dtype: tests/test_stream.py checks the bytes)."""

    def __init__(self, path: Path, columns: list[str], dtypes: dict) -> None:
        self.path, self.columns = path, columns
        self.formats = formatters(columns, dtypes)
        self.file: TextIO | None = open(path, "w", encoding="utf-8", newline="", buffering=1 << 20)
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(columns)

    def add(self, rows: list[dict]) -> None:
        formats, columns = self.formats, self.columns
        self.writer.writerows([[f(row[c]) for f, c in zip(formats, columns)] for row in rows])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


STATUS_CODES = {"agrees": 0, "imprecise": 1, "inherits": 2, "diverges": 3}
# The groupings of the summaries, as positions in a tensor's key (activation, loss, depth, dtype,
# quantity, kind); "box": the plot's (quantity, dtype).
KEY_NAMES = ["activation", "loss", "depth", "dtype", "quantity", "kind"]
GROUPINGS = {**{by: [KEY_NAMES.index(k) for k in names] for by, names in SUMMARY_GROUPS.items()},
             "box": [KEY_NAMES.index("quantity"), KEY_NAMES.index("dtype")]}
TALLY_ROWS = 20_000          # tensors gathered before they are tallied together


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
        self.groups: dict[str, dict[tuple, GroupStats]] = {by: {} for by in GROUPINGS}
        self.n_cases = self.n_records = self.n_tensors = self.n_rows = self.n_all_rows = 0
        self.n_failing_rows = self.n_diverging_rows = self.n_imprecise = self.n_errors = 0
        self.errors_unexpected = False
        self.failing_rows: list[dict] = []
        self.failing_points: list[tuple[str, float]] = []       # (quantity, norm_rel_err)
        self.depths: set[int] = set()
        self.passing_cases: list[tuple[int, float, str]] = []   # (depth, worst, dtype), a sample
        self.n_passing_cases = 0
        self.failing_cases: list[tuple[int, float]] = []        # (depth, worst)
        self._sample = random.Random(0)
        self._keys: dict[tuple, int] = {}                      # a tensor's key -> its number
        self._pending: tuple[list, ...] = ([], [], [], [], [])   # key number, case, status, failed, error

    def add(self, case_id: int, c: CaseResult, expected: bool = False) -> None:
        """Case ``case_id``'s result; cases come in case order. SIGINT and SIGTERM wait until
        it is recorded whole (a partial report holds whole cases)."""
        rows = record_rows(case_id, c, None if self.keep == "all" else kept)
        case = case_row(case_id, c)
        with signals_held():
            self.n_cases += 1
            self.n_records += len(c.records)
            self.n_errors += bool(c.error)
            self.errors_unexpected |= bool(c.error) and not expected
            self._tally(case_id, c, rows)
            self.n_rows += len(rows)
            self.n_all_rows += len(c.records) or 1
            self.disc.add(rows)
            self.cases.add([case])
            self._draw_case(case)

    def _tally(self, case_id: int, c: CaseResult, rows: list[dict]) -> None:
        """``rows``: the case's rows written (every failing one among them, in order)."""
        keys, pending = self._keys, self._pending
        failing_rows = iter([row for row in rows if not row["passed"]])
        for r in c.records:
            if not r.passed:
                self.n_failing_rows += 1
                self.n_diverging_rows += r.status == "diverges"
                row = next(failing_rows)
                if len(self.failing_rows) < FAILING_ROWS_SHOWN:
                    self.failing_rows.append(row)
                if r.quantity and len(self.failing_points) < FAILING_POINTS:
                    self.failing_points.append((r.quantity, r.norm_rel_err))
            self.n_imprecise += r.status == "imprecise"
            if r.quantity == "":
                continue
            label, loss, depth, kind = tensor_keys(c.spec, r.quantity, r.layer)
            key = (label, loss, depth, r.dtype, r.quantity, kind)
            number = keys.get(key)
            if number is None:
                number = keys[key] = len(keys)
            pending[0].append(number)
            pending[1].append(case_id)
            pending[2].append(STATUS_CODES[r.status])
            pending[3].append(not r.passed)
            pending[4].append(r.norm_rel_err)
        if not c.records:                 # the error row
            self.n_failing_rows += 1
            self.n_diverging_rows += 1
            if len(self.failing_rows) < FAILING_ROWS_SHOWN:
                self.failing_rows.append(rows[0])
        if len(pending[0]) >= TALLY_ROWS:
            self._fold()

    def _fold(self) -> None:
        """Tally the pending tensors into every grouping at once (numpy over the keys' numbers)."""
        numbers, case_ids, codes, failed, errors = (np.asarray(v) for v in self._pending)
        self._pending = ([], [], [], [], [])
        if not len(numbers):
            return
        self.n_tensors += len(numbers)
        errors = errors.astype(np.float64)
        keys = list(self._keys)
        for by, positions in GROUPINGS.items():
            group_keys = [tuple(key[p] for p in positions) for key in keys]
            ids = {k: i for i, k in enumerate(dict.fromkeys(group_keys))}
            of_number = np.array([ids[k] for k in group_keys], dtype=np.int64)
            gid = of_number[numbers]
            order = np.argsort(gid, kind="stable")
            gid_sorted = gid[order]
            starts = np.flatnonzero(np.r_[True, gid_sorted[1:] != gid_sorted[:-1]])
            present = gid_sorted[starts]
            ends = np.r_[starts[1:], len(gid_sorted)]
            names = list(ids)
            values = errors if by != "box" else np.where(np.isnan(errors), errors, np.clip(errors, FLOOR, CEIL))
            for g, a, b in zip(present.tolist(), starts.tolist(), ends.tolist()):
                idx = order[a:b]
                key = names[g]
                stats = self.groups[by].get(key)
                if stats is None:
                    stats = self.groups[by][key] = GroupStats()
                stats.add_many(case_ids[idx], codes[idx], failed[idx], values[idx])

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
        """Tally what is pending and close the files (add may not be called after)."""
        self._fold()
        self.disc.close()
        self.cases.close()

    # -- what the report shows ------------------------------------------------------------------

    @property
    def box(self) -> dict[tuple, Distribution]:
        """(quantity, dtype) -> the Distribution of its errors as drawn (within FLOOR and CEIL)."""
        self._fold()
        return {key: stats.errors for key, stats in self.groups["box"].items()}

    def quantities(self) -> list[str]:
        self._fold()
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
        self._fold()
        return any(not s.errors.is_exact for by in SUMMARY_GROUPS for s in self.groups[by].values())


def record_all(result, directory: Path, keep: str = "all") -> Recorder:
    """A Recorder given every result a SweepResult holds in memory, closed."""
    recorder = Recorder(directory, keep)
    try:
        for i, (case_id, c) in enumerate(zip(result.case_ids, result.results)):
            recorder.add(case_id, c, result.is_expected(i))
    finally:
        recorder.close()
    return recorder
