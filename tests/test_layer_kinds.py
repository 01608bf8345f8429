"""Convolution, pooling and embedding layers (handimpl.layers) against torch's modules and
autograd, each within its own a priori error bound; tie-breaking, overlap, repeated indices;
and the zoo's layer mutants (verify.mutants.zoo) and one planted bug, which the same comparison catches."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies_numeric import DTYPES, agree, f64

from handimpl.layers import AvgPool2d, Context, Conv1d, Conv2d, Embedding, MaxPool2d
from verify.core.bounds import underflow
from verify.core.compare import UNIT_ROUNDOFF
from verify.mutants.run import mutated_layers

# -- drawing cases: (layer, per-example input shape, batch) --------------------------------------

small, stride, padding, dilation = st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)


def _fitting(draw, k, d, p):
    """A side (up to 8) that the dilated kernel fits once padded."""
    return draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 8))


@st.composite
def conv2d_cases(draw):
    k, s, p, d = [(draw(g), draw(g)) for g in (small, stride, padding, dilation)]
    layer = Conv2d(draw(st.integers(1, 4)), k, s, p, d, bias=draw(st.booleans()))
    shape = (draw(st.integers(1, 4)), _fitting(draw, k[0], d[0], p[0]), _fitting(draw, k[1], d[1], p[1]))
    return layer, shape


@st.composite
def conv1d_cases(draw):
    k, s, p, d = draw(small), draw(stride), draw(padding), draw(dilation)
    layer = Conv1d(draw(st.integers(1, 4)), k, s, p, d, bias=draw(st.booleans()))
    return layer, (draw(st.integers(1, 4)), _fitting(draw, k, d, p))


@st.composite
def maxpool_cases(draw):
    """Max pooling with padding (up to half the kernel, torch's limit) and dilation; a shape whose
    window would read padding alone is refused by out_shape and not drawn."""
    k = (draw(small), draw(small))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(dilation), draw(dilation))
    layer = MaxPool2d(k, draw(st.none() | st.tuples(stride, stride)), p, d)
    shape = (draw(st.integers(1, 4)), _fitting(draw, k[0], d[0], p[0]), _fitting(draw, k[1], d[1], p[1]))
    try:
        layer.out_shape(shape)
    except ValueError:
        assume(False)
    return layer, shape


@st.composite
def avgpool_cases(draw):
    k = (draw(small), draw(small))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    layer = AvgPool2d(k, draw(st.none() | st.tuples(stride, stride)), p)
    return layer, (draw(st.integers(1, 4)), _fitting(draw, k[0], 1, p[0]), _fitting(draw, k[1], 1, p[1]))


@st.composite
def embedding_cases(draw):
    num = draw(st.integers(1, 6))
    layer = Embedding(num, draw(st.integers(1, 4)), draw(st.none() | st.integers(0, num - 1)))
    return layer, (draw(st.integers(1, 5)),)


CASES = {"conv1d": conv1d_cases(), "conv2d": conv2d_cases(), "maxpool": maxpool_cases(),
         "avgpool": avgpool_cases(), "embedding": embedding_cases()}
STYLES = ("normal", "small integers", "wide")


def _array(rng, shape, style, dtype):
    """normal; small integers (exact ties and zeros); or normal times 10^U(−3, 3) per element."""
    if style == "small integers":
        v = rng.integers(-2, 3, shape).astype(np.float64)
    else:
        v = rng.standard_normal(shape) * (10.0 ** rng.uniform(-3, 3, shape) if style == "wide" else 1.0)
    return v.astype(dtype)


def draw_case(data, kind, dtype):
    layer, in_shape = data.draw(CASES[kind], label="layer, in_shape")
    m, seed = data.draw(st.integers(1, 4), label="m"), data.draw(st.integers(0, 2**32 - 1), label="seed")
    style, dy_style = data.draw(st.sampled_from(STYLES)), data.draw(st.sampled_from(STYLES))
    return example(layer, in_shape, m, seed, style, dy_style, dtype)


def example(layer, in_shape, m, seed, style, dy_style, dtype):
    rng = np.random.default_rng(seed)
    p = layer.init(in_shape, rng, dtype)
    if isinstance(layer, Embedding):
        x = rng.integers(0, layer.num, (m,) + in_shape)
    else:
        x = _array(rng, (m,) + in_shape, style, dtype)
    dy = _array(rng, (m,) + layer.out_shape(in_shape), dy_style, dtype)
    return layer, in_shape, x, p, dy


# -- both sides ---------------------------------------------------------------------------------

def torch_twin(layer, in_shape, p, dtype):
    name, kwargs = layer.torch_module(in_shape)
    module = getattr(torch.nn, name)(**kwargs).to(getattr(torch, dtype))
    with torch.no_grad():
        for key in layer.param_names:
            getattr(module, layer.torch_names[key]).copy_(torch.from_numpy(p[key]))
    return module


def torch_side(layer, in_shape, x, p, dy, dtype):
    """(y, ∂J/∂x or None, {param: grad}) from torch's module and autograd."""
    module = torch_twin(layer, in_shape, p, dtype)
    xt = torch.from_numpy(x.copy())
    if xt.is_floating_point():
        xt.requires_grad_(True)
    y = module(xt)
    y.backward(torch.from_numpy(dy))
    grads = {key: getattr(module, layer.torch_names[key]).grad.numpy() for key in layer.param_names}
    return y.detach().numpy(), (xt.grad.numpy() if xt.requires_grad else None), grads


def bounds(layer, x, p, dy, dtype):
    """The layer's error model with E_x = 0 and E_dy = 0, in float64 on the case's values."""
    u, tiny = UNIT_ROUNDOFF[dtype], underflow(dtype)
    x64 = x if not np.issubdtype(x.dtype, np.floating) else f64(x)
    p64 = {key: f64(v) for key, v in p.items()}
    zero = np.zeros(x.shape)
    Ey = layer.forward_error(x64, zero, p64, u, tiny)
    Edx, Egrads = layer.backward_error(x64, zero, p64, f64(dy), np.zeros(dy.shape), u, tiny)
    return Ey, Edx, Egrads


def hand_backward(layer, x, p, dy):
    return layer.backward(dy, layer.forward(x, p, Context())[1])


def check_backward(layer, in_shape, x, p, dy, dtype, backward=hand_backward):
    _, tdx, tgrads = torch_side(layer, in_shape, x, p, dy, dtype)
    _, Edx, Egrads = bounds(layer, x, p, dy, dtype)
    dx, grads = backward(layer, x, p, dy)
    assert (dx is None) == (tdx is None) and set(grads) == set(layer.param_names)
    if dx is not None:
        assert dx.shape == x.shape and dx.dtype == x.dtype
        agree("dx", dx, tdx, dtype, Edx)
    for key in layer.param_names:
        assert grads[key].dtype == p[key].dtype
        agree(f"d{key}", grads[key], tgrads[key], dtype, Egrads[key])


# -- the properties -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(CASES))
@given(data=st.data())
def test_forward_matches_torchs_module_within_the_layers_own_bound(kind, dtype, data):
    layer, in_shape, x, p, dy = draw_case(data, kind, dtype)
    y, _ = layer.forward(x, p, Context())
    ty, _, _ = torch_side(layer, in_shape, x, p, dy, dtype)
    assert y.shape == (x.shape[0],) + layer.out_shape(in_shape) == ty.shape and y.dtype == np.dtype(dtype)
    agree("y", y, ty, dtype, bounds(layer, x, p, dy, dtype)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(CASES))
@given(data=st.data())
def test_backward_matches_torch_autograd_within_the_layers_own_bound(kind, dtype, data):
    check_backward(*draw_case(data, kind, dtype), dtype)


@pytest.mark.parametrize("kind", list(CASES))
@given(data=st.data())
def test_the_error_model_bounds_how_far_each_result_moves_while_x_and_dy_move_within_their_bounds(kind, data):
    """What the verdict assumes of each layer: with x off by up to E_x and dy by up to E_dy
    (ends of the intervals included: near-ties in a max window reversed), y, ∂J/∂x and each
    parameter gradient move by no more than their bounds (twice: both are float64 evaluations),
    plus a few units of roundoff of the values compared."""
    layer, in_shape, x, p, dy = draw_case(data, kind, "float64")
    relative = st.sampled_from([0.0, 1e-12, 1e-8, 1e-4, 1e-2])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    moves = [-1.0, 0.0, 1.0, rng.uniform(-1, 1)]
    floating = np.issubdtype(x.dtype, np.floating)
    Ex = data.draw(relative) * (np.abs(x) + 1) if floating else np.zeros(x.shape)
    Edy = data.draw(relative) * (np.abs(dy) + 1)
    x2 = x + Ex * rng.choice(moves, x.shape) if floating else x
    dy2 = dy + Edy * rng.choice(moves, dy.shape)
    u, tiny = UNIT_ROUNDOFF["float64"], underflow("float64")
    Ey = layer.forward_error(x, Ex, p, u, tiny)
    Edx, Egrads = layer.backward_error(x, Ex, p, dy, Edy, u, tiny)
    (dx, grads), (dx2, grads2) = hand_backward(layer, x, p, dy), hand_backward(layer, x2, p, dy2)
    pairs = [("y", layer.forward(x, p, Context())[0], layer.forward(x2, p, Context())[0], Ey)]
    pairs += [("dx", dx, dx2, Edx)] if floating else []
    pairs += [(f"d{key}", grads[key], grads2[key], Egrads[key]) for key in layer.param_names]
    for name, old, new, bound in pairs:
        assert bound.shape == old.shape, name
        slack = 4 * u * (np.abs(old) + np.abs(new) + bound) + 2 * tiny
        assert (np.abs(new - old) <= 2 * bound + slack).all(), name


def test_max_pool_allows_either_route_only_where_values_lie_within_each_others_error_intervals():
    layer, x = MaxPool2d((1, 3)), np.array([[[[1.0, 1.0 + 1e-3, 0.5]]]])
    dy, u = np.array([[[[2.0]]]]), UNIT_ROUNDOFF["float64"]
    wide, _ = layer.backward_error(x, np.full(x.shape, 1e-3), {}, dy, np.zeros(dy.shape), u, 0.0)
    assert (wide[..., :2] >= 2.0).all() and wide[..., 2] == 0     # 1 and 1.001 may swap; 0.5 never wins
    narrow, _ = layer.backward_error(x, np.full(x.shape, 1e-4), {}, dy, np.zeros(dy.shape), u, 0.0)
    assert (narrow < 1e-12).all()                                  # clearly apart: no route excused
    tie, _ = layer.backward_error(np.ones((1, 1, 1, 3)), np.zeros(x.shape), {}, dy, np.zeros(dy.shape), u, 0.0)
    assert (tie == 0).all()                                        # an exact tie with E_x = 0: torch's route only


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_max_pool_routes_an_exact_tie_to_the_first_element_in_row_major_order_exactly_as_torch(dtype, data):
    layer, in_shape = data.draw(maxpool_cases())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 2, (data.draw(st.integers(1, 3)),) + in_shape).astype(dtype)   # ties in most windows
    dy = rng.integers(1, 4, (x.shape[0],) + layer.out_shape(in_shape)).astype(dtype)  # sums exact
    _, tdx, _ = torch_side(layer, in_shape, x, {}, dy, dtype)
    np.testing.assert_array_equal(hand_backward(layer, x, {}, dy)[0], tdx)


