"""Hypothesis strategies for specs and cases, shared by the tests and `verify run`.

Small by default and validated first (as hypothesis.extra.numpy): an unknown
name or an impossible bound raises at once, naming the valid choices. Every
draw shrinks towards the simplest case: one layer, width 1, the first
activation, loss and dtype listed, batch 1.
"""
from __future__ import annotations

import functools
from typing import Sequence

from hypothesis import strategies as st

from handimpl import ACTIVATIONS, INITS, LOSSES
from verify.core.spec import DTYPES, NetSpec, shown

# Values offered for each loss option (the first is torch's default, so shrinking goes there).
OPTION_VALUES = {
    "label_smoothing": (0.0, 0.1, 0.2),
    "delta": (1.0, 0.5, 2.0),
    "beta": (1.0, 0.5, 0.0, 2.0),
    "log_input": (True, False),
    "full": (False, True),
    "eps": (1e-8,),
    "log_target": (False, True),
}


def _names(kind: str, given: Sequence[str] | None, registry) -> tuple[str, ...]:
    names = tuple(registry) if given is None else tuple(given)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown {kind} {shown(unknown[0])}; valid: {', '.join(registry)}")
    if not names:
        raise ValueError(f"no {kind} given")
    return names


def _fitting(loss: str, options: dict, activations: Sequence[str]) -> tuple[str, ...]:
    """The activations whose range lies in the loss's input domain (given its options)."""
    return _fitting_cached(loss, tuple(options.items()), tuple(activations))


@functools.lru_cache(maxsize=None)
def _fitting_cached(loss: str, options: tuple, activations: tuple) -> tuple[str, ...]:
    lo, hi = LOSSES[loss].domain(**{**LOSSES[loss].options, **dict(options)})
    return tuple(a for a in activations if ACTIVATIONS[a].range[0] >= lo and ACTIVATIONS[a].range[1] <= hi)


def _option_choices(loss: str):
    yield {}
    for key in LOSSES[loss].options:
        for value in OPTION_VALUES[key]:
            yield {key: value}


def validate(*, max_depth: int, max_width: int, activations, losses, dtypes) -> tuple:
    if not 1 <= max_depth <= 32:
        raise ValueError(f"max_depth must lie in 1..32, got {max_depth}")
    if not 1 <= max_width <= 1024:
        raise ValueError(f"max_width must lie in 1..1024, got {max_width}")
    acts = _names("activation", activations, ACTIVATIONS)
    loss_names = _names("loss", losses, LOSSES)
    dts = _names("dtype", dtypes, {d: d for d in DTYPES})
    usable = [l for l in loss_names if any(_fitting(l, o, acts) for o in _option_choices(l))]
    if not usable:
        raise ValueError(f"none of the losses {', '.join(loss_names)} can follow any of the "
                         f"activations {', '.join(acts)}")
    return acts, tuple(usable), dts


@functools.lru_cache(maxsize=None)
def _between(lo: int, hi: int):
    """st.integers(lo, hi), built once (building and validating strategies dominates a draw)."""
    return st.integers(lo, hi)


def _pick(draw, values: Sequence):
    """One of ``values`` as st.sampled_from draws it: the same one choice, an index that shrinks
    towards the first, and none for a single value; without sampled_from's filtering layer,
    which costs a fifth of each choice."""
    return values[draw(_between(0, len(values) - 1))] if len(values) > 1 else values[0]


@st.composite
def _specs(draw, max_depth, max_width, acts, losses, dtypes) -> NetSpec:
    loss = _pick(draw, losses)
    options = {k: _pick(draw, OPTION_VALUES[k]) for k in LOSSES[loss].options}
    outputs = _fitting(loss, options, acts)
    if not outputs:                      # e.g. poisson_nll_loss(log_input=False) after identity only
        options = {}
        outputs = _fitting(loss, options, acts)
    depth = draw(_between(1, max_depth))
    widths = tuple(draw(_between(1, max_width)) for _ in range(depth + 1))
    hidden = [_pick(draw, acts) for _ in range(depth - 1)]
    out = _pick(draw, outputs)
    return NetSpec(
        widths, tuple(hidden + [out]), loss, tuple(options.items()),
        reduction=_pick(draw, LOSSES[loss].reductions),
        bias=_pick(draw, (True, False)),
        dtype=_pick(draw, dtypes),
        init=_pick(draw, tuple(INITS)),
        target=_pick(draw, ("index", "prob")) if loss == "cross_entropy" else "index",
    )


def net_specs(*, max_depth: int = 5, max_width: int = 16, activations: Sequence[str] | None = None,
              losses: Sequence[str] | None = None, dtypes: Sequence[str] | None = None):
    """Valid NetSpecs: depth 1..max_depth, widths 1..max_width, any listed activation per layer,
    any listed loss whose input domain the output activation fits, with its options."""
    acts, usable, dts = validate(max_depth=max_depth, max_width=max_width, activations=activations,
                                 losses=losses, dtypes=dtypes)
    return _specs(max_depth, max_width, acts, usable, dts)


def seeds():
    return _between(0, 2**32 - 1)


def cases(*, max_batch: int = 16, **spec_bounds):
    """(spec, data seed, batch) triples, batch in 1..max_batch."""
    if not 1 <= max_batch <= 4096:
        raise ValueError(f"max_batch must lie in 1..4096, got {max_batch}")
    return _cases(net_specs(**spec_bounds), max_batch)


@st.composite
def _cases(draw, specs, max_batch: int) -> tuple:
    """The choices of st.tuples(specs, seeds(), st.integers(1, max_batch)), in its order, without
    its layer (a tenth of a case's draw)."""
    return draw(specs), draw(seeds()), draw(_between(1, max_batch))
