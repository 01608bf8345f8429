"""The reports of `verify layers`: functions.csv (one row per pair), discrepancies.csv (every
failing record of each failing pair's first and smallest case), report.html and report.json,
written as one directory atomically (verify.report.output.write_dir), and the terminal lines."""
from __future__ import annotations

import json
import math
import shlex
from html import escape as html_escape
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from verify.explain.layers import explain_layer, shown_spec
from verify.layers.families import FAMILIES
from verify.layers.run import LayersResult, Outcome, PairResult
from verify.meta import __version__
from verify.report.frames import plural, versions
from verify.report.output import write_dir, write_file
from verify.report.write import to_csv_text

DEFAULT_OUT = Path("reports") / "layers"
GRADESCOPE = "results.json"
FILES = {"functions": "functions.csv", "discrepancies": "discrepancies.csv", "html": "report.html",
         "json": "report.json"}
EXPLAIN_DIR = "explain"          # explain/FAMILY.html: verify explain's page of each failing pair's smallest case
FUNCTION_COLUMNS = ["function", "passed", "status", "cases", "imprecise cases", "first diverging output",
                    "worst element", "note", "smallest failing case", "repro", "reference"]
DISCREPANCY_COLUMNS = ["function", "case", "output", "status", "problem", "worst_index", "hand_value",
                       "reference_value", "allowed", "margin", "n_mismatched", "n_elements", "note", "case_description"]


def _g(v: Any) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def worst_text(record) -> str:
    """'dw[1, 0]: 0.53 where 0.12 is expected (allowed ±2.2e-16)', or the problem."""
    if record.problem:
        return f"{record.name}: {record.problem}"
    index = f"[{', '.join(map(str, record.worst_index))}]" if record.worst_index else ""
    expected = record.reference_value
    if expected is None or math.isnan(expected):          # not kept where the user's value is not finite
        expected = record.torch_value
    return (f"{record.name}{index}: {_g(record.hand_value)} where {_g(expected)} is expected "
            f"(allowed ±{record.allowed:.1e}; {record.n_mismatched} of {record.n_elements} elements off)"
            + (f": {record.note}" if record.note else ""))


def repro(result: LayersResult, pair: PairResult) -> str:
    s = result.settings
    flags = f" --examples {s['examples']}" if s["examples"] else ""
    flags += f" --dropout-p {s['dropout_p']}" if pair.family in ("dropout", "model") and s.get("dropout_p") else ""
    if s.get("model"):
        init = f" --init {shlex.quote(s['init'])}" if s.get("init") else ""
        return f"verify layers --model {shlex.quote(s['model'])}{init} --seed {s['seed']}{flags}"
    flags += f" --reference {pair.family}=fd" if pair.reference == "fd" else ""
    return f"verify layers {result.target} --only {pair.family} --seed {s['seed']}{flags}"


def inputs_text(outcome: Outcome, pair: PairResult | None = None) -> str:
    """The smallest case's arguments as Python literals and the pair's calls, ready to paste
    where the module's functions are in scope."""
    lines = ["import numpy as np"]
    with np.printoptions(floatmode="unique", threshold=100000, linewidth=100):
        for k, v in outcome.case.arrays.items():
            lines.append(f"{k} = np.{np.asarray(v)!r}")
    if pair is not None:
        lines += (pair.checker or FAMILIES[pair.family]).call_lines(pair.functions, outcome.case)
    elif outcome.case.hyper:
        lines.append(f"# {', '.join(f'{k}={v!r}' for k, v in outcome.case.hyper.items())}")
    return "\n".join(lines)


def explain_path(pair: PairResult) -> str | None:
    """The explain page of a failing pair, relative to the report directory (None: no page, the
    pair agrees, its family has no matching layer: dropout, the losses; or it is a whole model,
    whose pages would be its layers': the card's repro line and `verify explain` on its stack)."""
    if not pair.present or pair.passed or pair.first is None or pair.family not in FAMILIES:
        return None
    smallest = pair.minimal or pair.first
    return f"{EXPLAIN_DIR}/{page_name(pair)}.html" if FAMILIES[pair.family].explained(smallest.case) else None


