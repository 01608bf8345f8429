"""The reports of `verify train`: trajectory.csv (one row per step, check and tensor) and
report.html (both loss curves, the error per step on a log scale with the first diverging step
marked, the failing rows), written as one directory atomically (verify.report.output.write_dir)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from verify.meta import __version__
from verify.report.frames import plural
from verify.report.html import STYLE, _figure, _floored, _log_axis, _svg
from verify.report.output import write_dir, write_file
from verify.report.write import to_csv_text
from verify.train.run import ONE_STEP, STEP, TRAJECTORY, TrainResult

DEFAULT_OUT = Path("reports") / "train"
FILES = {"csv": "trajectory.csv", "html": "report.html"}
COLUMNS = ["step", "check", "kind", "tensor", "shape", "status", "error", "relative_error", "allowance",
           "margin", "worst_index", "hand", "torch", "problem"]
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("verify.train", "templates"), autoescape=True)


def _status(result: TrainResult, check: str, record: Any) -> str:
    """The one-step verdict, or 'drift' for a trajectory row; 'diverges' for a row that fails the
    run (TrainResult.failing: a problem fails either)."""
    if result.failing(check, record):
        return "diverges"
    return record.status if check == ONE_STEP else "drift"


def trajectory_frame(result: TrainResult) -> pd.DataFrame:
    rows = [{
        "step": step, "check": check, "kind": kind, "tensor": r.name,
        "shape": "x".join(map(str, r.shape)) or "()", "status": _status(result, check, r),
        "error": r.max_abs_err, "relative_error": r.norm_rel_err,
        "allowance": r.allowed if check == ONE_STEP else math.nan,
        "margin": r.margin if check == ONE_STEP else math.nan,
        "worst_index": str(r.worst_index), "hand": r.hand_value, "torch": r.torch_value, "problem": r.problem,
    } for step, check, kind, r in result.records]
    return pd.DataFrame(rows, columns=COLUMNS)


def per_step(frame: pd.DataFrame, check: str, column: str) -> pd.Series:
    """The largest ``column`` over the tensors of each step of ``check`` (loss left out)."""
    rows = frame[(frame["check"] == check) & (frame["kind"] != "loss")]
    return rows.groupby("step")[column].max()


def _plot_losses(result: TrainResult) -> str:
    fig, ax = _figure(6.0, 2.6)
    steps = np.arange(1, len(result.torch_loss) + 1)
    ax.plot(steps, result.torch_loss, color="#3a78b5", lw=2.2, label="torch")
    ax.plot(steps[:len(result.hand_loss)], result.hand_loss, color="#e07b39", lw=1.2, ls="--", label="yours")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    _mark(ax, result)
    ax.legend(frameon=False)
    return _svg(fig)


def _plot_errors(result: TrainResult, frame: pd.DataFrame) -> str:
    fig, ax = _figure(6.0, 2.8)
    margin = per_step(frame, ONE_STEP, "margin")
    if result.drift:
        ax.plot(np.arange(1, len(result.drift) + 1), _floored(result.drift), color="#7b1fa2", lw=1.5,
                label="parameters along the trajectory (drift)")
    if result.one_step:
        ax.plot(np.arange(1, len(result.one_step) + 1), _floored(result.one_step), color="#2e7d32", lw=1.5,
                label="parameters, one step from torch's state")
    if len(margin):
        ax.plot(margin.index, _floored(margin.values), color="#c62828", lw=1, ls=":",
                label="one step, largest error / allowance (fails above 1)")
        ax.axhline(1.0, color="#c62828", lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("error")
    _log_axis(ax)
    _mark(ax, result)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=7)
    return _svg(fig)


def _mark(ax, result: TrainResult) -> None:
    first = result.first_diverging_step
    if first is not None:
        ax.axvline(first, color="#c62828", lw=1.2)
        ax.annotate(f"first diverging step: {first}", (first, 1), xycoords=("data", "axes fraction"),
                    xytext=(4, -10), textcoords="offset points", color="#c62828", fontsize=8)


def summary_text(result: TrainResult) -> str:
    if result.interrupted is not None:
        stopped = f"interrupted during step {result.interrupted} of {result.steps}"
        if result.first_diverging_step is not None or result.error:
            return f"PARTIAL ({stopped}): {_verdict_text(result)}"
        judged = result.judged_steps
        verdict = (f"every one-step comparison of the {plural(judged, 'step')} judged agrees with torch within its "
                   f"a priori allowance" if judged else "no step was judged")
        return f"PARTIAL: {stopped}; {verdict}"
    return _verdict_text(result)


def _verdict_text(result: TrainResult) -> str:
    if result.error:
        return f"FAIL: the step could not be run: {result.error}"
    first = result.first_diverging_step
    if first is None:
        judged = result.judged_steps
        if judged == result.steps:
            return (f"PASS: every one-step comparison of {plural(result.steps, 'step')} agrees with torch "
                    f"within its a priori allowance")
        return (f"PASS: {judged} of {plural(result.steps, 'step')} judged, and every one-step comparison agrees "
                f"with torch within its a priori allowance; the note says why the others were not")
    broken = next((r for s, _, _, r in result.failures if s == first and r.name == STEP), None)
    if broken is not None:
        return f"FAIL: step {first}: the optimizer step failed: {broken.problem}"
    at_first = [(check, r) for s, check, _, r in result.failures if s == first]
    names = sorted({r.name for _, r in at_first})
    text = f"FAIL: first diverging step {first}: {', '.join(names[:6])}{' …' if len(names) > 6 else ''}"
    problem = next(((check, r.problem) for check, r in at_first if r.problem), None)
    if problem is not None:
        where = "one step from torch's state" if problem[0] == ONE_STEP else "along your own trajectory"
        text += f" ({where}: {problem[1]})"
    return text


def drift_text(result: TrainResult) -> str:
    rate = result.drift_rate
    if not result.drift:
        return "no trajectory"
    last = result.drift[-1]
    broken = next((t for t, e in enumerate(result.drift, 1) if not math.isfinite(e)), None)
    if broken is not None:
        return (f"your trajectory's parameters are not finite (nan or ±inf where torch's are not) from step "
                f"{broken} of {len(result.drift)}")
    if last == 0:
        return f"the parameters agree bit for bit after {plural(len(result.drift), 'step')}"
    if rate is None:
        return f"the parameters' trajectory error {last:.3g} after {plural(len(result.drift), 'step')}"
    return (f"the parameters' trajectory error {last:.3g} after {plural(len(result.drift), 'step')}, growing "
            f"{rate:+.3f} decades per step (×{10 ** rate:.3g} per step, fitted)")


def render_html(result: TrainResult, frame: pd.DataFrame) -> str:
    failing = frame[frame["status"] == "diverges"].head(50)
    worst = frame[frame["check"] == TRAJECTORY]
    last = worst[worst["step"] == worst["step"].max()] if len(worst) else worst
    cards = [("steps", result.steps, False), ("optimizer", str(result.optimizer), False),
             ("first diverging step", result.first_diverging_step or "none", result.first_diverging_step is not None),
             ("final loss (torch)", f"{result.torch_loss[-1]:.6g}" if result.torch_loss else "-", False),
             ("final loss (yours)", f"{result.hand_loss[-1]:.6g}" if result.hand_loss else "-", False)]
    return _ENV.get_template("train.html.j2").render(
        style=STYLE, summary=summary_text(result), passed=result.passed, cards=cards,
        header=f"{result.spec} · {result.optimizer} · seed {result.seed} · batch {result.batch} · "
               f"{result.impl} · verify {__version__}",
        drift=drift_text(result), note=result.note, losses=_plot_losses(result),
        errors=_plot_errors(result, frame), failing=failing.to_dict("records"),
        last=last.sort_values("relative_error", ascending=False).head(30).to_dict("records"))


def write_train_reports(result: TrainResult, out: str | Path) -> dict[str, Path]:
    """trajectory.csv and report.html as the directory ``out``, replacing a previous report whole."""
    frame = trajectory_frame(result)

    def write(staging: Path) -> None:
        write_file(staging / FILES["csv"], to_csv_text(frame))
        write_file(staging / FILES["html"], render_html(result, frame))

    path = write_dir(out, FILES.values(), write)
    return {k: path / name for k, name in FILES.items()}
