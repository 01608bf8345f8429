"""What the terminal and the reports say: each counterexample once, singular and plural right,
the whole run's time, no empty header values."""
from __future__ import annotations

import json

import handimpl
from verify import check
from verify.cli import main
from verify.diagnose import describe_case
from verify.report import divergence_sentence, summary_lines, write_reports
from verify.sweep import SweepResult

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
    assert divergence_sentence(deep).startswith("z, a and delta agree in all 2 layers, and so does the loss; dW2 and db2 agree too;")


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
