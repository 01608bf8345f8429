"""verify.report.frames: the frames, the files, their determinism and escaping."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings

import pandas as pd
import pytest

from verify.core.spec import NetSpec
from verify.harness.trace import CaseResult, check
from verify.report.frames import DISCREPANCY_COLUMNS, discrepancy_frame, divergence_sentence
from verify.report.html import _decade_label
from verify.report.write import write_reports
from verify.sweep.run import SweepResult, sweep


def _small(seed=0, **kw):
    return sweep(examples=6, seed=seed, max_depth=2, max_width=3, max_batch=3, **kw)


def test_two_runs_with_the_same_seed_write_byte_identical_csvs(tmp_path):
    a, b = write_reports(_small(5), tmp_path / "a"), write_reports(_small(5), tmp_path / "b")
    for kind in ("discrepancies", "cases", "summary"):
        assert a[kind].read_bytes() == b[kind].read_bytes()


def test_discrepancies_csv_has_exactly_the_documented_columns_and_one_row_per_record(tmp_path):
    result = _small()
    paths = write_reports(result, tmp_path)
    df = pd.read_csv(paths["discrepancies"])
    assert list(df.columns) == DISCREPANCY_COLUMNS
    assert len(df) == sum(len(r.records) for r in result.results)
    assert set(df["quantity"]) <= {"z", "a", "delta", "dW", "db", "dx", "loss", "W_after_step", "b_after_step"}
    assert df.loc[df["quantity"] == "loss", "layer"].isna().all()


def test_the_first_divergence_sentence_names_what_agrees_before_it():
    spec = NetSpec.parse("2-2-1:sigmoid:quadratic")
    good = check(spec, seed=0, batch=3)
    records = list(good.records)
    i = next(k for k, r in enumerate(records) if r.name == "delta2")
    records[i] = type(records[i])(**{**records[i].__dict__, "passed": False, "status": "diverges"})
    broken = CaseResult(spec, 0, 3, tuple(records))
    assert divergence_sentence(broken) == \
        "z and a agree in all 2 layers, and so does the loss; delta2 is the first to diverge"


def test_a_tensor_that_only_inherits_is_never_named_the_first_to_diverge():
    spec = NetSpec.parse("2-2-1:sigmoid:quadratic")
    records = list(check(spec, seed=0, batch=3).records)
    status = {"delta2": "inherits", "dW2": "diverges"}
    records = [type(r)(**{**r.__dict__, "passed": False, "status": status[r.name]}) if r.name in status else r
               for r in records]
    broken = CaseResult(spec, 0, 3, tuple(records))
    assert broken.first_divergence.name == "dW2"
    assert divergence_sentence(broken).endswith("dW2 is the first to diverge")


def test_an_error_text_from_user_code_is_in_the_note_and_escaped_in_the_html(tmp_path):
    spec = NetSpec.parse("2-1:sigmoid:mse_loss")
    bad = CaseResult(spec, 0, 2, (), error="ValueError: <script>alert(1)</script>")
    result = SweepResult((bad,), (bad,), {"seed": 0}, False, 0.1)
    paths = write_reports(result, tmp_path)
    assert "<script>alert(1)" in discrepancy_frame(result.results)["note"].iloc[0]
    html = paths["html"].read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_report_json_records_versions_seed_counts_and_the_partial_flag(tmp_path):
    result = _small(seed=2)
    data = json.loads(write_reports(result, tmp_path)["json"].read_text())
    assert data["seed"] == 2 and data["partial"] is False and data["counts"]["cases"] == 6
    assert set(data["versions"]) == {"python", "numpy", "torch", "pandas", "hypothesis"}


def test_the_html_is_self_contained_with_inline_svg_plots(tmp_path):
    html = write_reports(_small(), tmp_path)["html"].read_text()
    assert "<svg" in html and "<style>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) and "<link" not in html


def test_the_html_groups_a_stacks_tensors_by_layer_kind_and_labels_their_activation_row(tmp_path):
    result = sweep(examples=4, seed=0, max_depth=2, max_width=3, max_batch=3, architectures=["stack"])
    page = write_reports(result, tmp_path)["html"].read_text()
    assert re.search(r'<h3>by layer kind</h3>.*class="row_heading[^"]*" >linear</th>', page, re.S)
    assert "(layer stacks: see by layer kind)" in page
    assert not re.search(r'class="row_heading[^"]*" >\s*</th>', page)      # no row without a label
    assert not re.search(r'id="[^"]* [^"]*"', page)                     # ids without spaces


def test_no_temporary_files_are_left_beside_the_reports(tmp_path):
    write_reports(_small(), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


EXTREMES = [math.inf, -math.inf, math.nan, 0.0, 1e300, 1e-300, 2.4e281, 5e-281]


def _with_errors(value: float, passed: bool, seed: int) -> CaseResult:
    """A real case whose every record claims ``value`` as its errors and values."""
    case = check("2-2-1:sigmoid:quadratic", seed=seed, batch=2)
    records = tuple(dataclasses.replace(r, max_abs_err=value, max_rel_err=value, norm_rel_err=value,
                                        max_ulp=value, hand_value=value, torch_value=value,
                                        passed=passed)
                    for r in case.records)
    return dataclasses.replace(case, records=records)


@pytest.mark.parametrize("passed", [True, False], ids=["passing", "failing"])
@pytest.mark.parametrize("value", EXTREMES, ids=repr)
def test_every_file_of_the_report_is_written_when_errors_are_extreme(tmp_path, value, passed):
    results = (_with_errors(value, passed, 0), _with_errors(1e-9, True, 1))
    minimal = tuple(r for r in results if not r.passed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # matplotlib's overflow warnings included
        paths = write_reports(SweepResult(results, minimal, {"seed": 0}, False, 0.1), tmp_path)
    assert all(p.stat().st_size for p in paths.values())
    assert paths["html"].read_text().count("<svg") == 2


def test_the_log_axis_labels_decades_and_leaves_zero_inf_and_nan_blank():
    labels = [_decade_label(v) for v in (1e-8, 1e281, 0.0, math.inf, math.nan, -1.0)]
    assert labels == ["1e-8", "1e281", "", "", "", ""]
