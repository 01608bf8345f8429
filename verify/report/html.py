"""report.html: one self-contained page (inline CSS, inline SVG plots, no network).

Everything that comes from specs, records or user code passes through HTML
escaping (jinja2 autoescape, Styler's escape="html").
"""
from __future__ import annotations

import io
import math
from importlib import resources

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from verify.byo.target import DEFAULT_IMPL, NOT_IMPORTABLE
from verify.core.compare import TOLERANCES
from verify.meta import __version__
from verify.report.frames import (
    counterexample,
    expected_groups,
    seen_with,
    timing_text,
    verdict,
    versions,
)
from verify.report.stream import CEIL, FAILING_POINTS, FAILING_ROWS_SHOWN, FLOOR, SCATTER_POINTS, Recorder

DTYPE_COLORS = {"float32": "#e07b39", "float64": "#3a78b5"}
FAIL_CSS = "background-color:#c62828;color:#fff;font-weight:600;"


# -- plots -------------------------------------------------------------------------------------

def _svg(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.hashsalt": "verify", "svg.fonttype": "none", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


def _log_axis(ax) -> None:
    """Log y axis with plain '1e-8' labels (matplotlib's mathtext labels are slow to render)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(_decade_label))
    ax.yaxis.set_minor_locator(NullLocator())
    # Every value drawn lies in [FLOOR, CEIL] (see _floored), so the limits are finite decades;
    # an axis with nothing on it gets them too, instead of log-scaling no data at all.
    low, high = ax.get_ylim() if ax.has_data() else (FLOOR, 1.0)
    ax.set_ylim(max(low, FLOOR / 10), min(high, CEIL * 10))


def _decade_label(v: float, _pos=None) -> str:
    """'1e-8' for a tick at 10**-8; nothing for a tick at 0, inf or NaN."""
    return f"1e{round(math.log10(v))}" if 0 < v < math.inf else ""


def _floored(values, nan: float = math.nan) -> np.ndarray:
    """Errors as drawn on a log axis: 0 (exact agreement) and anything below at FLOOR, anything
    above CEIL and inf at CEIL, NaN at ``nan`` (NaN: left out)."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isnan(v), nan, np.clip(v, FLOOR, CEIL))


def plot_error_distributions(recorder: Recorder, tolerances: dict) -> str:
    """A box per quantity and dtype of log norm_rel_err (quartiles, whiskers to the smallest and
    largest error: from the recorder's Distributions, exact or within a histogram bin); failing
    tensors as red × (the first FAILING_POINTS)."""
    fig, ax = _figure(9.5, 3.6)
    quantities = recorder.quantities()
    dtypes = sorted({dt for _, dt in recorder.box})
    width = 0.8 / max(len(dtypes), 1)
    for j, dt in enumerate(dtypes):
        pos, stats = [], []
        for i, q in enumerate(quantities):
            d = recorder.box.get((q, dt))
            if d is not None and d.n:
                pos.append(i + (j - (len(dtypes) - 1) / 2) * width)
                stats.append({"med": d.median(), "q1": d.quantile(0.25), "q3": d.quantile(0.75),
                              "whislo": d.minimum(), "whishi": d.maximum(), "fliers": []})
        if stats:
            bp = ax.bxp(stats, positions=pos, widths=width * 0.85, patch_artist=True, showfliers=False)
            for box in bp["boxes"]:
                box.set(facecolor=DTYPE_COLORS.get(dt, "#999"), alpha=.55, edgecolor="#333")
            ax.plot([], [], "s", color=DTYPE_COLORS.get(dt, "#999"), alpha=.55, label=dt)
        if dt in tolerances:
            ax.axhline(tolerances[dt][0], color=DTYPE_COLORS.get(dt, "#999"), ls="--", lw=.8)
    if recorder.failing_points:
        x = [quantities.index(q) for q, _ in recorder.failing_points]
        ax.plot(x, _floored([e for _, e in recorder.failing_points], nan=CEIL), "x", color="#c01818", ms=6,
                label="failing" if recorder.n_failing_rows <= FAILING_POINTS else f"failing (first {FAILING_POINTS})")
    _log_axis(ax)
    ax.set_xticks(range(len(quantities)), quantities, rotation=15)
    ax.set_ylabel("norm_rel_err  (‖h−t‖/‖t‖)")
    ax.set_title(f"error per tensor (boxes: quartiles, whiskers: smallest and largest); dashed: the floor of the "
                 f"allowance per dtype; exact agreement drawn at {FLOOR:g}, errors above {CEIL:g} (inf, and NaN "
                 f"when failing) at {CEIL:g}", loc="left", fontsize=9, wrap=True)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return _svg(fig)


def plot_error_by_depth(recorder: Recorder) -> str:
    """Each case's worst norm_rel_err against depth (jittered), by dtype, for a sample of at most
    SCATTER_POINTS passing cases; failing cases red (the first FAILING_POINTS)."""
    fig, ax = _figure(6.0, 3.4)
    rng = np.random.default_rng(0)
    sample = pd.DataFrame(recorder.passing_cases, columns=["depth", "worst", "dtype"])
    sampled = recorder.n_passing_cases > SCATTER_POINTS
    for dt, g in sample.groupby("dtype"):
        ax.scatter(g["depth"] + rng.uniform(-.18, .18, len(g)), _floored(g["worst"]),
                   s=9, alpha=.6, color=DTYPE_COLORS.get(dt, "#999"), label=dt, linewidths=0)
    if recorder.failing_cases:
        bad = np.array(recorder.failing_cases, dtype=float)
        ax.scatter(bad[:, 0], _floored(bad[:, 1], nan=1.0), marker="x", s=30, color="#c01818", label="failing")
    _log_axis(ax)
    ax.set_xticks(sorted(recorder.depths))
    ax.set_xlabel("depth L")
    ax.set_ylabel("worst norm_rel_err of the case")
    if sampled:
        ax.set_title(f"a sample of {SCATTER_POINTS:,} of the {recorder.n_passing_cases:,} passing cases",
                     loc="left", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


# -- tables ------------------------------------------------------------------------------------

def _sci(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "0" if v == 0 else f"{v:.1e}"


def _styled(frame: pd.DataFrame, failing: pd.DataFrame, uid: str, numeric: list[str]) -> str:
    """Styler HTML: errors as a log-scale heat map, failing cells marked red."""
    log = np.log10(frame[numeric].astype(float).clip(lower=FLOOR, upper=CEIL))
    styler = frame.style.set_uuid(uid).format(_sci, subset=numeric, escape="html") \
        .format_index(escape="html").format_index(escape="html", axis=1)
    if log.notna().any().any():
        styler = styler.background_gradient(cmap="Blues", subset=numeric, axis=None,
                                            gmap=log.fillna(-18), vmin=-19, vmax=6)
    mask = failing.reindex_like(frame).fillna(False).astype(bool)
    styler = styler.apply(lambda _: np.where(mask, FAIL_CSS, ""), axis=None)
    return styler.set_table_attributes('class="grid"').to_html()


def breakable(name: str) -> str:
    """A column name that may wrap after its underscores (a zero-width space after each), so
    that a table of 12 losses fits the page instead of scrolling."""
    return str(name).replace("_", "_\u200b")


STACK_ROW = "(layer stacks: see by layer kind)"


def pivot_tables(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(title, html, full width?) for activation × loss (worst, median), depth, dtype, quantity
    and layer kind: the rows of summary.csv (verify.report.frames.summary_frame) laid out as tables."""
    if summary.empty or not summary["n_tensors"].sum():
        return []
    out = []
    by_al = summary[summary["by"] == "activation x loss"].copy()
    # a layer stack's tensors have no activation of their own: they group by layer kind below
    by_al["activation"] = by_al["activation"].replace("", STACK_ROW).fillna(STACK_ROW)
    failing = by_al.pivot(index="activation", columns="loss", values="n_failed") > 0
    failing.columns = [breakable(c) for c in failing.columns]
    for stat in ("worst", "median"):
        values = by_al.pivot(index="activation", columns="loss", values=f"{stat}_norm_rel_err") \
            .dropna(how="all").dropna(axis=1, how="all")
        values.columns = [breakable(c) for c in values.columns]
        out.append((f"{stat} norm_rel_err: activation of the tensor's layer × loss",
                    _styled(values, failing, f"al{stat}", list(values.columns)), True))
    for key, column in (("depth", "depth"), ("dtype", "dtype"), ("quantity", "quantity"), ("layer kind", "kind")):
        rows = summary[summary["by"] == key].set_index(column)
        if rows.empty:
            continue
        frame = pd.DataFrame({"tensors": rows["n_tensors"], "diverging": rows["n_diverging"],
                              "inheriting": rows["n_inheriting"],
                              "worst": rows["worst_norm_rel_err"], "median": rows["median_norm_rel_err"]})
        marked = pd.DataFrame(False, index=frame.index, columns=frame.columns)
        marked.loc[frame["diverging"] > 0, ["diverging", "worst"]] = True
        marked.loc[frame["inheriting"] > 0, ["inheriting", "worst"]] = True
        out.append((f"by {key}", _styled(frame, marked, f"by{column}", ["worst", "median"]), False))
    return out


FAILING_COLUMNS = ["case_id", "test", "impl", "spec", "seed", "batch", "quantity", "layer", "status", "shape",
                   "max_abs_err", "norm_rel_err", "max_ulp", "worst_index", "hand_value",
                   "torch_value", "n_mismatched", "n_elements", "note"]
FAILING_NUMBERS = ["case_id", "seed", "batch", "layer", "max_abs_err", "norm_rel_err", "max_ulp",
                   "hand_value", "torch_value", "n_mismatched", "n_elements"]


FAILING_TEXT = ["test", "impl", "spec", "note"]


def failing_table(rows: pd.DataFrame) -> str:
    """The failing rows shown (Recorder.failing_frame); the test and impl columns only where rows
    differ in them (otherwise the page's header and cards say it)."""
    columns = [c for c in FAILING_COLUMNS if c not in ("test", "impl") or rows[c].nunique() > 1]
    rows = rows[columns]
    floats = ["max_abs_err", "norm_rel_err", "max_ulp", "hand_value", "torch_value"]
    numbers = [c for c in FAILING_NUMBERS if c in columns]
    classes = pd.DataFrame("", index=rows.index, columns=columns)
    classes[numbers] = "num"
    classes[[c for c in FAILING_TEXT if c in columns]] = "txt"
    return rows.style.hide(axis="index").set_uuid("failing").set_td_classes(classes) \
        .format(lambda v: f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else
                ("–" if isinstance(v, float) else v), subset=floats, escape="html") \
        .format(escape="html", na_rep="", subset=[c for c in columns if c not in floats]) \
        .format_index(escape="html", axis=1) \
        .set_table_attributes('class="grid rows"').to_html()


# -- the page ----------------------------------------------------------------------------------

# The stylesheet of every page the project writes (report.html, mutants.html).
STYLE = (resources.files("verify.report") / "templates" / "style.css").read_text(encoding="utf-8")

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("verify.report", "templates"), autoescape=True)

CARD = _ENV.get_template("card.html.j2")

TEMPLATE = _ENV.get_template("report.html.j2")


def card(cx: dict, expected: bool = False) -> Markup:
    """One counterexample card (verify.report.frames.counterexample), HTML-escaped."""
    return Markup(CARD.render(cx=cx, expected=expected, default_impl=DEFAULT_IMPL,
                              not_importable=NOT_IMPORTABLE))


def header_text(settings: dict) -> str:
    """The settings under the title, 'seed 0 · examples 300 · …', without empty values."""
    parts = []
    for k, v in settings.items():
        if v is None or v == "" or k == "check_fn" or (k == "impl" and v == DEFAULT_IMPL):
            continue
        parts.append(f"{k.replace('_', ' ')} {', '.join(map(str, v)) if isinstance(v, list) else v}")
    return " · ".join(parts)


def render_html(result, recorder: Recorder, *, title: str = "verify run") -> str:
    """The page, from the result and the Recorder its results went to (verify.report.stream)."""
    n_fail_rows = recorder.n_failing_rows
    n_diverging = recorder.n_diverging_rows
    css = "partial" if result.partial else ("pass" if result.n_failed == 0 else "fail")
    expected = expected_groups(result)
    cards = [("cases", result.n_cases, False),
             ("tensors compared", recorder.n_tensors, False),
             ("failing cases", result.n_failed, result.n_failed > 0),
             ("failing tensors", f"{n_diverging} diverge, {n_fail_rows - n_diverging} inherit",
              n_fail_rows > 0 and result.n_failed > 0),
             ("distinct failures", len(result.minimal), len(result.minimal) > 0),
             ("imprecise tensors (passed by the textbook allowance)", recorder.n_imprecise, False),
             ("implementation errors", recorder.n_errors, recorder.errors_unexpected)]
    if expected:
        cards.insert(3, ("expected failures (tests passed)", len(result.expected_failures), False))
    if "scheduler" in result.settings:
        retried, lost = len(result.blocks_retried), len(result.blocks_lost)
        cards.append(("blocks retried / lost on the cluster", f"{retried} / {lost}", bool(lost)))
    seen = seen_with(result)
    minimal = [counterexample(m, seen) for m in result.minimal]
    toc = ([("counterexamples", "Counterexamples")] if minimal else []) + \
          ([("expected", "Expected failures")] if expected else []) + \
          [("distributions", "Error distributions"), ("tables", "Summary tables"),
           ("failing", "Failing rows")]
    return TEMPLATE.render(
        title=title, verdict=verdict(result), css=css, header=header_text(result.settings),
        style=STYLE, cards=cards, minimal=minimal, expected=expected, card=card, toc=toc,
        not_importable=NOT_IMPORTABLE,
        plot_dist=plot_error_distributions(recorder, TOLERANCES) if recorder.n_tensors else "",
        plot_depth=plot_error_by_depth(recorder) if recorder.n_cases else "",
        pivots=pivot_tables(recorder.summary_frame()),
        failing=failing_table(recorder.failing_frame()) if n_fail_rows else "",
        n_failing_rows=n_fail_rows, shown_rows=min(n_fail_rows, FAILING_ROWS_SHOWN), version=__version__,
        all_expected=result.n_failed == 0,
        versions_text=", ".join(f"{k} {v}" for k, v in versions().items()),
        timing=timing_text(result))
