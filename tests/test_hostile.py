"""User code that misbehaves outside `except Exception`: every such call is a failing row."""
from __future__ import annotations

from pathlib import Path

import pytest

from verify.check import check
from verify.cli import main
from verify.impl import load_target

HOSTILE = Path(__file__).parent / "fixtures" / "hostile_impls.py"
SPEC = "3-4-2:sigmoid:mse_loss"


def hostile(name: str):
    return load_target(f"{HOSTILE}:{name}")


@pytest.mark.parametrize("name, words", [
    ("raises_generator_exit", "GeneratorExit at hostile_impls.py"),
    ("raises_base_exception", "Custom: outside Exception at hostile_impls.py"),
    ("raises_unprintable", "Unprintable: (its str() raised RuntimeError) at hostile_impls.py"),
    ("raises_keyboard_interrupt", "KeyboardInterrupt at hostile_impls.py"),
])
def test_an_exception_outside_exception_or_without_text_is_a_failing_case_naming_it(name, words):
    result = check(SPEC, seed=1, impl=hostile(name))
    assert not result.passed
    assert words in result.error


@pytest.mark.parametrize("name, words", [
    ("mapping_whose_iter_raises", "that raised Custom: no iterating"),
    ("mapping_whose_getitem_raises", "that raised KeyError"),
    ("mapping_whose_contains_raises", "that raised GeneratorExit"),
])
def test_a_returned_mapping_that_raises_when_read_is_a_failing_row(name, words):
    result = check(SPEC, seed=1, impl=hostile(name))
    assert not result.passed and not result.error
    first = result.first_divergence
    assert first.name == "backprop" and words in first.problem and "_Hostile" in first.problem


@pytest.mark.parametrize("name", ["raises_base_exception", "raises_keyboard_interrupt",
                                  "mapping_whose_iter_raises", "raises_unprintable"])
def test_a_sweep_of_such_an_implementation_ends_with_a_report_and_exit_status_1(name, tmp_path, capsys):
    code = main(["check", "--impl", f"{HOSTILE}:{name}", "--examples", "6", "--max-depth", "2",
                 "--out", str(tmp_path)])
    assert code == 1
    assert (tmp_path / "report.html").is_file()
    assert "PARTIAL" not in (tmp_path / "report.html").read_text()


def test_a_real_ctrl_c_that_the_implementation_swallows_still_interrupts_the_sweep(tmp_path):
    code = main(["check", "--impl", f"{HOSTILE}:swallows_a_real_ctrl_c", "--examples", "8",
                 "--max-depth", "2", "--out", str(tmp_path)])
    assert code == 130
    assert "PARTIAL (interrupted)" in (tmp_path / "report.html").read_text()
