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
    failing_rows,
    quantity_order,
    seen_with,
    timing_text,
    verdict,
    versions,
)

FLOOR = 1e-18            # where exact agreement (error 0) is drawn on log axes
CEIL = 1e30              # where errors above it, inf and (for failing points) NaN are drawn
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


def plot_error_distributions(tensors: pd.DataFrame, tolerances: dict) -> str:
    """Box plots of log norm_rel_err per quantity, one box per dtype; failing tensors as red ×."""
    fig, ax = _figure(9.5, 3.6)
    quantities = quantity_order(tensors["quantity"])
    dtypes = sorted(set(tensors["dtype"]))
    width = 0.8 / max(len(dtypes), 1)
    for j, dt in enumerate(dtypes):
        pos, data = [], []
        for i, q in enumerate(quantities):
            v = _floored(tensors.loc[(tensors["quantity"] == q) & (tensors["dtype"] == dt), "norm_rel_err"])
            v = v[~np.isnan(v)]
            if len(v):
                pos.append(i + (j - (len(dtypes) - 1) / 2) * width)
                data.append(v)
        if data:
            bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                            showfliers=True, flierprops={"marker": ".", "markersize": 2, "alpha": .4})
            for box in bp["boxes"]:
                box.set(facecolor=DTYPE_COLORS.get(dt, "#999"), alpha=.55, edgecolor="#333")
            ax.plot([], [], "s", color=DTYPE_COLORS.get(dt, "#999"), alpha=.55, label=dt)
        if dt in tolerances:
            ax.axhline(tolerances[dt][0], color=DTYPE_COLORS.get(dt, "#999"), ls="--", lw=.8)
    bad = tensors[~tensors["passed"]]
    if len(bad):
        x = [quantities.index(q) for q in bad["quantity"]]
        ax.plot(x, _floored(bad["norm_rel_err"], nan=CEIL), "x", color="#c01818", ms=6, label="failing")
    _log_axis(ax)
    ax.set_xticks(range(len(quantities)), quantities, rotation=15)
    ax.set_ylabel("norm_rel_err  (‖h−t‖/‖t‖)")
    ax.set_title(f"error per tensor; dashed: the floor of the allowance per dtype; exact agreement drawn at {FLOOR:g}, "
                 f"errors above {CEIL:g} (inf, and NaN when failing) at {CEIL:g}",
                 loc="left", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return _svg(fig)


def plot_error_by_depth(cases: pd.DataFrame) -> str:
    """Each case's worst norm_rel_err against depth (jittered), by dtype; failing cases red."""
    fig, ax = _figure(6.0, 3.4)
    rng = np.random.default_rng(0)
    for dt, g in cases.groupby("dtype"):
        ok = g[g["passed"]]
        ax.scatter(ok["depth"] + rng.uniform(-.18, .18, len(ok)), _floored(ok["worst_norm_rel_err"]),
                   s=9, alpha=.6, color=DTYPE_COLORS.get(dt, "#999"), label=dt, linewidths=0)
    bad = cases[~cases["passed"]]
    if len(bad):
        ax.scatter(bad["depth"], _floored(bad["worst_norm_rel_err"], nan=1.0), marker="x",
                   s=30, color="#c01818", label="failing")
    _log_axis(ax)
    ax.set_xticks(sorted(set(cases["depth"])))
    ax.set_xlabel("depth L")
    ax.set_ylabel("worst norm_rel_err of the case")
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


def pivot_tables(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(title, html, full width?) for activation × loss (worst, median), depth, dtype and
    quantity: the rows of summary.csv (verify.report.frames.summary_frame) laid out as tables."""
    if summary.empty or not summary["n_tensors"].sum():
        return []
    out = []
    by_al = summary[summary["by"] == "activation x loss"]
    failing = by_al.pivot(index="activation", columns="loss", values="n_failed") > 0
    failing.columns = [breakable(c) for c in failing.columns]
    for stat in ("worst", "median"):
        values = by_al.pivot(index="activation", columns="loss", values=f"{stat}_norm_rel_err") \
            .dropna(how="all").dropna(axis=1, how="all")
        values.columns = [breakable(c) for c in values.columns]
        out.append((f"{stat} norm_rel_err: activation of the tensor's layer × loss",
                    _styled(values, failing, f"al{stat}", list(values.columns)), True))
    for key in ("depth", "dtype", "quantity"):
        rows = summary[summary["by"] == key].set_index(key)
        frame = pd.DataFrame({"tensors": rows["n_tensors"], "diverging": rows["n_diverging"],
                              "inheriting": rows["n_inheriting"],
                              "worst": rows["worst_norm_rel_err"], "median": rows["median_norm_rel_err"]})
        marked = pd.DataFrame(False, index=frame.index, columns=frame.columns)
        marked.loc[frame["diverging"] > 0, ["diverging", "worst"]] = True
        marked.loc[frame["inheriting"] > 0, ["inheriting", "worst"]] = True
        out.append((f"by {key}", _styled(frame, marked, f"by{key}", ["worst", "median"]), False))
    return out


FAILING_COLUMNS = ["case_id", "test", "impl", "spec", "seed", "batch", "quantity", "layer", "status", "shape",
                   "max_abs_err", "norm_rel_err", "max_ulp", "worst_index", "hand_value",
                   "torch_value", "n_mismatched", "n_elements", "note"]
FAILING_NUMBERS = ["case_id", "seed", "batch", "layer", "max_abs_err", "norm_rel_err", "max_ulp",
                   "hand_value", "torch_value", "n_mismatched", "n_elements"]


FAILING_TEXT = ["test", "impl", "spec", "note"]


def failing_table(disc: pd.DataFrame, limit: int = 200) -> str:
    """The first ``limit`` failing rows; the test and impl columns only where rows differ in
    them (otherwise the page's header and cards say it)."""
    rows = failing_rows(disc, limit)
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


def render_html(result, disc: pd.DataFrame, tensors: pd.DataFrame, cases: pd.DataFrame,
                summary: pd.DataFrame, *, title: str = "verify run") -> str:
    """The page, from write_reports's frames (verify.report.frames)."""
    n_fail_rows = int((~disc["passed"]).sum())
    n_diverging = int((disc["status"] == "diverges").sum())
    css = "partial" if result.partial else ("pass" if result.n_failed == 0 else "fail")
    expected = expected_groups(result)
    cards = [("cases", len(result.results), False),
             ("tensors compared", len(tensors), False),
             ("failing cases", result.n_failed, result.n_failed > 0),
             ("failing tensors", f"{n_diverging} diverge, {n_fail_rows - n_diverging} inherit",
              n_fail_rows > 0 and result.n_failed > 0),
             ("distinct failures", len(result.minimal), len(result.minimal) > 0),
             ("imprecise tensors (passed by the textbook allowance)",
              int((disc["status"] == "imprecise").sum()), False),
             ("implementation errors", sum(bool(c.error) for c in result.results),
              any(c.error for i, c in enumerate(result.results) if not result.is_expected(i)))]
    if expected:
        cards.insert(3, ("expected failures (tests passed)", len(result.expected_failures), False))
    seen = seen_with(result)
    minimal = [counterexample(m, seen) for m in result.minimal]
    toc = ([("counterexamples", "Counterexamples")] if minimal else []) + \
          ([("expected", "Expected failures")] if expected else []) + \
          [("distributions", "Error distributions"), ("tables", "Summary tables"),
           ("failing", "Failing rows")]
    has_data = not tensors.empty
    return TEMPLATE.render(
        title=title, verdict=verdict(result), css=css, header=header_text(result.settings),
        style=STYLE, cards=cards, minimal=minimal, expected=expected, card=card, toc=toc,
        not_importable=NOT_IMPORTABLE,
        plot_dist=plot_error_distributions(tensors, TOLERANCES) if has_data else "",
        plot_depth=plot_error_by_depth(cases) if len(cases) else "",
        pivots=pivot_tables(summary), failing=failing_table(disc) if n_fail_rows else "",
        n_failing_rows=n_fail_rows, shown_rows=min(n_fail_rows, 200), version=__version__,
        all_expected=result.n_failed == 0,
        versions_text=", ".join(f"{k} {v}" for k, v in versions().items()),
        timing=timing_text(result))
