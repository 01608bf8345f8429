"""verify run --scheduler: blocks of cases on a Dask cluster (a LocalCluster here), merged in
block order into the output of one process; a block whose worker keeps dying is lost as failing
rows; without dask installed, one line says what to install."""
from __future__ import annotations

import os
import sys

import pytest

from verify.cli.app import main
from verify.harness.trace import check
from verify.report.frames import FILES
from verify.sweep import distributed as engine
from verify.sweep.run import sweep

CSVS = ("discrepancies", "cases", "summary")
SMALL = ["--examples", "24", "--seed", "7", "--max-depth", "2", "--max-width", "4", "--max-batch", "4"]


def test_a_sweep_on_a_local_cluster_writes_the_csvs_of_one_process(tmp_path):
    pytest.importorskip("distributed")
    assert main(["run", *SMALL, "--out", str(tmp_path / "one")]) == 0
    assert main(["run", *SMALL, "--scheduler", "local:2", "--out", str(tmp_path / "dask")]) == 0
    for kind in CSVS:
        name = FILES[kind]
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def ends_its_process_on_batch_3(spec, seed, batch):
    """A check whose process ends on cases of batch 3: the worker dies on every retry."""
    if batch == 3:
        os._exit(3)
    return check(spec, seed=seed, batch=batch)


def test_a_block_whose_worker_dies_on_every_retry_is_lost_as_failing_results(monkeypatch):
    distributed = pytest.importorskip("distributed")
    import cloudpickle
    import dask
    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # the workers cannot import tests/
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        result = sweep(examples=16, seed=2, max_depth=2, max_width=3, max_batch=4, max_shrunk=0,
                       check_fn=ends_its_process_on_batch_3, scheduler="local:1")
    assert distributed is not None and result.blocks_lost
    lost = [r for r in result.results if r.error.startswith(engine.LOST)]
    assert lost and result.n_cases == 16 and all(not r.passed for r in lost)


def test_without_dask_the_scheduler_option_is_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["run", *SMALL, "--scheduler", "local:2"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'backprop-verify[dask]'" in err and len(err.strip().splitlines()) == 1


def test_a_scheduler_that_is_not_an_address_is_refused():
    with pytest.raises(ValueError, match="local:N"):
        engine.check_scheduler("localhost")
