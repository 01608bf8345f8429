"""Three renderings of one Explanation: plain text, Markdown, a self-contained HTML page.

The same walk over sections and steps each time; only the markup differs.
HTML escapes every piece of text, carries its CSS inline and loads nothing.
"""
from __future__ import annotations

import html
import textwrap

from verify.explain.steps import Explanation, Step, fmt_array, fmt_diff


def _value_lines(step: Step, stable: bool) -> list[str]:
    lines = []
    width = max((len(label) for label, _ in step.values), default=0)
    for label, value in step.values:
        rows = fmt_array(value)
        lines.append(f"{label.ljust(width)}  {rows[0]}")
        lines += [f"{' ' * width}  {r}" for r in rows[1:]]
    for label, d in step.diffs:
        text = fmt_diff(d, stable)
        lines.append(f"{label} {text}" if text.startswith("≤") else f"{label} = {text}")
    return lines


def render_text(ex: Explanation, stable: bool = False) -> str:
    out = [ex.title, "=" * len(ex.title), ""]
    for p in ex.intro:
        out += textwrap.wrap(p, 88) + [""]
    for sec in ex.sections:
        out += [sec.heading, "-" * len(sec.heading)]
        if sec.intro:
            out += textwrap.wrap(sec.intro, 88)
        out.append("")
        for step in sec.steps:
            out.append(f"  {step.formula}")
            out += [f"      autograd: {n}" for n in step.nodes]
            out += [f"      {line}" for line in step.lines]
            out += [f"      {line}" for line in _value_lines(step, stable)]
            if step.note:
                out += textwrap.wrap(step.note, 84, initial_indent="      ", subsequent_indent="      ")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_markdown(ex: Explanation, stable: bool = False, level: int = 1) -> str:
    h = "#" * level
    out = [f"{h} {ex.title}", ""]
    for p in ex.intro:
        out += [p, ""]
    for sec in ex.sections:
        out += [f"{h}# {sec.heading}", ""]
        if sec.intro:
            out += [sec.intro, ""]
        for step in sec.steps:
            out += [f"**{step.formula}**", ""]
            out += [f"- autograd: `{n}`" for n in step.nodes]
            out += [f"- {line}" for line in step.lines]
            if step.nodes or step.lines:
                out.append("")
            lines = _value_lines(step, stable)
            if lines:
                out += ["```", *lines, "```", ""]
            if step.note:
                out += [step.note, ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ccc;margin-top:2rem}
.step{margin:1rem 0 1.5rem}.formula{font-weight:600;font-size:1.05rem}
.nodes{margin:.3rem 0;padding-left:1.2rem}.nodes code{background:#eef;padding:0 .2rem}
.lines{margin:.3rem 0;padding-left:1.2rem;font-size:.9rem}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}.note{color:#333}
nav.toc{background:#f6f6f6;padding:.5rem 1rem;border-radius:6px}nav.toc ol{margin:.3rem 0}"""


def _html_body(ex: Explanation, stable: bool) -> list[str]:
    """The page's content: title, intro, contents and each section's steps, HTML-escaped."""
    e = html.escape
    out = [f"<h1>{e(ex.title)}</h1>"]
    out += [f"<p>{e(p)}</p>" for p in ex.intro]
    out.append('<nav class="toc"><b>Contents</b><ol>' + "".join(
        f'<li><a href="#s{i}">{e(sec.heading)}</a></li>' for i, sec in enumerate(ex.sections, 1))
        + "</ol></nav>")
    for i, sec in enumerate(ex.sections, 1):
        out.append(f'<h2 id="s{i}">{e(sec.heading)}</h2>')
        if sec.intro:
            out.append(f"<p>{e(sec.intro)}</p>")
        for step in sec.steps:
            out += ['<div class="step">', f'<div class="formula">{e(step.formula)}</div>']
            if step.nodes:
                out.append('<ul class="nodes">' + "".join(f"<li>autograd: <code>{e(n)}</code></li>"
                                                          for n in step.nodes) + "</ul>")
            if step.lines:
                out.append('<ul class="lines">' + "".join(f"<li><code>{e(line)}</code></li>" for line in step.lines)
                           + "</ul>")
            lines = _value_lines(step, stable)
            if lines:
                out.append("<pre>" + e("\n".join(lines)) + "</pre>")
            if step.note:
                out.append(f'<p class="note">{e(step.note)}</p>')
            out.append("</div>")
    return out


def render_html(ex: Explanation, stable: bool = False) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(ex.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           *_html_body(ex, stable), "</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_html_fragment(ex: Explanation, stable: bool = False) -> str:
    """The page as one element for a notebook cell (Explanation._repr_html_): its stylesheet's
    rules scoped to the element, none for the notebook's own body."""
    scoped = CSS.replace("body{", ".verify-explain{", 1)
    scoped = "\n".join(line if line.startswith(".verify-explain") else
                       "}".join(f".verify-explain {rule}" if rule.strip() else rule for rule in line.split("}"))
                       for line in scoped.splitlines())
    return "\n".join([f'<div class="verify-explain"><style>{scoped}</style>', *_html_body(ex, stable), "</div>"])


RENDERERS = {"text": render_text, "md": render_markdown, "html": render_html}
