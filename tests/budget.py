"""How many cases a test's own sweep runs (`check_layers(..., examples=N)` and the like, which
hypothesis's profile does not set), by VERIFY_PROFILE (tests/conftest.py, docs/testing.md).

A test that shows a correct reference agrees runs the full count in `thorough` and `exhaustive`
(.ci/run's oldest-versions job, by hand) and a quarter of it in `dev` and `ci`, where the README's
command must stay under 3 minutes: the same property over fewer cases, as hypothesis's own budget
is 25 examples there and 200 in `thorough`. A test of a default budget itself (a planted bug is
caught within it) keeps that budget in every profile."""
import os

THOROUGH = os.environ.get("VERIFY_PROFILE", "dev") in ("thorough", "exhaustive")


def examples(full: int) -> int:
    """``full`` in `thorough`/`exhaustive`, a quarter of it (at least 1) in `dev`/`ci`."""
    return full if THOROUGH else max(1, full // 4)
