"""The correctness gate: every tensor of every random case agrees with torch."""
from hypothesis import given

import verify
from verify.sweep.strategies import cases


@given(cases(max_depth=5, max_width=16, max_batch=16))
def test_every_tensor_of_a_random_case_agrees_with_torch(case):
    spec, seed, batch = case
    result = verify.check(spec, seed=seed, batch=batch)
    first = result.first_divergence
    assert result.passed, f"{result.repro}: first to diverge: {first}"
