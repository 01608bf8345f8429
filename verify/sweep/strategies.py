"""Hypothesis strategies for specs and cases, shared by the tests and `verify run`.

Small by default and validated first (as hypothesis.extra.numpy): an unknown
name or an impossible bound raises at once, naming the valid choices. Every
draw shrinks towards the simplest case: one layer, width 1, the first
activation, loss and dtype listed, batch 1.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

from handimpl import ACTIVATIONS, INITS, LOSSES
from handimpl.layers import (
    Act,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    GroupNorm,
    LayerNorm,
    Linear,
    MaxPool2d,
    Residual,
)
from handimpl.optim import OPTIMIZERS
from verify.core.optim_spec import OptimizerSpec
from verify.core.spec import DTYPES, NetSpec, parse_option_value, shown
from verify.core.stack import StackSpec
from verify.errors import SpecError

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
    """The names given, or every built-in one (a user's activation, verify.core.custom, is drawn only
    where named)."""
    names = tuple(n for n in registry if not getattr(registry[n], "user_defined", False)) if given is None \
        else tuple(given)
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


PIN_KEYS = ("target", "reduction")     # besides the loss's own options, what a loss entry may pin


@functools.lru_cache(maxsize=None)
def loss_entry(text: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A loss to draw, as ``--losses`` and ``supports["losses"]`` name it: ``cross_entropy``, or
    ``NAME:KEY=VALUE,...`` with some of its options (and ``target``, ``reduction``) pinned, e.g.
    ``cross_entropy:label_smoothing=0,target=index`` for code that implements neither label
    smoothing nor probability targets. Returns (name, pinned options). Raises ValueError naming
    the bad part."""
    name, _, rest = (t.strip() for t in text.partition(":"))
    if name not in LOSSES:
        raise ValueError(f"unknown loss {shown(name)}; valid: {', '.join(LOSSES)}")
    valid = (*LOSSES[name].options, *PIN_KEYS)
    keys = [item.partition("=")[0].strip() for item in rest.split(",") if item.strip()]
    bad = [k for k in keys if k not in valid]
    if bad:
        raise ValueError(f"loss {shown(text)}: {shown(bad[0])} cannot be pinned; {name}'s: {', '.join(valid)}")
    if not keys:
        return name, ()
    try:
        options = {k.strip(): parse_option_value(k.strip(), v.strip(), LOSSES[name].options[k.strip()])
                   for k, v in (i.partition("=")[::2] for i in rest.split(",")) if k.strip() in LOSSES[name].options}
        fits = [a for a in ACTIVATIONS if not getattr(ACTIVATIONS[a], "user_defined", False)]
        act = next(iter(_fitting(name, options, tuple(fits))), None)
        if act is None:
            raise ValueError(f"loss {shown(text)}: no output activation fits {name} with these options")
        spec = NetSpec.parse(f"1-1:{act}:{name}:{rest}")
    except SpecError as e:
        raise ValueError(f"loss {shown(text)}: {e}") from None
    pins = dict(spec.loss_options) | {k: getattr(spec, k) for k in PIN_KEYS}
    return name, tuple((k, pins[k]) for k in valid if k in keys)


def _option_choices(entry: str):
    """The options a loss is drawn with, one at a time beside its pinned ones (which come first)."""
    loss, pins = loss_entry(entry)
    pinned = {k: v for k, v in pins if k in LOSSES[loss].options}
    yield dict(pinned)
    for key in LOSSES[loss].options:
        if key not in pinned:
            for value in OPTION_VALUES[key]:
                yield {**pinned, key: value}


