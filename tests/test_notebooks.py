"""The example notebooks (docs/notebooks) run, and show what their committed outputs show.

Each is executed by nbclient in a fresh kernel. In the environment that made the committed outputs
(the README's: its Python, hypothesis, numpy, pandas and torch, recorded in each notebook), every
code cell's outputs must equal the committed ones apart from what varies from run to run
(tests/notebook_outputs.py: durations, addresses, temporary paths, a warning's wording). Elsewhere
(the oldest-versions job, the matrix) hypothesis draws other cases for the same seed, so the cells
must give outputs of the same kinds, and none may raise. After changing a notebook, or what it
shows, `python tests/notebook_outputs.py` rewrites the outputs."""
from __future__ import annotations

import nbformat
import pytest
from notebook_outputs import NOTEBOOKS, environment, execute, kinds, made_with, outputs

TOPICS = {"checking-your-own-backprop", "why-delta-matches-autograd", "reading-a-report"}


def test_the_three_example_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == TOPICS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executing_a_notebook_gives_its_committed_outputs(path):
    book = nbformat.read(path, as_version=4)
    committed = outputs(book)
    assert any(committed) and made_with(book), f"{path.name} was committed without its outputs"
    ran = execute(path)
    if made_with(book) != environment():
        assert kinds(ran) == kinds(book), f"{path.name}: the cells' outputs are not of the committed kinds"
        return
    fresh = outputs(ran)
    for i, (was, now) in enumerate(zip(committed, fresh)):
        assert now == was, f"{path.name}, code cell {i}: the output changed; run python tests/notebook_outputs.py"
    assert len(fresh) == len(committed)
