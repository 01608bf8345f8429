"""The explanation as data: frozen steps, sections and one page, plus number formatting.

``verify explain`` first builds an ``Explanation`` (sections of ``Step``s) and
only then renders it, as text, Markdown or HTML (verify.explain.render), so
the three outputs can never say different things.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WHOLE_MATRIX_MAX = 24          # print matrices with at most this many elements whole
AGREE = 1e-12                  # differences at or below this print as "≤ 1e-12" when stable

# What "the tutorial" means, said once where a page first names it.
TUTORIAL_IS = ("the backpropagation tutorial whose notation this project follows: column vectors, "
               "layers numbered 1…L with a⁽⁰⁾ = x, z⁽ˡ⁾ = W⁽ˡ⁾a⁽ˡ⁻¹⁾ + b⁽ˡ⁾, δ⁽ˡ⁾ = ∂J/∂z⁽ˡ⁾")
TUTORIAL = f"the tutorial ({TUTORIAL_IS})"


@dataclass(frozen=True, eq=False)
class Step:
    """One term of the backward pass: its formula, the autograd nodes that compute it, lines
    listed as they are, labelled values (hand, torch, ...) and labelled differences."""
    formula: str
    nodes: tuple[str, ...] = ()
    values: tuple[tuple[str, np.ndarray], ...] = ()
    diffs: tuple[tuple[str, float], ...] = ()
    note: str = ""
    lines: tuple[str, ...] = ()        # listed as they are (max pooling's windows), after the nodes


@dataclass(frozen=True, eq=False)
class Section:
    heading: str
    intro: str = ""
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, eq=False)
class Explanation:
    title: str
    intro: tuple[str, ...] = ()
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def all_steps(self):
        return [s for sec in self.sections for s in sec.steps]

    def _repr_html_(self) -> str:
        """A notebook's view of verify.explain.page.explain(...): the HTML page, inline."""
        from verify.explain.render import render_html_fragment  # render builds on this module
        return render_html_fragment(self)


def max_diff(a, b) -> float:
    """max |a − b| over all elements (0 for empty arrays; nan-aware: nan only if shapes differ)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compared(hand, torch_value, other: str = "hand") -> tuple[tuple[str, float], ...]:
    return ((f"max |{other} − torch|", max_diff(hand, torch_value)),)


def fmt_number(v: float) -> str:
    v = float(v)
    if v == 0:
        return "0"                       # also turns −0 into 0
    return f"{v:.6g}"


def fmt_diff(d: float, stable: bool = False) -> str:
    """A difference; ``stable`` (for committed docs) rounds tiny ones to '≤ 1e-12' so the text
    does not depend on the last bit a BLAS build produces."""
    if d != d:
        return "shapes differ"
    if stable and d <= AGREE:
        return f"≤ {AGREE:g}"
    return "0" if d == 0 else f"{d:.3g}"


def fmt_array(a: np.ndarray) -> list[str]:
    """Lines showing ``a``: whole when small, else shape and range."""
    a = np.asarray(a)
    if a.ndim == 0 or a.size == 1:
        return [fmt_number(a.reshape(-1)[0]) if a.size else "[]"]
    if a.size > WHOLE_MATRIX_MAX:
        flat = a.astype(np.float64)
        return [f"shape {'×'.join(map(str, a.shape))}, min {fmt_number(flat.min())}, "
                f"max {fmt_number(flat.max())}, mean {fmt_number(flat.mean())}"]
    rows = a.reshape(1, -1) if a.ndim == 1 else a.reshape(-1, a.shape[-1])   # (m, C, H, W): H·m·C rows of W
    cells = [[fmt_number(v) for v in row] for row in rows]
    width = max(len(c) for row in cells for c in row)
    lines = ["[" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells]
    return lines
