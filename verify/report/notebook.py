"""How results show in a notebook: the compact HTML summary (``_repr_html_``) of verify.check's
CaseResult and of a sweep's SweepResult: the verdict, the counts, the first diverging tensor and
the counterexample cards, as report.html draws them (its card template and its stylesheet's rules,
scoped to the summary so that they style nothing else in the notebook).

check_implementation's DataFrame shows the same sweep summary above its table (SummaryFrame).

Importing this module installs the two summaries (verify.harness.trace.HTML_SUMMARY,
verify.sweep.run.HTML_SUMMARY: the layers below cannot import this one); the verify package
imports it."""
from __future__ import annotations

import functools
import html
import re

import pandas as pd

from verify.harness import trace
from verify.harness.trace import CaseResult
from verify.report.frames import counterexample, plural, seen_with, verdict
from verify.sweep import run
from verify.sweep.run import SweepResult

SCOPE = "verify-nb"


@functools.lru_cache(maxsize=1)
def scoped_style() -> str:
    """report.html's class rules (cards, banner, counterexample cards), each selector prefixed
    with the summary's own class; its rules for body, headings and the page layout are left out."""
    from verify.report.html import STYLE
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", STYLE):
        parts = [s.strip() for s in selectors.split(",")]
        if all(p.startswith(".") for p in parts):
            rules.append(",".join(f".{SCOPE} {p}" for p in parts) + "{" + body + "}")
    return "\n".join(rules)


def _cards(counts: list[tuple[str, object, bool]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{html.escape(str(value))}</b>'
        f'<span>{html.escape(label)}</span></div>' for label, value, bad in counts) + "</div>"


def _page(css: str, headline: str, counts: list[tuple[str, object, bool]], body: str = "") -> str:
    return (f'<div class="{SCOPE}"><style>{scoped_style()}</style>'
            f'<div class="banner {css}">{html.escape(headline)}</div>{_cards(counts)}{body}</div>')


def case_html(result: CaseResult) -> str:
    """One case: agrees or not, its tensors by status, and for a failing case its card (the
    first diverging tensor, where to look, its worst element, the repro command)."""
    from verify.report.html import card
    statuses = [r.status for r in result.records]
    first = result.first_divergence
    if result.passed:
        headline = f"{result.spec}: every tensor agrees with torch"
    elif first is not None:
        headline = f"{result.spec}: {first.name} is the first tensor to diverge"
    else:
        headline = f"{result.spec}: fails ({result.error_sentence or 'see the card'})"
    counts = [("tensors compared", len(result.records), False),
              ("agree", statuses.count("agrees"), False),
              ("imprecise (textbook allowance)", statuses.count("imprecise"), False),
              ("inherit", statuses.count("inherits"), statuses.count("inherits") > 0),
              ("diverge", statuses.count("diverges"), statuses.count("diverges") > 0)]
    body = "" if result.passed else str(card(counterexample(result)))
    return _page("pass" if result.passed else "fail", headline, counts, body)


def sweep_html(result: SweepResult) -> str:
    """A sweep: the verdict of report.html, its counts, and one card per distinct failure."""
    from verify.report.html import card
    seen = seen_with(result)
    css = "partial" if result.partial else ("pass" if result.n_failed == 0 else "fail")
    n_tensors = sum(len(c.records) for c in result.results)
    counts = [("cases", result.n_cases, False), ("tensors compared", n_tensors, False),
              ("failing cases", result.n_failed, result.n_failed > 0),
              ("distinct failures", len(result.minimal), len(result.minimal) > 0)]
    body = "".join(str(card(counterexample(m, seen))) for m in result.minimal)
    if result.minimal:
        body = f"<p>{html.escape(plural(len(result.minimal), 'minimal counterexample'))}:</p>" + body
    return _page(css, f"verify: {verdict(result)}", counts, body)


class SummaryFrame(pd.DataFrame):
    """check_implementation's frame: a plain DataFrame (one row per compared tensor per case) that
    shows, in a notebook, the sweep's summary above its table. What pandas derives from it
    (a filter, a groupby, a copy) is a plain DataFrame: the summary belongs to this frame only."""

    _verify_summary: str = ""

    @property
    def _constructor(self) -> type[pd.DataFrame]:  # type: ignore[override]
        return pd.DataFrame

    def _repr_html_(self) -> str | None:
        table = super()._repr_html_()
        return self._verify_summary + (table or "")


def summary_frame(frame: pd.DataFrame, result: SweepResult) -> SummaryFrame:
    """``frame``'s rows, with ``result``'s notebook summary (sweep_html) shown above them."""
    out = SummaryFrame(frame)
    out.attrs.update(frame.attrs)
    object.__setattr__(out, "_verify_summary", sweep_html(result))
    return out


trace.HTML_SUMMARY = case_html
run.HTML_SUMMARY = sweep_html
