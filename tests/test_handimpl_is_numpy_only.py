import ast
import pathlib
import subprocess
import sys

import handimpl

PACKAGE = pathlib.Path(handimpl.__file__).parent


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_handimpl_source_file_imports_torch_or_verify():
    imports = {p.name: _imported_modules(p) & {"torch", "verify"} for p in PACKAGE.rglob("*.py")}
    assert {name: mods for name, mods in imports.items() if mods} == {}
    assert "network.py" in imports                    # the scan did look at the package


def test_importing_handimpl_and_running_backprop_loads_no_torch():
    code = (
        "import sys, types, numpy as np, handimpl\n"
        "spec = types.SimpleNamespace(widths=(2, 2, 1), activations=('sigmoid', 'sigmoid'),"
        " loss='quadratic', loss_kwargs={'reduction': 'mean'}, bias=True, dtype='float64')\n"
        "p = handimpl.init_params(spec.widths)\n"
        "handimpl.backprop(spec, p, np.ones((3, 2)), np.zeros((3, 1)))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
