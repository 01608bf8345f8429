"""The command line as a tool: every option explained with its default, progress with rate and
ETA on a terminal, plain lines elsewhere."""
from __future__ import annotations

import argparse
import io

import pytest

from verify.cli.app import build_parser
from verify.sweep.progress import Progress


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _options(name):
    return [a for a in _subparsers()[name]._actions
            if a.option_strings and a.help not in (argparse.SUPPRESS,) and a.dest != "help"]


@pytest.mark.parametrize("command", ["check", "run", "mutants", "explain", "layers", "train"])
def test_every_option_has_help_text_that_states_its_default(command):
    for action in _options(command):
        assert action.help, action.option_strings
        if action.nargs != 0:                         # flags have no value to default
            assert "default" in action.help, action.option_strings


def test_examples_says_300_in_the_help_of_run():
    help_text = _subparsers()["run"].format_help()
    assert "number of random cases (default: 300)" in help_text


def test_the_old_seed_example_flag_is_a_hidden_alias_of_tutorial_example():
    explain = _subparsers()["explain"]
    assert explain.parse_args(["--seed-example"]).tutorial_example
    assert "--seed-example" not in explain.format_help()


def test_progress_on_a_terminal_shows_the_rate_and_the_time_left():
    stream = io.StringIO()
    progress = Progress(stream, tty=True)
    for done in range(1, 11):
        progress(done, 10, done // 4)
    text = stream.getvalue()
    assert "10/10" in text and "case/s" in text and "<" in text and "2 failing" in text


def test_progress_off_a_terminal_is_one_plain_line_per_tenth():
    stream = io.StringIO()
    progress = Progress(stream, tty=False)
    for done in range(1, 101):
        progress(done, 100, 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1] == "checked 100/100 cases, 0 failing"
    assert "\r" not in stream.getvalue()
