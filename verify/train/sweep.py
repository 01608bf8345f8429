"""`verify run --optimizers sgd,adam`: each drawn case also draws an optimizer and its
hyperparameters (verify.sweep.strategies.cases(optimizers=...)); the case is checked as ever
(verify.check: one pass and one SGD step), then handimpl.optim's optimizer is trained
SWEEP_STEPS steps against torch.optim on the case's data, each step judged from torch's exact
state (verify.train.run, the one-step comparison). Its records join the case's, under the
quantities 'optimizer:loss', 'optimizer:param', 'optimizer:state' and 'optimizer:buffer', so that
a sweep's reports, shrinking and repro lines take them as any other."""
from __future__ import annotations

import dataclasses

from verify.core.compare import Comparison, split_name
from verify.core.optim_spec import OptimizerSpec
from verify.harness import trace
from verify.harness.trace import OPTIMIZER, TRAINING_FAILED, CaseResult
from verify.train.run import ONE_STEP, STEP, TrainResult, train
from verify.train.search import SEARCH_STEPS

SWEEP_STEPS = SEARCH_STEPS    # an update's bugs show at its first or second step (a buffer needs one)


def _layer(tensor: str) -> int | None:
    """The layer of a trained tensor: 'W1' -> 1, 'W3.1.exp_avg' -> 3, 'loss' -> None."""
    head, _, last = tensor.rpartition(".")
    return split_name(head if head and not last.isdigit() else tensor)[1]


def training_records(trained: TrainResult) -> tuple[Comparison, ...]:
    """The one-step records of a training (and a step call's failure in either check), named
    'adam step 2: W1.exp_avg', with the quantity 'optimizer:KIND' and the tensor's layer."""
    name = trained.optimizer.name
    return tuple(dataclasses.replace(r, name=f"{name} step {t}: {r.name}", quantity=OPTIMIZER + kind,
                                     layer=_layer(r.name))
                 for t, check, kind, r in trained.records if check == ONE_STEP or r.name == STEP)


def check_trained(spec, seed: int, batch: int, optimizer: OptimizerSpec | str, *, strict: bool = False,
                  steps: int = SWEEP_STEPS) -> CaseResult:
    """verify.check of the case, then ``optimizer`` (handimpl.optim's) trained ``steps`` steps on
    its data against torch.optim, judged one step at a time from torch's state; one CaseResult."""
    optimizer = OptimizerSpec.parse(optimizer) if isinstance(optimizer, str) else optimizer
    result = trace.check(spec, seed=seed, batch=batch, strict=strict)
    result = dataclasses.replace(result, optimizer=str(optimizer))
    if result.error:
        return result
    trained = train(result.spec, optimizer, steps=steps, seed=seed, batch=batch, trajectory=False)
    return dataclasses.replace(result, records=result.records + training_records(trained),
                               error=f"{TRAINING_FAILED} {trained.error}" if trained.error else "",
                               train_repro=trained.repro)