def validate(*, max_depth: int, max_width: int, activations, losses, dtypes) -> tuple:
    if not 1 <= max_depth <= 32:
        raise ValueError(f"max_depth must lie in 1..32, got {max_depth}")
    if not 1 <= max_width <= 1024:
        raise ValueError(f"max_width must lie in 1..1024, got {max_width}")
    acts = _names("activation", activations, ACTIVATIONS)
    loss_names = _names("loss", losses, LOSSES) if losses is None else \
        _names("loss", losses, {e: e for e in losses if loss_entry(e)})
    dts = _names("dtype", dtypes, {d: d for d in DTYPES})
    # a loss with pinned options must fit with those alone: they are what a draw falls back to
    usable = [l for l in loss_names if any(_fitting(loss_entry(l)[0], o, acts) for o in _option_choices(l))
              and (not loss_entry(l)[1] or _fitting(loss_entry(l)[0], next(_option_choices(l)), acts))]
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
    loss, options, pins = _loss_and_options(draw, losses, acts)
    outputs = _fitting(loss, options, acts)
    depth = draw(_between(1, max_depth))
    widths = tuple(draw(_between(1, max_width)) for _ in range(depth + 1))
    hidden = [_pick(draw, acts) for _ in range(depth - 1)]
    out = _pick(draw, outputs)
    return NetSpec(
        widths, tuple(hidden + [out]), loss, tuple(options.items()),
        reduction=pins["reduction"] if "reduction" in pins else _pick(draw, LOSSES[loss].reductions),
        bias=_pick(draw, (True, False)),
        dtype=_pick(draw, dtypes),
        init=_pick(draw, tuple(INITS)),
        target=pins["target"] if "target" in pins else
        _pick(draw, ("index", "prob")) if loss == "cross_entropy" else "index",
    )


def _loss_and_options(draw, losses, acts) -> tuple[str, dict, dict]:
    """(loss name, its options, what its entry pins): the options drawn where not pinned, and only
    the pinned ones where no output activation fits the drawn ones (e.g. poisson_nll_loss with
    log_input=False after identity alone)."""
    loss, pinned = loss_entry(_pick(draw, losses))
    pins = dict(pinned)
    options = {k: pins[k] if k in pins else _pick(draw, OPTION_VALUES[k]) for k in LOSSES[loss].options}
    if not _fitting(loss, options, acts):
        options = {k: v for k, v in pins.items() if k in LOSSES[loss].options}
    return loss, options, pins


def net_specs(*, max_depth: int = 5, max_width: int = 16, activations: Sequence[str] | None = None,
              losses: Sequence[str] | None = None, dtypes: Sequence[str] | None = None):
    """Valid NetSpecs: depth 1..max_depth, widths 1..max_width, any listed activation per layer,
    any listed loss whose input domain the output activation fits, with its options."""
    acts, usable, dts = validate(max_depth=max_depth, max_width=max_width, activations=activations,
                                 losses=losses, dtypes=dtypes)
    return _specs(max_depth, max_width, acts, usable, dts)


def seeds():
    return _between(0, 2**32 - 1)


ARCHITECTURES = ("dense", "stack")
STACK_WIDTH = 8          # a stack's layers stay this narrow at most (its steps cost more per value)


def cases(*, max_batch: int = 16, architectures: Sequence[str] | None = None,
          optimizers: Sequence[str] | None = None, **spec_bounds):
    """(spec, data seed, batch) triples, batch in 1..max_batch: dense networks (NetSpec), layer
    stacks (StackSpec: stack_cases, within max_depth blocks and max_width, at most STACK_WIDTH,
    units) or both, as ``architectures`` says (default: dense only, which draws exactly what it
    drew before stacks existed). With ``optimizers`` (names of handimpl.optim.OPTIMIZERS), each
    case is a 4-tuple (spec, data seed, batch, OptimizerSpec): the triple as drawn without them,
    then an optimizer and its hyperparameters (optimizer_specs)."""
    if optimizers is not None:
        names = list(optimizers)
        triples = cases(max_batch=max_batch, architectures=architectures, **spec_bounds)
        return _with_optimizer(triples, optimizer_specs(names=names))
    if not 1 <= max_batch <= 4096:
        raise ValueError(f"max_batch must lie in 1..4096, got {max_batch}")
    required = tuple(spec_bounds.pop("kinds", None) or ())
    layers = spec_bounds.pop("layers", None)
    kinds = _names("architecture", architectures or ("dense",), {a: a for a in ARCHITECTURES})
    dense = _cases(net_specs(**spec_bounds), max_batch) if "dense" in kinds else None
    if kinds == ("dense",):
        if layers is not None:
            check_kinds(layers)         # the names, even where only dense networks are drawn
        return dense
    bounds = dict(spec_bounds, kinds=required, layers=None if layers is None else tuple(layers))
    max_blocks = bounds.pop("max_depth", 4)
    bounds["max_width"] = min(bounds.get("max_width", STACK_WIDTH), STACK_WIDTH)
    stacks = _stack_cases(stack_specs(max_blocks=max_blocks, **bounds), max(max_batch, 2))
    return stacks if dense is None else _either(dense, stacks)


