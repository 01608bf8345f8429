"""The textbook allowance inside residual blocks (docs/verdict.md, "Two allowances"): an activation
written as its documented formula inside ``residual(...)`` passes as imprecise, with the note naming
the operation and the block's inner layer, and fails in strict mode; a real bug there still diverges."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import verify
from verify.byo.call import load_target

ROOT = Path(__file__).resolve().parents[1]
TEXTBOOK = load_target(f"{ROOT / 'benchmarks' / 'stack_styles.py'}:textbook")
styles = sys.modules[TEXTBOOK.__module__]
# inputs at scale 1e-3 (seed 5's draw), no biases: the block's ELU sees z near 0, where e^z − 1 cancels
SPEC = "4>linear:8,nobias>residual(linear:8,nobias>elu>linear:8)>linear:2|mse_loss:dtype={dtype}"
SEED = 5


class _ScaledELU(styles.TextbookActs):
    """The textbook ELU, its output off by a relative ``off``: a bug, not a rounding."""
    def __init__(self, off: float):
        super().__init__()
        self.off = off

    def forward(self, layer, x, p, ctx):
        a, cache = super().forward(layer, x, p, ctx)
        return (a * (1 + self.off) if getattr(layer, "name", "") == "elu" else a), cache


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_textbook_elu_inside_a_residual_block_passes_as_imprecise_naming_expm1_and_the_inner_layer(dtype):
    result = verify.check(SPEC.format(dtype=dtype), seed=SEED, batch=8, impl=TEXTBOOK)
    assert result.passed, result.first_divergence
    imprecise = [r for r in result.records if r.status == "imprecise"]
    assert imprecise
    assert all("cancellation in eᶻ − 1" in r.note and "torch uses expm1" in r.note and "[elu, layer 2.2]" in r.note
               for r in imprecise)


def test_strict_mode_fails_the_textbook_elu_inside_a_residual_block_at_the_blocks_output():
    result = verify.check(SPEC.format(dtype="float32"), seed=SEED, batch=8, impl=TEXTBOOK, strict=True)
    assert not result.passed and result.first_divergence.name == "out2"


@pytest.mark.parametrize("dtype, off", [("float32", 1e-2), ("float64", 1e-6)])
def test_a_small_relative_bug_in_a_residual_blocks_elu_still_diverges_at_the_blocks_output(dtype, off):
    buggy = styles.style(_ScaledELU(off), "scaled_elu")
    result = verify.check(SPEC.format(dtype=dtype), seed=SEED, batch=8, impl=buggy)
    assert not result.passed
    assert result.first_divergence.name == "out2" and result.first_divergence.status == "diverges"


def test_the_textbook_view_of_a_stack_reaches_the_activations_inside_a_residual_block():
    from verify.core.stack import StackSpec
    from verify.core.stack_bounds import functions, has_textbook

    spec = StackSpec.parse(SPEC.format(dtype="float64"))
    assert has_textbook(spec)
    block = functions(spec, textbook=True)[0][1]
    elu = spec.layers[1].inner[1].f
    assert block.inner[1].f is elu.textbook_view and spec.layers[1].inner[1].f is elu      # the spec unchanged
    z = -np.logspace(-8, -2, 7)[None, :]                       # where e^z − 1 cancels
    assert (block.inner[1].f.f_terms(z, elu.f(z)) > elu.f_terms(z, elu.f(z))).all()