def page_name(pair: PairResult) -> str:
    """The family's name (batchnorm), or for its second backward that function's (batchnorm_backward_alt)."""
    backwards = FAMILIES[pair.family].backwards
    return pair.family if not backwards or pair.functions[-1] == backwards[0] else pair.functions[-1]


def explain_page(result: LayersResult, pair: PairResult) -> str:
    """verify explain's page of the layer of ``pair`` opened on its smallest failing case's own numbers."""
    smallest = pair.minimal or pair.first
    family = FAMILIES[pair.family]
    e = family.explained(smallest.case)
    intro = (f"The smallest failing case of {pair.label} in verify layers {result.target}: "
             f"{smallest.case.describe()}. This page walks through what torch (the reference) and handimpl "
             f"compute on exactly these numbers, step by step; your functions' values are in the report's card.",
             f"Here the layer is {shown_spec(e.layer)}" + (f"; {family.note}" if family.note else "") + ".",
             f"Repro: {repro(result, pair)}")
    return str(explain_layer(e.layer, e.x, e.params, e.dout, training=e.training, format="html",
                             title=f"Why {pair.label} disagrees: backprop through {shown_spec(e.layer)}", intro=intro))


def _page_or_line(result: LayersResult, pair: PairResult) -> str:
    """explain_page, or where it cannot be built, a page that says why in one line (the report is
    written either way)."""
    try:
        return explain_page(result, pair)
    except Exception as e:   # noqa: BLE001  (a page that cannot be built must not cost the report)
        return (f"<!DOCTYPE html><html lang=\"en\"><meta charset=\"utf-8\"><title>{html_escape(pair.label)}</title>"
                f"<p>The explain page of {html_escape(pair.label)} could not be built: "
                f"{html_escape(type(e).__name__)}: {html_escape(str(e))}</p></html>\n")


def explain_hint(result: LayersResult, pair: PairResult) -> str:
    """Where the explain page is, and the command for the layer on a drawn case."""
    smallest = pair.minimal or pair.first
    e = FAMILIES[pair.family].explained(smallest.case)
    return (f"explain: {explain_path(pair)} in the report directory (written by the repro line) "
            f"walks through torch's backward on this case; verify explain '{e.stack_spec()}' does it on a drawn case")


def function_row(result: LayersResult, pair: PairResult) -> dict:
    note = "; ".join(n for n in (pair.note, pair.precision and f"imprecise in {plural(pair.imprecise, 'case')}, "
                                                                f"e.g. {pair.precision}") if n)
    row = {"function": pair.label, "passed": pair.passed if pair.present else "", "status": pair.status,
           "cases": pair.cases, "imprecise cases": pair.imprecise if pair.present else "",
           "first diverging output": "", "worst element": "", "note": note,
           "smallest failing case": "", "repro": "", "reference": pair.reference}
    if pair.first is not None:
        record = pair.first.failing[0]
        smallest = pair.minimal or pair.first
        row.update({"first diverging output": record.name, "worst element": worst_text(smallest.failing[0]),
                    "smallest failing case": smallest.case.describe(), "repro": repro(result, pair)})
    return row


def function_frame(result: LayersResult) -> pd.DataFrame:
    return pd.DataFrame([function_row(result, p) for p in result.pairs], columns=FUNCTION_COLUMNS)


def discrepancy_frame(result: LayersResult) -> pd.DataFrame:
    rows = []
    for pair in result.present:
        for which, outcome in (("first", pair.first), ("smallest", pair.minimal)):
            if outcome is None:
                continue
            for r in outcome.failing:
                rows.append({"function": pair.label, "case": which, "output": r.name, "status": r.status,
                             "problem": r.problem, "worst_index": " ".join(map(str, r.worst_index)),
                             "hand_value": r.hand_value, "reference_value": r.reference_value, "allowed": r.allowed,
                             "margin": r.margin, "n_mismatched": r.n_mismatched, "n_elements": r.n_elements,
                             "note": r.note, "case_description": outcome.case.describe()})
    return pd.DataFrame(rows, columns=DISCREPANCY_COLUMNS)


