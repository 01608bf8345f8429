"""Reports written as the sweep goes (verify.report.stream): the same files as a report written
from results held in memory, --keep, bounded summaries and a page whose size does not grow with
the number of cases. (That memory does not grow is measured by benchmarks/scale.py.)"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from verify import api
from verify.cli.app import main
from verify.harness.trace import check
from verify.report import stream
from verify.report.frames import FILES
from verify.report.html import render_html
from verify.report.stream import Distribution, Recorder, kept
from verify.report.write import write_reports
from verify.sweep.run import SweepResult, sweep

CSVS = ("discrepancies", "cases", "summary")


def _files(out) -> dict[str, bytes]:
    return {k: (out / FILES[k]).read_bytes() for k in CSVS}


def test_a_report_streamed_in_small_chunks_is_byte_identical_to_one_written_from_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_ROWS", 7)
    held = sweep(examples=16, seed=4, max_depth=2, max_width=4, max_batch=4, max_shrunk=0)
    write_reports(held, tmp_path / "held")
    spool = tmp_path / "spool"
    spool.mkdir()
    recorder = Recorder(spool)
    streamed = sweep(examples=16, seed=4, max_depth=2, max_width=4, max_batch=4, max_shrunk=0,
                     on_result=recorder.add)
    assert streamed.n_cases == 16 and all(not r.passed for r in streamed.results)
    write_reports(streamed, tmp_path / "streamed", recorder=recorder)
    assert _files(tmp_path / "streamed") == _files(tmp_path / "held")


def test_verify_run_writes_byte_identical_csvs_with_one_and_two_jobs(tmp_path):
    args = ["run", "--examples", "24", "--seed", "7", "--max-depth", "2", "--max-width", "4", "--max-batch", "4"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_verify_check_impl_streams_its_rows_and_keeps_no_passing_case_in_memory(tmp_path, monkeypatch):
    concluded = []
    real = api.conclude
    monkeypatch.setattr(api, "conclude", lambda result, *a, **k: concluded.append(result) or real(result, *a, **k))
    assert main(["check", "--impl", "handimpl:backprop", "--examples", "12", "--out", str(tmp_path)]) == 0
    assert concluded[0].n_cases == 12 and not concluded[0].results       # streamed, not held
    assert len((tmp_path / FILES["cases"]).read_text().splitlines()) == 1 + 12
    assert len((tmp_path / FILES["discrepancies"]).read_text().splitlines()) > 1 + 12
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.")]  # no spool left


def _varied_case():
    """A real case whose records are made failing, imprecise, near-failing and plainly passing."""
    c = check("3-4-2:tanh,sigmoid:mse_loss", seed=1, batch=3)
    kinds = [dict(passed=False, status="diverges", margin=3.0), dict(status="imprecise", margin=0.9),
             dict(margin=0.7), dict(margin=0.1), dict(margin=float("nan"))]
    records = tuple(dataclasses.replace(r, **kinds[i % len(kinds)]) for i, r in enumerate(c.records))
    return dataclasses.replace(c, records=records)


def test_keep_failing_writes_only_failing_imprecise_and_near_failing_rows_but_every_case(tmp_path):
    c = _varied_case()
    out = tmp_path / "r"
    result = SweepResult((c, c, c))
    spool = tmp_path / "spool"
    spool.mkdir()
    recorder = Recorder(spool, keep="failing")
    for i, r in enumerate(result.results):
        recorder.add(i, r)
    write_reports(result, out, recorder=recorder)
    written = [r for r in c.records if kept(r)]
    assert 0 < len(written) < len(c.records)
    assert all(r.margin >= stream.NEAR_FAILING or r.status == "imprecise" or not r.passed for r in written)
    disc = (out / FILES["discrepancies"]).read_text().splitlines()
    assert len(disc) == 1 + 3 * len(written)
    assert len((out / FILES["cases"]).read_text().splitlines()) == 1 + 3


def test_keep_defaults_to_every_row_up_to_its_limit_and_to_failing_rows_above():
    assert stream.default_keep(stream.KEEP_ALL_UP_TO) == "all"
    assert stream.default_keep(stream.KEEP_ALL_UP_TO + 1) == "failing"


def test_a_distribution_gives_the_exact_median_until_it_turns_into_a_histogram(monkeypatch):
    monkeypatch.setattr(stream, "EXACT_VALUES", 1000)
    values = np.random.default_rng(0).lognormal(-30, 4, 5001)
    values[:40] = 0.0
    values[40:45] = np.inf
    small = Distribution()
    for v in values[:999]:
        small.add(float(v))
    assert small.is_exact and small.median() == np.median(values[:999])
    d = Distribution()
    for v in [*values, math.nan]:
        d.add(float(v))
    assert not d.is_exact and d.n == len(values)
    for q in (0.25, 0.5, 0.75):
        exact = np.quantile(values, q, method="inverted_cdf")
        assert abs(d.quantile(q) / exact - 1) <= stream.HISTOGRAM_REL_ERR * 1.01
    assert d.minimum() == 0.0 and d.maximum() == math.inf


def test_the_page_does_not_grow_with_the_number_of_cases_past_its_caps(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "SCATTER_POINTS", 50)
    monkeypatch.setattr(stream, "FAILING_POINTS", 20)
    monkeypatch.setattr(stream, "FAILING_ROWS_SHOWN", 20)
    c = _varied_case()
    sizes = []
    for n in (200, 2000):
        (tmp_path / str(n)).mkdir()
        recorder = Recorder(tmp_path / str(n), keep="failing")
        for i in range(n):
            recorder.add(i, c)
        recorder.close()
        result = SweepResult((c,), checked=n, ids=(0,))
        sizes.append(len(render_html(result, recorder)))
    assert sizes[1] < 1.02 * sizes[0] and sizes[1] < 5_000_000