@st.composite
def _either(draw, dense, stacks) -> tuple:
    """A dense case or a stack case (the first shrinks to dense)."""
    return draw(dense) if draw(_between(0, 1)) == 0 else draw(stacks)


@st.composite
def _with_optimizer(draw, triples, optimizers) -> tuple:
    """A case (spec, data seed, batch), then an optimizer for it: (spec, seed, batch, OptimizerSpec)."""
    return (*draw(triples), draw(optimizers))


@st.composite
def _cases(draw, specs, max_batch: int) -> tuple:
    """The choices of st.tuples(specs, seeds(), st.integers(1, max_batch)), in its order, without
    its layer (a tenth of a case's draw)."""
    return draw(specs), draw(seeds()), draw(_between(1, max_batch))


# -- layer stacks (verify.core.stack) ---------------------------------------------------------------

DROPOUT_P = (0.5, 0.1, 0.25)
MODES = ("train", "eval")


# The layer kinds a stack may hold besides linear, flatten and activations (which every stack may),
# and the kinds only one shape of stack holds (verify.core.stack's kinds).
OPTIONAL_KINDS = ("batchnorm", "layernorm", "groupnorm", "dropout", "residual", "embedding", "conv1d", "conv2d",
                  "maxpool", "avgpool")
_CHOICE_OF = {"residual": 5, "batchnorm": 1, "layernorm": 3, "groupnorm": 4}   # _dense_block's choices
_MLP_ONLY = {"residual", "layernorm", "dropout"}
_CNN_ONLY = {"conv1d", "conv2d", "maxpool", "avgpool"}