def verdict_text(result: LayersResult) -> str:
    present = result.present
    if result.settings.get("model"):
        (pair,) = result.pairs
        return (f"{pair.label} {'agrees' if pair.passed else 'disagrees'} with torch "
                f"({plural(pair.cases, 'case')})")
    failing = [p for p in present if not p.passed]
    cases = sum(p.cases for p in present)
    absent = [p for p in result.pairs if not p.present]
    text = (f"{len(present) - len(failing)} of {plural(len(present), 'function pair')} agree with torch "
            f"({plural(cases, 'case')})")
    if failing:
        text += f"; disagrees: {', '.join(p.label for p in failing)}"
    if absent:
        text += f"; absent: {', '.join(p.label for p in absent)}"
    by_fd = [p.label for p in present if p.reference == "fd"]
    if by_fd:
        text += f"; judged by finite differences alone (no torch counterpart): {', '.join(by_fd)}"
    return text


def terminal_row(pair: PairResult) -> str:
    if not pair.present:
        return f"  {pair.label:<54} absent ({', '.join(pair.missing)} not found)"
    if pair.passed and pair.imprecise:
        return (f"  {pair.label:<54} imprecise  {plural(pair.cases, 'case')} "
                f"({pair.imprecise} of them: {pair.precision})")
    if pair.passed:
        by = " (judged by finite differences alone)" if pair.reference == "fd" else ""
        return f"  {pair.label:<54} agrees     {plural(pair.cases, 'case')}{by}"
    smallest = pair.minimal or pair.first
    # the pair's note (the convention assumed, torch's choice at a kink or a tie) often says why
    note = f"\n  {'':<54}            note: {pair.note}" if pair.note else ""
    return (f"  {pair.label:<54} DISAGREES  at case {pair.cases}: {worst_text(smallest.failing[0])}\n"
            f"  {'':<54}            smallest case: {smallest.case.describe()}{note}")


def report_json(result: LayersResult) -> dict:
    return {"title": "verify layers", "target": result.target, "verdict": verdict_text(result),
            "passed": result.passed, "settings": result.settings, "version": __version__,
            "functions": [{**function_row(result, p), "family": p.family, "present": p.present}
                          for p in result.pairs],
            "versions": versions(), "files": list(FILES.values())}


def notebook_html(result: LayersResult) -> str:
    """LayersResult._repr_html_: the verdict and one row per pair."""
    esc = html_escape
    rows = []
    for pair in result.pairs:
        if not pair.present:
            cells = (pair.label, "absent", "", "")
        elif pair.passed:
            cells = (pair.label, pair.status, plural(pair.cases, "case") + (f"; {pair.precision}" if pair.imprecise
                                                                               else ""), "")
        else:
            smallest = pair.minimal or pair.first
            cells = (pair.label, "disagrees", worst_text(smallest.failing[0]), smallest.case.describe())
        colour = {"agrees": "#1f7a45", "imprecise": "#1f7a45", "disagrees": "#b3261e"}.get(cells[1], "#5b6670")
        rows.append(f"<tr><td><code>{esc(cells[0])}</code></td><td style='color:{colour}'><b>{cells[1]}</b></td>"
                    f"<td>{esc(cells[2])}</td><td>{esc(cells[3])}</td></tr>")
    head = "<tr><th>function</th><th>result</th><th>worst element</th><th>smallest failing case</th></tr>"
    return (f"<div><p><b>verify layers {esc(result.target)}</b>: {esc(verdict_text(result))}</p>"
            f"<table>{head}{''.join(rows)}</table></div>")


