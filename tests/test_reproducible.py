"""The cases a sweep draws for a seed depend on the seed and the sweep's bounds only, never on
what else the process has imported.

Hypothesis (6.13x and later) collects the literals (integers with |n| >= 100, floats, strings)
of every imported module whose file lies outside site-packages and the standard library, and
offers them in about one integer draw in twenty; so importing or running one more such module
(benchmarks/verdict.py, a user's script, an edited verify module) changed the cases of every
seed. the sweep draws with a fixed pool instead (verify.sweep.draw.PINNED_INTEGERS).
"""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis.internal.conjecture import providers

from verify.sweep.draw import draw_all

ROOT = Path(__file__).resolve().parents[1]
N, SEED = 300, 0          # the reported call: draw_all({}, 300, 0)


def _listed(cases) -> list[tuple[str, int, int]]:
    return [(str(spec), seed, batch) for spec, seed, batch in cases]


def _drawn_in_a_fresh_process(before: str = "") -> list[tuple[str, int, int]]:
    """draw_all({}, N, SEED) in a new interpreter (``python -c``, so no script file of its own
    to collect literals from), after running ``before``."""
    code = "\n".join([before, "from verify.sweep.draw import draw_all",
                      f"print(repr([(str(s), d, b) for s, d, b in draw_all({{}}, {N}, {SEED})]))"])
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout)                 # noqa: S307 - our own repr of str/int tuples


@pytest.fixture(scope="module")
def clean() -> list[tuple[str, int, int]]:
    """The cases of a fresh process that imports nothing else, drawn once for the module's tests."""
    return _drawn_in_a_fresh_process()


def _module_full_of_literals(where: Path) -> Path:
    """A module of 400 integer literals in the range of a data seed, and some floats and
    strings (fewer than the 1024 constants beyond which hypothesis skips a module)."""
    rng = random.Random(1)
    ints = sorted(rng.sample(range(100, 2**32), 400))
    floats = [rng.uniform(-1e3, 1e3) for _ in range(50)]
    strings = [f"name{i}" for i in range(50)]
    path = where / "lots_of_literals.py"
    path.write_text(f"INTS = {ints!r}\nFLOATS = {floats!r}\nSTRINGS = {strings!r}\n")
    return path


def test_importing_a_module_full_of_literals_does_not_change_the_cases(tmp_path, clean):
    _module_full_of_literals(tmp_path)
    after = _drawn_in_a_fresh_process(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
                                      "import lots_of_literals")
    assert len(clean) == N
    assert after == clean


def test_importing_benchmarks_verdict_does_not_change_the_cases(clean):
    """The reported trigger: 150 float32 cases in a fresh process, 151 once benchmarks/verdict.py
    is imported (executed as a module that stays in sys.modules, as ``import verdict`` leaves it;
    runpy.run_path drops it again and changed nothing)."""
    after = _drawn_in_a_fresh_process(
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('verdict', 'benchmarks/verdict.py')\n"
        "module = sys.modules['verdict'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)")
    assert after == clean


def test_the_cases_drawn_here_are_those_of_a_fresh_process(tmp_path, clean):
    """This pytest process has imported far more (the test modules' imports, the plugin);
    and a local module imported just now changes nothing either."""
    sys.path.insert(0, str(tmp_path))
    try:
        _module_full_of_literals(tmp_path)
        import lots_of_literals  # noqa: F401
        here = _listed(draw_all({}, N, SEED))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lots_of_literals", None)
    assert here == clean


def test_the_global_random_generators_do_not_change_the_cases():
    """Ruled out as a cause: the draws use hypothesis's own generator, seeded by the block."""
    import numpy as np
    import torch
    first = _listed(draw_all({}, 80, SEED))
    random.seed(12345)
    np.random.seed(678)
    torch.manual_seed(9)
    assert _listed(draw_all({}, 80, SEED)) == first


def test_the_sweep_leaves_hypothesis_its_own_constants():
    """The pin holds during the sweep's draws only: afterwards hypothesis collects and offers
    the process's constants as before (for the project's own @given tests)."""
    original = providers._get_local_constants
    draw_all({}, 10, SEED)
    assert providers._get_local_constants is original
