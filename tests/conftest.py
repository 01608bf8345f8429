"""Hypothesis profiles, chosen by VERIFY_PROFILE: dev (default), ci, thorough."""
import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=60, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("VERIFY_PROFILE", "dev"))
