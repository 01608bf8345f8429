"""verify explain for layers: a stack spec's page in every format, batch norm's compact and graph
forms, max pooling's routing, convolution's full-convolution dx, one layer's page on given arrays,
the link from a failing `verify layers` card, and the callable verify.explain for a notebook.

Every number a test reads off a page is compared with torch's autograd, computed here
independently of verify.explain."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
import torch

from verify.cli.app import main
from verify.explain.layers import explain_layer, explain_stack
from verify.explain.steps import fmt_number
from verify.layers.report import write_layer_reports
from verify.layers.run import check_layers, load_module

FIXTURES = Path(__file__).parent / "fixtures"
STACK = "1x5x4>conv2d:2,k3,p1>batchnorm>relu>maxpool:2,s1,p1>flatten>dropout:0.25>linear:3|cross_entropy"


def step(ex, formula_start: str):
    (found,) = [s for s in ex.all_steps() if s.formula.startswith(formula_start)]
    return found


def value(ex, formula_start: str, label: str) -> np.ndarray:
    return np.asarray(dict(step(ex, formula_start).values)[label])


def torch_grads(module: torch.nn.Module, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict]:
    X = torch.from_numpy(x.copy()).requires_grad_(True)
    module(X).backward(torch.from_numpy(dy))
    return X.grad.numpy(), {k: v.grad.numpy() for k, v in module.named_parameters()}


# -- batch norm ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 3)])
def test_batch_norms_three_compact_terms_sum_to_torchs_dx_and_so_do_the_graph_forms_paths(shape):
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    C = shape[1]
    p = {"gamma": rng.uniform(0.5, 1.5, C), "beta": rng.uniform(-0.5, 0.5, C),
         "running_mean": np.zeros(C), "running_var": np.ones(C)}
    ex = explain_layer("batchnorm", x, p, dy)
    bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(C).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(p["gamma"]))
        bn.bias.copy_(torch.from_numpy(p["beta"]))
    dx, grads = torch_grads(bn, x, dy)
    terms = [value(ex, f"term {i},", f"term {i}") for i in (1, 2, 3)]
    assert all(t.shape == x.shape for t in terms)
    np.testing.assert_allclose(sum(terms), dx, rtol=0, atol=1e-12)
    paths = [value(ex, "direct path", "direct"), value(ex, "through μ", "via μ"), value(ex, "through σ²", "via σ²")]
    for path, term in zip(paths, terms):
        np.testing.assert_allclose(path, term, rtol=0, atol=1e-12)
    np.testing.assert_allclose(value(ex, "the graph form's dx", "graph form"), dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(value(ex, "∂J/∂γ", "torch"), grads["weight"], rtol=0, atol=0)


def test_batch_norm_names_the_node_that_made_its_output_whatever_torch_calls_it():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2))
    bn = torch.nn.BatchNorm1d(2).double()
    node = type(bn(torch.from_numpy(x).requires_grad_(True)).grad_fn).__name__
    ex = explain_layer("batchnorm", x, {"gamma": np.ones(2), "beta": np.zeros(2)}, np.ones((3, 2)))
    assert step(ex, "the nodes torch built").nodes[0] == node
    assert step(ex, "The compact form").nodes[0].startswith(node)


def test_batch_norm_in_eval_mode_shows_the_affine_map_dy_gamma_over_sigma_run():
    x, dy = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.5, 1.0], [2.0, -1.0]])
    p = {"gamma": np.array([2.0, 0.5]), "beta": np.zeros(2), "running_mean": np.array([1.0, 0.0]),
         "running_var": np.array([4.0, 1.0])}
    ex = explain_layer("batchnorm", x, p, dy, training=False)
    np.testing.assert_allclose(value(ex, "eval mode", "dy·γ/σ_run"), dy * p["gamma"] / np.sqrt(p["running_var"] + 1e-5))


# -- max pooling --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, x", [
    ("maxpool:2", [[3.0, 5.0], [5.0, 1.0]]),                      # 5 twice: x[0, 1] comes first
    ("maxpool:3,s1,p1", [[1.0, 1.0], [1.0, 1.0]]),              # every window a tie of four, padding around
    ("maxpool:2,s1,d2", [[2.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 2.0]]),   # a dilated window of four 2s
])
def test_max_pool_routing_names_torchs_winner_on_a_tie(kind, x):
    x = np.array(x)[None, None]
    layer_args = dict(re.findall(r"([spd])(\d)", kind.partition(",")[2]))
    k = int(kind.split(":")[1].split(",")[0])
    s, p, d = int(layer_args.get("s", k)), int(layer_args.get("p", 0)), int(layer_args.get("d", 1))
    _, index = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, d, return_indices=True)
    dy = np.arange(1.0, index.numel() + 1).reshape(index.shape)
    ex = explain_layer(kind, x, {}, dy)
    routing = step(ex, "routing")
    assert len(routing.lines) == index.numel()
    W = x.shape[3]
    for line, i in zip(routing.lines, index.numpy().reshape(-1)):
        h, w = divmod(int(i), W)
        assert f"= x[0,0,{h},{w}] =" in line and line.endswith(f"torch's index: x[0,0,{h},{w}]")
    assert "a tie" in routing.lines[0]
    dx, _ = torch_grads(torch.nn.MaxPool2d(k, s, p, d), x, dy)
    np.testing.assert_array_equal(value(ex, "∂J/∂x_e", "torch"), dx)
    np.testing.assert_array_equal(value(ex, "∂J/∂x_e", "hand"), dx)


# -- convolution --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, in_shape", [("conv2d:2,k2x3,p1", (2, 4, 5)), ("conv2d:3,k2,s2,d2,nobias", (1, 6, 5)),
                                            ("conv1d:2,k3,s2,p1", (2, 7))])
def test_convolutions_dx_as_a_full_convolution_with_the_flipped_kernel_equals_torchs(kind, in_shape):
    from verify.core.stack import parse_layer
    from verify.core.stack_twin import torch_layer
    layer = parse_layer(kind)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *in_shape))
    p = layer.init(in_shape, rng, "float64")
    dy = rng.standard_normal((2, *layer.out_shape(in_shape)))
    ex = explain_layer(layer, x, p, dy)
    dx, grads = torch_grads(torch_layer(layer, in_shape, p, torch.float64), x, dy)
    np.testing.assert_allclose(value(ex, "∂J/∂x̄ = spread", "full conv"), dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(value(ex, "∂J/∂W[", "x̄ ⋆ dy"), grads["weight"], rtol=0, atol=1e-12)
    assert value(ex, "the kernel flipped", "flipped").shape[:2] == p["W"].shape[1::-1]


# -- the stack page, the command ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "md", "html"])
def test_explain_walks_a_stack_spec_layer_by_layer_in_every_format(tmp_path, fmt):
    out = tmp_path / f"page.{fmt}"
    assert main(["explain", STACK, "--format", fmt, "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for i, kind in enumerate(["conv2d:2,k3,p1", "batchnorm", "relu", "maxpool:2,s1,p1", "flatten", "dropout:0.25",
                              "linear:3"], start=1):
        assert f"Layer {i} of 7: {kind}" in page
    for part in ("term 1, the direct path", "routing: each window", "a full convolution of dy with W"):
        assert part in page
    if fmt == "html":
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_the_stack_graph_files_each_layers_node_by_the_tensor_it_produces():
    ex = explain_stack("3>linear:4>batchnorm>tanh>linear:2|mse_loss", seed=0)
    model_nodes = step(ex, "J.grad_fn").nodes
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.nn.Linear(3, 4).double()(x)
    names = [type(h.grad_fn).__name__]
    for module in (torch.nn.BatchNorm1d(4).double(), torch.nn.Tanh()):
        h = module(h)
        names.append(type(h.grad_fn).__name__)
    for i, name in zip((1, 2, 3), names):
        (line,) = [n for n in model_nodes if n.startswith(f"layer {i} ")]
        assert line.split(": ", 1)[1].startswith(name)


@pytest.mark.parametrize("spec, says", [("4>linear:3>batchnrm|cross_entropy", "unknown layer 'batchnrm'"),
                                        ("1x2x2>maxpool:2,p2>flatten|mse_loss", "more than half the kernel"),
                                        ("1x2x2>maxpool:2,s1,p1,d3>flatten|mse_loss", "reads padding only")])
def test_a_bad_stack_spec_is_one_line(spec, says, capsys):
    assert main(["explain", spec]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


# -- verify layers links each failing card to its page ---------------------------------------------------

def test_a_failing_verify_layers_card_links_an_explain_page_that_exists(tmp_path):
    sys.path.insert(0, str(FIXTURES))
    try:
        import cs231n_bugs
    finally:
        sys.path.remove(str(FIXTURES))
    good = load_module(str(FIXTURES / "cs231n_vectorised.py"))
    module = types.ModuleType("user_layers")
    module.__dict__.update({k: v for k, v in vars(good).items() if not k.startswith("__")})
    module.__dict__.update(cs231n_bugs.BUGS["batchnorm"])
    result = check_layers(module, only=["batchnorm"], examples=20)
    paths = write_layer_reports(result, tmp_path / "rep", gradescope=True)
    html = paths["html"].read_text()
    assert 'href="explain/batchnorm.html"' in html
    page = (tmp_path / "rep" / "explain" / "batchnorm.html").read_text()
    assert "term 1, the direct path" in page and "The graph form" in page
    case = result.pairs[0].minimal.case
    assert html_escape(case.describe()) in page
    mu = fmt_number(case.arrays["x"].mean(axis=0)[0])                # opened on the case's own numbers
    assert re.search(rf"μ +{re.escape(mu)}\b", page)
    assert "batchnorm_backward_alt" not in " ".join(p.name for p in (tmp_path / "rep" / "explain").iterdir())
    tests = json.loads(paths["gradescope"].read_text())["tests"]
    (failing,) = [t for t in tests if t["score"] == 0]
    assert "explain: explain/batchnorm.html" in failing["output"] and "verify explain '" in failing["output"]


# -- the callable package, for a notebook ----------------------------------------------------------------

def test_verify_explain_is_callable_and_returns_a_page_a_notebook_renders_inline():
    import verify
    page = verify.explain("3>linear:2>batchnorm>linear:2|mse_loss")
    assert page._repr_html_().startswith('<div class="verify-explain">')
    assert verify.explain("tutorial", format="md").startswith("# The tutorial's example")


def test_importing_verify_and_reading_verify_explain_imports_no_torch():
    code = "import sys, verify; verify.explain; import verify.explain; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