def gradescope_json(result: LayersResult) -> dict:
    """The autograder's results.json: one test per pair found (with --only, per pair asked for,
    an absent one scoring 0), each worth 1 point, all or nothing; its output holds the worst
    element, the smallest failing case and the repro line."""
    tests = []
    for pair in result.pairs:
        if not pair.present and not result.settings.get("only"):
            continue
        if not pair.present:
            output = f"not found: {', '.join(pair.missing)}"
        elif pair.passed:
            output = f"agrees with torch on {plural(pair.cases, 'case')}" + (
                f" ({pair.imprecise} of them imprecise: {pair.precision})" if pair.imprecise else "")
        else:
            smallest = pair.minimal or pair.first
            output = (f"disagrees with torch: {worst_text(smallest.failing[0])}\n"
                      f"smallest failing case: {smallest.case.describe()}\n{inputs_text(smallest, pair)}\n"
                      f"note: {pair.note}\nrepro: {repro(result, pair)}")
            if explain_path(pair):
                output += "\n" + explain_hint(result, pair)
        tests.append({"name": pair.label, "score": 1.0 if pair.passed else 0.0, "max_score": 1.0,
                      "output": output, "status": "passed" if pair.passed else "failed"})
    return {"score": sum(t["score"] for t in tests), "tests": tests,
            "output": verdict_text(result), "visibility": "visible"}


_ENV = None


def render_html(result: LayersResult) -> str:
    global _ENV
    from verify.report.html import STYLE, breakable, header_text  # matplotlib: only when a page is written
    if _ENV is None:
        _ENV = jinja2.Environment(loader=jinja2.PackageLoader("verify.layers", "templates"), autoescape=True)
        _ENV.filters["breakable"] = breakable
    rows, failures = [], []
    for pair in result.pairs:
        row = function_row(result, pair)
        row = {k.replace(" ", "_"): v for k, v in row.items()}
        row["result"] = pair.status
        row["css"] = "" if not pair.present else ("killed" if pair.passed else "survived")
        rows.append(row)
        if pair.present and not pair.passed:
            smallest = pair.minimal or pair.first
            failures.append({
                "family": pair.family, "function": pair.label, "first_case": pair.first.case.describe(),
                "minimal_case": smallest.case.describe(), "repro": repro(result, pair),
                "inputs": inputs_text(smallest, pair), "explain": explain_path(pair),
                "records": [{"output": r.name, "problem": r.problem, "worst_index": str(tuple(r.worst_index)),
                             "hand_value": _g(r.hand_value), "reference_value": _g(r.reference_value),
                             "allowed": _g(r.allowed), "n_mismatched": r.n_mismatched, "n_elements": r.n_elements}
                            for r in smallest.failing]})
    present = result.present
    cards = [("pairs found", len(present), False),
             ("disagree", sum(not p.passed for p in present), any(not p.passed for p in present)),
             ("cases", sum(p.cases for p in present), False),
             ("imprecise (textbook allowance)", sum(bool(p.imprecise) for p in present), False),
             ("absent", len(result.pairs) - len(present), False)]
    model = bool(result.settings.get("model"))
    if model:
        cards = [cards[2]]
    return _ENV.get_template("layers.html.j2").render(
        style=STYLE, target=result.target, header=header_text(result.settings), summary=verdict_text(result),
        css="pass" if result.passed else "fail", cards=cards, rows=rows, failures=failures, model=model)


def write_layer_reports(result: LayersResult, out: str | Path, gradescope: bool = False) -> dict[str, Path]:
    """Write the four files (and with ``gradescope``, results.json) as the directory ``out``,
    replacing a previous report whole."""
    files = {**FILES, **({"gradescope": GRADESCOPE} if gradescope else {})}
    pages = {page_name(pair): _page_or_line(result, pair) for pair in result.pairs if explain_path(pair)}

    def write(staging: Path) -> None:
        if pages:
            (staging / EXPLAIN_DIR).mkdir()
            for name, page in pages.items():
                write_file(staging / EXPLAIN_DIR / f"{name}.html", page)
        if gradescope:
            write_file(staging / GRADESCOPE, json.dumps(gradescope_json(result), indent=2) + "\n")
        write_file(staging / FILES["functions"], to_csv_text(function_frame(result)))
        write_file(staging / FILES["discrepancies"], to_csv_text(discrepancy_frame(result)))
        write_file(staging / FILES["html"], render_html(result))
        write_file(staging / FILES["json"], json.dumps(report_json(result), indent=2, default=str) + "\n")

    path = write_dir(out, [*files.values(), EXPLAIN_DIR], write)
    paths = {k: path / name for k, name in files.items()}
    paths.update({f"explain:{name}": path / EXPLAIN_DIR / f"{name}.html" for name in pages})
    return paths