def test_max_pool_gives_a_window_of_equal_values_gradient_at_its_top_left_only():
    dx, _ = hand_backward(MaxPool2d(2), np.ones((1, 1, 2, 2)), {}, np.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_overlapping_max_pool_windows_accumulate_at_an_element_that_wins_several():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9.0                                   # the centre wins all four 2x2 windows
    layer, dy = MaxPool2d(2, 1), np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, _ = hand_backward(layer, x, {}, dy)
    _, tdx, _ = torch_side(layer, (1, 3, 3), x, {}, dy, "float64")
    assert dx[0, 0, 1, 1] == 10.0 and np.count_nonzero(dx) == 1
    np.testing.assert_array_equal(dx, tdx)


def test_embedding_accumulates_repeated_indices_and_gives_the_padding_row_no_gradient():
    layer = Embedding(4, 2, padding_idx=3)
    x = np.array([[1, 1, 3], [1, 0, 3]])
    p = layer.init((3,), np.random.default_rng(0), "float64")
    dy = np.arange(12, dtype=np.float64).reshape(2, 3, 2) + 1
    _, grads = hand_backward(layer, x, p, dy)
    _, _, tgrads = torch_side(layer, (3,), x, p, dy, "float64")
    np.testing.assert_array_equal(grads["W"], [dy[1, 1], dy[0, 0] + dy[0, 1] + dy[1, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(grads["W"], tgrads["W"])
    assert (p["W"][3] == 0).all()


@pytest.mark.parametrize("layer, in_shape", [
    (Conv2d(2, 3), (1, 2, 5)),                            # kernel 3 over a side of 2
    (Conv2d(2, 2, dilation=2), (1, 2, 2)),                # dilated kernel spans 3
    (Conv2d(2, 3), (4, 4)),                               # not (C, H, W)
    (Conv1d(2, 5, padding=1), (1, 2)),
    (Conv1d(2, 1), (1, 4, 4)),
    (MaxPool2d((3, 1)), (1, 2, 4)),
    (MaxPool2d(2, 1, 1, 3), (1, 2, 2)),                   # window 0 reads rows −1 and 2 of 2: padding alone
    (MaxPool2d(3, dilation=2), (1, 4, 8)),                # dilated kernel spans 5
    (AvgPool2d(3, padding=1), (1, 4, 0)),
    (AvgPool2d(2), (8,)),
    (Embedding(3, 2), (2, 2)),
])
def test_out_shape_refuses_a_shape_the_layer_cannot_take_in_one_line(layer, in_shape):
    with pytest.raises(ValueError) as refused:
        layer.out_shape(in_shape)
    assert "\n" not in str(refused.value) and str(refused.value)


@pytest.mark.parametrize("make", [lambda: AvgPool2d(2, padding=2), lambda: MaxPool2d(0),
                                  lambda: MaxPool2d(2, padding=2), lambda: MaxPool2d(2, dilation=0),
                                  lambda: Conv2d(2, 3, stride=0), lambda: Embedding(3, 2, padding_idx=3)])
def test_a_configuration_no_input_can_take_is_refused_in_one_line(make):
    with pytest.raises(ValueError) as refused:
        make()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("layer, text", [
    (Conv2d(4, (3, 2), padding=1), "conv2d:4,k3x2,p1"),
    (Conv2d(4, 3, stride=(2, 1), dilation=2, bias=False), "conv2d:4,k3,s2x1,d2,nobias"),
    (Conv1d(3, 3, stride=2, padding=1, dilation=2), "conv1d:3,k3,s2,p1,d2"),
    (MaxPool2d(2), "maxpool:2"), (MaxPool2d((2, 3), (1, 2)), "maxpool:2x3,s1x2"),
    (MaxPool2d(3, 2, 1, 2), "maxpool:3,s2,p1,d2"), (MaxPool2d((2, 3), padding=(0, 1)), "maxpool:2x3,p0x1"),
    (AvgPool2d(3, 2, 1), "avgpool:3,s2,p1"), (Embedding(10, 4, padding_idx=0), "embedding:10,4,pad=0"),
])
def test_spec_writes_the_layer_in_the_stack_grammar_omitting_defaults(layer, text):
    assert layer.spec() == text


@pytest.mark.parametrize("layer, in_shape", [(Conv2d(3, (3, 2), 2, 1), (2, 6, 5)), (Conv1d(3, 3), (2, 7))])
def test_init_draws_as_torchs_default_uniform_within_one_over_root_fan_in(layer, in_shape):
    p = layer.init(in_shape, np.random.default_rng(0), "float64")
    module = torch_twin(layer, in_shape, p, "float64")
    fan_in = int(np.prod(p["W"].shape[1:]))
    module.reset_parameters()                             # torch's own default draw
    assert p["W"].shape == tuple(module.weight.shape) and p["b"].shape == tuple(module.bias.shape)
    for ours, theirs in ((p["W"], module.weight), (p["b"], module.bias)):
        assert np.abs(ours).max() <= fan_in**-0.5 and theirs.abs().max().item() <= fan_in**-0.5


# -- bugs: the zoo's mutants and one planted here, each caught by the same comparison -------------

def zoo(name):
    """The backward of the zoo mutant ``name`` (verify.mutants.zoo: one line of handimpl/layers
    changed), on one layer: the layer's class swapped for the mutated module's."""
    def backward(layer, x, p, dy):
        mutated = copy.copy(layer)
        mutated.__class__ = mutated_layers(name)[type(layer).__name__]
        return hand_backward(mutated, x, p, dy)
    backward.__name__ = name
    return backward


def avgpool_not_divided(layer, x, p, dy):
    """dy spread over the window without the 1/(kh·kw)."""
    dx, _ = hand_backward(layer, x, p, dy)
    return dx * layer.size, {}


BUGS = [
    (zoo("conv_kernel_not_flipped"), Conv2d(2, (3, 2), stride=2, padding=1), (2, 6, 5), "normal"),
    (zoo("conv_kernel_not_flipped"), Conv1d(2, 3, dilation=2), (2, 8), "normal"),
    (zoo("conv_padding_ignored_in_backward"), Conv2d(2, (3, 2), stride=2, padding=1), (2, 6, 5), "normal"),
    (zoo("conv_padding_ignored_in_backward"), Conv1d(2, 3, padding=2), (2, 6), "normal"),
    (zoo("conv_stride_ignored_in_dW"), Conv2d(2, (3, 2), stride=2, padding=1), (2, 6, 5), "normal"),
    (zoo("conv_stride_ignored_in_dW"), Conv1d(2, 2, stride=3), (1, 8), "normal"),
    (zoo("maxpool_gradient_to_whole_window"), MaxPool2d(2), (2, 4, 4), "normal"),
    (zoo("maxpool_gradient_to_whole_window"), MaxPool2d(3, 1), (1, 5, 5), "normal"),
    (zoo("maxpool_gradient_to_every_tied_element"), MaxPool2d(2, 1), (2, 4, 4), "small integers"),
    (zoo("embedding_rows_overwritten"), Embedding(3, 2, padding_idx=0), (6,), "normal"),
    (avgpool_not_divided, AvgPool2d(2, 1, 1), (1, 4, 4), "normal"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug, layer, in_shape, style", BUGS, ids=[f"{b[0].__name__}-{b[1].spec()}" for b in BUGS])
def test_a_planted_bug_fails_the_comparison_that_the_correct_backward_passes(bug, layer, in_shape, style, dtype):
    case = example(layer, in_shape, 2, 0, style, "normal", dtype)
    check_backward(*case, dtype)
    with pytest.raises(AssertionError):
        check_backward(*case, dtype, backward=bug)


def float32_results(layer, x, p, dy):
    """Every gradient computed right, then held in float32: float32-level precision in a float64 case."""
    dx, grads = hand_backward(layer, x, p, dy)
    return dx.astype(np.float32).astype(np.float64), {key: g.astype(np.float32).astype(np.float64)
                                                      for key, g in grads.items()}


@pytest.mark.parametrize("layer, in_shape", [(Conv2d(2, (3, 2), stride=2, padding=1), (2, 6, 5)),
                                             (Conv1d(2, 3, dilation=2), (2, 8)), (AvgPool2d(3, 1, 1), (2, 4, 4))])
def test_float32_precision_in_a_float64_case_fails_the_same_comparison(layer, in_shape):
    case = example(layer, in_shape, 2, 0, "normal", "normal", "float64")
    check_backward(*case, "float64")
    with pytest.raises(AssertionError):
        check_backward(*case, "float64", backward=float32_results)
