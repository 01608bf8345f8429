"""What the terminal and the reports say: each counterexample once, singular and plural right,
the whole run's time, no empty header values."""
from __future__ import annotations

import json
import subprocess
import sys

import handimpl
from verify import check
from verify.cli.app import main
from verify.harness.diagnose import describe_case
from verify.report.frames import divergence_sentence, summary_lines
from verify.report.write import write_reports
from verify.sweep.run import SweepResult

TRANSPOSED = "tests/fixtures/user_impls.py:transposed"


def doubled_delta1(spec, params, x, y):
    out = handimpl.backprop(spec, params, x, y)
    out["delta1"] = out["delta1"] * 2
    return out


def test_verify_check_impl_prints_each_counterexample_once(capsys, tmp_path):
    assert main(["check", "--impl", TRANSPOSED, "--examples", "16", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    commands = [line.strip() for line in out.splitlines() if line.strip().startswith("verify check ")]
    assert commands and len(commands) == len(set(commands))
    assert sum(c.startswith(commands[0]) for c in out.splitlines()) <= 1


def test_one_distinct_failure_is_written_in_the_singular(tmp_path):
    failing = check("1-1-1:tanh:mse_loss", seed=0, batch=2, impl=doubled_delta1)
    lines = summary_lines(SweepResult((failing,), (failing,), {"seed": 0}, wall_time=0.5, total_time=3.31))
    assert lines[0].startswith("verify: 1 of 1 case disagrees (")
    assert lines[0].endswith(" tensors compared; 0.5 s checking, 3.3 s in all)")
    assert lines[1] == "1 distinct failure; its minimal counterexample:"
    assert "(s)" not in "\n".join(lines)


def test_one_agreeing_input_agrees_in_the_singular():
    failing = check("2-1:tanh:mse_loss", seed=0, batch=2, impl=doubled_delta1)
    text = describe_case(failing)
    assert "delta1 is the first to diverge while z1, a1 and loss agree" in text
    one = check("2-1:tanh:mse_loss", seed=0, batch=2, impl=_doubled("dW1"))
    assert "dW1 is the first to diverge while delta1 agrees:" in describe_case(one)


def _doubled(name):
    def impl(spec, params, x, y):
        out = handimpl.backprop(spec, params, x, y)
        out[name] = out[name] * 2
        return out
    return impl


def test_a_one_layer_network_has_no_all_layers():
    failing = check("2-1:tanh:mse_loss", seed=0, batch=2, impl=_doubled("dW1"))
    assert divergence_sentence(failing).startswith("z, a and delta agree, and so does the loss;")
    deep = check("2-2-1:tanh:mse_loss", seed=0, batch=2, impl=_doubled("dW1"))
    assert divergence_sentence(deep).startswith(
        "z, a and delta agree in all 2 layers, and so does the loss; dW2 and db2 agree too;")


def test_the_report_header_has_no_empty_settings(tmp_path):
    result = SweepResult((check("2-2-1:sigmoid:quadratic", seed=1, batch=2),), (),
                         {"source": "pytest", "tests": 1, "checks": 1, "impl": None})
    page = write_reports(result, tmp_path)["html"].read_text()
    assert "impl None" not in page and "seed –" not in page and "None" not in page.split("<main>")[1].split("</div>")[0]


def test_report_json_holds_the_whole_runs_time(tmp_path):
    result = SweepResult((check("2-2-1:sigmoid:quadratic", seed=1, batch=2),), (), {"seed": 0},
                         wall_time=0.25, total_time=4.0)
    report = json.loads(write_reports(result, tmp_path)["json"].read_text())
    assert report["wall_time_s"] == 0.25 and report["total_time_s"] == 4.0


def _sweep_page(tmp_path, impl=None):
    from verify.api import sweep_implementation
    from verify.sweep.run import sweep
    result = sweep_implementation(impl, examples=24, seed=2) if impl else sweep(examples=24, seed=2)
    return write_reports(result, tmp_path)["html"].read_text()


def test_a_long_report_has_a_table_of_contents_and_collapsible_sections(tmp_path):
    page = _sweep_page(tmp_path)
    assert '<nav class="toc">' in page and '<a href="#tables">Summary tables</a>' in page
    assert '<details class="section" id="tables" open>' in page


def test_loss_names_in_the_activation_by_loss_table_may_wrap_at_their_underscores(tmp_path):
    page = _sweep_page(tmp_path)
    assert "binary_\u200bcross_\u200bentropy" in page or "soft_\u200bmargin_\u200bloss" in page


def test_the_failing_rows_table_wraps_its_text_columns_and_drops_columns_that_never_change(tmp_path):
    page = _sweep_page(tmp_path, "tests/fixtures/user_impls.py:transposed")
    table = page[page.index('id="T_failing"'):]
    assert 'class="data row0 col1 txt"' in table              # spec, wrapped
    assert ">impl</th>" not in table and ">test</th>" not in table


def test_a_counterexample_of_a_function_defined_inside_a_function_says_it_cannot_be_imported():
    from verify.report.frames import counterexample, counterexample_lines
    failing = check("2-1:tanh:mse_loss", seed=0, batch=2, impl=_doubled("dW1"))
    assert "<locals>" in failing.impl and not counterexample(failing)["runnable"]
    assert "--impl cannot import it" in counterexample_lines(failing)[-1]
    module_level = check("2-1:tanh:mse_loss", seed=0, batch=2, impl=doubled_delta1)
    assert counterexample(module_level)["runnable"]


def test_the_time_in_all_counts_from_before_verify_imports_torch():
    code = ("import time; t0 = time.perf_counter(); import verify.cli.app; t1 = time.perf_counter(); "
            "import verify; print(verify.STARTED - t0, t1 - t0)")       # the command, as `verify` loads it
    started, imported = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout.split())
    assert started < 0.25 * imported           # the clock starts before torch, pandas and the rest load


def test_a_type_is_named_with_its_article():
    import numpy as np

    from verify.byo.call import a_type_name
    assert [a_type_name(v) for v in (np.zeros(1), (1,), None, 1.5)] == ["an ndarray", "a tuple", "None", "a float"]


def test_a_call_that_times_out_says_the_time_limit_once_and_where_it_was(tmp_path):
    from verify.byo.guard import TimeLimit
    from verify.layers.calls import Failed, call

    def spin(x):
        while True:
            x = x + 1

    try:
        call(spin, "spin", (0,), TimeLimit(0.2))
    except Failed as e:
        message = str(e)
    assert message.count("time limit") == 1 and "test_wording.py:" in message and " in spin: " in message


def test_a_syntax_error_is_located_in_the_users_file_not_in_importlib(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def relu_forward(x)\n    return x\n")
    run = subprocess.run([sys.executable, "-m", "verify", "layers", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "at broken.py:1: def relu_forward(x)" in run.stderr and "importlib" not in run.stderr