def _dense_block(draw, width: int, max_width: int, acts, allow=frozenset(OPTIONAL_KINDS),
                 force: str = "") -> tuple[list, int]:
    """One block of an MLP: linear (to a new width), then maybe a normalisation, then an activation,
    then maybe dropout; or a residual block of the same width. Only the kinds in ``allow``;
    ``force``: the kind the block must hold (its width then at least 2 where the kind needs it)."""
    choice = _CHOICE_OF.get(force, 0) if force else draw(_between(0, 5))
    act = Act(_pick(draw, acts)) if acts else None
    if choice == 5 and width > 1 and "residual" in allow:
        inner = [Linear(width)] + ([act] if act else []) + ([Linear(width)] if draw(st.booleans()) else [])
        return [Residual(inner)], width
    low = 2 if force in ("batchnorm", "groupnorm", "residual") else 1
    new = draw(_between(low, max(low, max_width)))
    layers: list = [Linear(new, bias=draw(st.booleans()))]
    if choice in (1, 2) and new > 1 and "batchnorm" in allow:
        layers.append(BatchNorm(momentum=_pick(draw, (0.1, 0.3))))
    elif choice == 3 and "layernorm" in allow:
        layers.append(LayerNorm())
    elif choice == 4 and "groupnorm" in allow:
        groups = [g for g in range(new // 2, 0, -1) if new % g == 0]     # more than one group first
        if groups:
            layers.append(GroupNorm(_pick(draw, groups)))
    if act:
        layers.append(act)
    if force == "dropout" or (draw(_between(0, 3)) == 0 and "dropout" in allow):
        layers.append(Dropout(_pick(draw, DROPOUT_P)))
    return layers, new


def _shape_after(shape: tuple, layers: list) -> tuple:
    for layer in layers:
        shape = layer.out_shape(shape)
    return shape


def _conv_blocks(draw, max_blocks: int, acts, allow=frozenset(OPTIONAL_KINDS), need=frozenset()
                 ) -> tuple[tuple[int, ...], list]:
    """A small CNN's input shape and its blocks. Two-dimensional (C ≤ 4 channels, 3..8 high and
    wide): maybe a max pool on the input itself, then blocks of conv (kernel up to 3, non-square,
    stride, padding, dilation drawn) → maybe batch or group norm → an activation → maybe a max
    pool (padding up to half the kernel, dilation 1 or 2) or an average pool. One-dimensional, a
    third of the time (C ≤ 4 channels, length 3..12): blocks of conv1d (the same hyperparameters)
    → maybe batch or group norm → an activation (handimpl has no 1-d pooling). A block that would
    not fit (or whose pool would read a window of padding alone) is left out.

    The max pool on the input sees x exactly, with its exact zeros (every example's where the
    case draws a zero fraction, and all of the first example's): exact ties, which a correct
    max pool must route to the first maximum alone, however its backward is written.

    Only the kinds in ``allow``; the first block holds the kinds in ``need`` (a forced block that
    would not fit takes a 1-wide kernel and pool, which always fit)."""
    if "conv1d" in need or "conv2d" not in allow or need & {"conv2d", "maxpool", "avgpool"}:
        spatial = 1 if "conv1d" in need or "conv2d" not in allow else 2
    else:
        spatial = 1 if draw(_between(0, 2)) == 2 and "conv1d" in allow else 2
    channels = draw(_between(1, 4))
    shape = inputs = (channels, draw(_between(3, 12))) if spatial == 1 else \
        (channels, draw(_between(3, 8)), draw(_between(3, 8)))
    layers: list = []
    # (a norm that must be drawn skips the lead pool: the first block then sees at least 3×3)
    lead_ok = "maxpool" in allow and not (need & {"batchnorm", "groupnorm"} and "maxpool" not in need)
    if spatial == 2 and lead_ok and ("maxpool" in need or draw(_between(0, 1)) == 1):
        k = draw(_between(2, 3))
        lead = MaxPool2d(k, stride=draw(_between(1, k)))
        if all(n >= k for n in shape[1:]):
            layers.append(lead)
            shape = lead.out_shape(shape)
    for b in range(draw(_between(1, max(1, min(max_blocks, 3))))):
        forced = need if b == 0 else frozenset()
        if spatial == 1:
            conv: Conv2d = Conv1d(draw(_between(1, 4)), draw(_between(1, 3)), stride=draw(_between(1, 2)),
                                  padding=draw(_between(0, 1)), dilation=draw(_between(1, 2)), bias=draw(st.booleans()))
        else:
            conv = Conv2d(draw(_between(1, 4)), (draw(_between(1, 3)), draw(_between(1, 3))),
                          stride=(draw(_between(1, 2)), draw(_between(1, 2))), padding=draw(_between(0, 1)),
                          dilation=draw(_between(1, 2)), bias=draw(st.booleans()))
        norm = 1 if "batchnorm" in forced else 2 if "groupnorm" in forced else None
        pool = 1 if "maxpool" in forced and not layers else 2 if "avgpool" in forced else None
        block = _conv_block(draw, conv, norm, pool if spatial == 2 else 0, acts, allow)
        try:
            new = _shape_after(shape, block)
        except ValueError:               # too small for this block: stop here (a forced one: 1-wide)
            if not forced:
                break
            one = Conv1d(conv.out, 1, bias=conv.bias) if spatial == 1 else Conv2d(conv.out, (1, 1), bias=conv.bias)
            kinds = {layer.kind for layer in block}
            block = _conv_block(draw, one, 1 if "batchnorm" in kinds else 2 if "groupnorm" in kinds else 0,
                                1 if "maxpool" in kinds else 2 if "avgpool" in kinds else 0, acts, allow,
                                one_wide=True)
            try:
                new = _shape_after(shape, block)
            except ValueError:       # a norm over one value: rare (need: maxpool and a norm)
                reject()
        layers += block
        shape = new
    return inputs, layers


def _conv_block(draw, conv, norm: int | None, pool: int | None, acts, allow, one_wide: bool = False) -> list:
    """conv → maybe a norm (1 batch, 2 group) → an activation → maybe a pool (1 max, 2 average;
    1-wide where ``one_wide``, which fits any input); a norm or pool of None is drawn, one whose
    kind ``allow`` leaves out is none."""
    block: list = [conv]
    norm = draw(_between(0, 3)) if norm is None else norm
    if norm == 1 and "batchnorm" in allow:
        block.append(BatchNorm())
    elif norm == 2 and "groupnorm" in allow:
        block.append(GroupNorm(_pick(draw, [g for g in range(conv.out, 0, -1) if conv.out % g == 0])))
    if acts:
        block.append(Act(_pick(draw, [a for a in acts if ACTIVATIONS[a].elementwise] or ["identity"])))
    pool = draw(_between(0, 2)) if pool is None else pool
    if (pool == 1 and "maxpool" in allow) or (pool == 2 and "avgpool" in allow):
        k = 1 if one_wide else draw(_between(1, 3))
        block.append(MaxPool2d(k, stride=draw(_between(1, k)), padding=draw(_between(0, k // 2)),
                               dilation=1 if one_wide else draw(_between(1, 2))) if pool == 1 else
                     AvgPool2d(k, stride=draw(_between(1, k)), padding=draw(_between(0, k // 2))))
    return block


@st.composite
def _stacks(draw, max_blocks, max_width, acts, losses, dtypes, allow=frozenset(OPTIONAL_KINDS),
            need=()) -> StackSpec:
    loss, options, pins = _loss_and_options(draw, losses, acts)
    outputs = _fitting(loss, options, acts)
    shape_kind = _shape_kind(draw, allow, frozenset(need))   # 0-1: an MLP, 2: a CNN (2-d or 1-d), 3: tokens
    layers: list = []
    if shape_kind == 2:
        inputs, layers = _conv_blocks(draw, max_blocks, acts, allow, frozenset(need))
        layers.append(Flatten())
        width = int(np.prod(_shape_after(inputs, layers)))
    elif shape_kind == 3:
        tokens = draw(_between(1, 6))
        inputs = (tokens,)
        embed = Embedding(draw(_between(2, 10)), draw(_between(1, 4)),
                          padding_idx=_pick(draw, (None, 0)))
        layers = [embed, Flatten()]
        width = tokens * embed.dim
    else:
        # the blocks that must hold a kind come first (a residual block first of all: it keeps
        # the input's width, drawn at least 2 for it)
        forced = sorted((k for k in need if k in _CHOICE_OF or k == "dropout"), key=lambda k: k != "residual")
        width = draw(_between(2 if "residual" in forced else 1, max(2 if forced else 1, max_width)))
        inputs = (width,)
        for b in range(draw(_between(len(forced), max(len(forced), max_blocks - 1)))):
            block, width = _dense_block(draw, width, max_width, acts, allow, forced[b] if b < len(forced) else "")
            layers += block
    layers.append(Linear(draw(_between(1, max_width))))
    out = _pick(draw, outputs)
    if out != "identity":
        layers.append(Act(out))
    return StackSpec(inputs, tuple(layers), loss, tuple(options.items()),
                     reduction=pins["reduction"] if "reduction" in pins else _pick(draw, LOSSES[loss].reductions),
                     dtype=_pick(draw, dtypes),
                     # a mutant's dropout or batch norm in training (eval: the identity, the running statistics)
                     mode="train" if {"dropout", "batchnorm"} & set(need) else _pick(draw, MODES))


def _shape_kind(draw, allow: frozenset, need: frozenset) -> int:
    """0 or 1: an MLP, 2: a CNN, 3: an embedding's tokens; the one shape that holds the kinds in
    ``need``, else drawn among those ``allow`` permits."""
    if need & _CNN_ONLY:
        return 2
    if "embedding" in need:
        return 3
    if need & _MLP_ONLY:
        return 0
    shape = draw(_between(0, 3))
    if (shape == 2 and not allow & {"conv1d", "conv2d"}) or (shape == 3 and ("embedding" not in allow or need)):
        return 0
    return shape


def check_kinds(layers: Sequence[str] | None, kinds: Sequence[str] = (), max_width: int = 8) -> frozenset:
    """The optional layer kinds a stack may hold (``layers``: None for all; linear, flatten and
    activations always), after checking that a stack can hold every kind in ``kinds``.
    Raises ValueError naming the bad part."""
    always = ("linear", "flatten", "activation")
    for what, names in (("layer kind", layers or ()), ("layer kind", kinds)):
        unknown = [n for n in names if n not in OPTIONAL_KINDS and n not in always]
        if unknown:
            raise ValueError(f"unknown {what} {shown(unknown[0])}; valid: {', '.join(always + OPTIONAL_KINDS)}")
    allow = frozenset(OPTIONAL_KINDS if layers is None else [n for n in layers if n in OPTIONAL_KINDS])
    need = frozenset(n for n in kinds if n in OPTIONAL_KINDS)
    if need - allow:
        raise ValueError(f"layer kinds: {', '.join(sorted(need - allow))} asked for but not allowed")
    shapes = [bool(need & _CNN_ONLY), "embedding" in need, bool(need & _MLP_ONLY)]
    if sum(shapes) > 1 or {"conv1d", "conv2d"} <= need or ("conv1d" in need and need & {"maxpool", "avgpool"}):
        raise ValueError(f"no drawn stack holds all of {', '.join(sorted(need))}")
    if need & {"maxpool", "avgpool"} and "conv2d" not in allow:
        raise ValueError("maxpool and avgpool are drawn in 2-d CNNs: allow conv2d too")
    if need & {"batchnorm", "groupnorm", "residual"} and max_width < 2:
        raise ValueError(f"{', '.join(sorted(need & {'batchnorm', 'groupnorm', 'residual'}))} need max_width >= 2")
    return allow


def stack_specs(*, max_blocks: int = 4, max_width: int = 8, activations: Sequence[str] | None = None,
                losses: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                kinds: Sequence[str] = (), layers: Sequence[str] | None = None):
    """Valid StackSpecs: MLPs of up to max_blocks blocks (linear, maybe batch, layer or group norm,
    an activation, maybe dropout; or a residual block), small 2-d and 1-d CNNs (_conv_blocks) then
    flatten, or an embedding's tokens then flatten; then a linear layer and an output activation
    the loss takes; train or eval mode. ``layers``: the optional layer kinds the stacks may hold
    (OPTIONAL_KINDS; None: all); ``kinds``: those each stack must hold, by construction (a filter
    would reject nearly every list of cases hypothesis draws in one example)."""
    acts, usable, dts = validate(max_depth=max_blocks, max_width=max_width, activations=activations,
                                 losses=losses, dtypes=dtypes)
    allow = check_kinds(layers, kinds, max_width)
    prob = [e for e in usable if dict(loss_entry(e)[1]).get("target", "index") != "index"]
    if prob:
        raise ValueError(f"loss {shown(prob[0])}: layer stacks take class indices (target=index); "
                         f"probability targets are drawn for dense networks only (--architectures dense)")
    specs = _stacks(max_blocks, max_width, acts, usable, dts, allow, tuple(k for k in kinds if k in OPTIONAL_KINDS))
    return specs.filter(functools.partial(_holds, tuple(kinds))) if kinds else specs


def _holds(kinds: tuple[str, ...], spec: StackSpec) -> bool:
    """Whether the stack holds a layer of every kind in ``kinds`` (residual blocks' inner ones too)."""
    def all_kinds(layers):
        for layer in layers:
            yield layer.kind
            yield from all_kinds(getattr(layer, "inner", ()))
    held = set(all_kinds(spec.layers))
    return all(kind in held for kind in kinds)


@st.composite
def _stack_cases(draw, specs, max_batch: int) -> tuple:
    spec = draw(specs)
    return spec, draw(seeds()), draw(_between(min(spec.min_batch, max_batch), max_batch))


def stack_cases(*, max_batch: int = 8, **spec_bounds):
    """(stack spec, data seed, batch) triples, batch in spec.min_batch..max_batch (batch norm in
    training mode needs 2: a case that cannot exist is never drawn)."""
    if not 2 <= max_batch <= 4096:
        raise ValueError(f"max_batch must lie in 2..4096 for stacks, got {max_batch}")
    return _stack_cases(stack_specs(**spec_bounds), max_batch)


# -- optimizers (verify train, verify check --optimizers) ------------------------------------------

# Values offered for each optimizer hyperparameter (None: the optimizer's own default, listed
# first so that shrinking goes there); lr per optimizer, around its default.
HYPER_VALUES: dict[str, tuple] = {
    "momentum": (None, 0.9, 0.5), "dampening": (None, 0.5), "nesterov": (None, True),
    "weight_decay": (None, 0.1), "maximize": (None, True), "betas": (None, (0.5, 0.9), (0.0, 0.99)),
    "eps": (None, 1e-3, 0.1), "amsgrad": (None, True), "alpha": (None, 0.9, 0.5), "centered": (None, True),
    "lr_decay": (None, 0.1), "initial_accumulator_value": (None, 0.1),
}
LR_FACTORS = (1.0, 10.0, 0.1)


def _optimizer_names(names: Sequence[str] | None, fixed: dict) -> tuple[str, ...]:
    chosen = _names("optimizer", names, OPTIMIZERS)
    for name in chosen:
        unknown = sorted(set(fixed) - set(OPTIMIZERS[name].hyper))
        if unknown:
            raise ValueError(f"{name}: unknown hyperparameter {unknown[0]!r}; valid: "
                             f"{', '.join(OPTIMIZERS[name].hyper)}")
        OPTIMIZERS[name].filled(fixed)             # the fixed values themselves are valid
    return chosen


def optimizer_specs(*, names: Sequence[str] | None = None, fixed: dict | None = None):
    """OptimizerSpecs over ``names`` (default: every registered optimizer), each hyperparameter
    drawn from HYPER_VALUES (lr from its default times LR_FACTORS) unless ``fixed`` gives it;
    shrinking goes to the defaults. SGD's nesterov is kept only where it is valid (momentum > 0,
    dampening 0); where ``fixed`` asks for it, the drawn momentum and dampening make way."""
    fixed = dict(fixed or {})
    chosen = _optimizer_names(names, fixed)

    @st.composite
    def draw_one(draw):
        name = _pick(draw, chosen)
        defaults = OPTIMIZERS[name].hyper
        hyper: dict = {}
        for key, default in defaults.items():
            if key in fixed:
                hyper[key] = fixed[key]
            elif key == "lr":
                hyper[key] = default * _pick(draw, LR_FACTORS)
            else:
                value = _pick(draw, HYPER_VALUES.get(key, (None,)))
                if value is not None:
                    hyper[key] = value
        if hyper.get("nesterov") and "nesterov" in fixed:       # the drawn ones give way to it
            if "dampening" not in fixed:
                hyper.pop("dampening", None)
            if "momentum" not in fixed and hyper.get("momentum", 0) <= 0:
                hyper["momentum"] = HYPER_VALUES["momentum"][1]
        elif hyper.get("nesterov") and (hyper.get("momentum", 0) <= 0 or hyper.get("dampening", 0) != 0):
            hyper.pop("nesterov")
        return OptimizerSpec(name, tuple((k, v) for k, v in hyper.items() if v != defaults[k]))

    return draw_one()
