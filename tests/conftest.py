"""Hypothesis profiles, chosen by VERIFY_PROFILE (docs/testing.md says what each runs and how long):

- dev (default): 25 examples a property, random;
- ci: 25, derandomized (the README's test command: the same cases every run);
- thorough: 200, random (.ci/run's oldest-versions job: new cases every CI run);
- exhaustive: 1000, random (by hand, before a release or after changing the error model).
"""
import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=200, database=None, print_blob=True, **_common)
settings.register_profile("exhaustive", max_examples=1000, print_blob=True, **_common)
settings.load_profile(os.environ.get("VERIFY_PROFILE", "dev"))
