"""Hypothesis profiles, chosen by VERIFY_PROFILE (docs/testing.md says what each runs and how long):

- dev (default): 25 examples a property, random;
- ci: 25, derandomized (the README's test command: the same cases every run);
- thorough: 200, random (.ci/run's oldest-versions job: new cases every CI run);
- exhaustive: 1000, random (by hand, before a release or after changing the error model).

The sweeps that show a correct reference agrees run a quarter of their cases in dev and ci, all of
them in thorough and exhaustive (tests/budget.py).
"""
import os
import signal

from hypothesis import HealthCheck, settings

# The Ctrl-C tests send SIGINT to the commands they start. A shell that starts the suite in the
# background (`nohup … &` without job control, some CI runners) hands it SIGINT ignored, and an
# ignored signal stays ignored across exec: those commands would never see it. Python's own handler
# here instead (exec resets a handled signal to the default, so every command started gets Python's).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=200, database=None, print_blob=True, **_common)
settings.register_profile("exhaustive", max_examples=1000, print_blob=True, **_common)
settings.load_profile(os.environ.get("VERIFY_PROFILE", "dev"))


# The files that spend longest in child processes (fresh interpreters importing torch, pytest runs,
# signals sent to a running command), longest first (durations of 2026-12-07, docs/testing.md). With
# `--dist loadfile` a file runs whole on one worker, in collection order; one of these collected last
# would keep its worker busy while the other one, done, waits. Run first, the short files even out
# the end. Every other file keeps its place, and every file its order within.
FIRST = ("test_gate.py", "test_cli_check.py", "test_output.py", "test_hostile.py", "test_exit.py",
         "test_isolate.py", "test_plugin.py", "test_verdict_benchmark.py", "test_notebooks.py", "test_notebook.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))     # a stable sort
