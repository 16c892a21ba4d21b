"""The Ray Tune function that runs one trial: resolve its config, call the task's ``train``, relay reports.

Per-epoch metrics go to ``ray.tune.report`` together with the epoch's checkpoint; per-class tables and
confusion matrices travel as JSON strings so every result stays flat for Tune's loggers. A trial of
``resources.workers_per_trial`` > 1 trains on that many data-parallel workers instead (orchestrator.ddp).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ray import tune

from orchestrator import data_share
from orchestrator import faults
from orchestrator.space import resolve
from search_spaces.sections import ResourceSpec
from trainables.checkpoint import read, write_atomic
from trainables.registry import Registry

TASKS: Registry = Registry("task")
PAYLOAD_KEYS = ("per_class", "confusion", "test_per_class", "test_confusion", "samples")
STATE_FILE = "state.pt"


@TASKS.register("classification")
def _classification(config, report, checkpoints):
    from trainables.classification import train
    return train(config, report, checkpoints)


@TASKS.register("segmentation")
def _segmentation(config, report, checkpoints):
    from trainables.segmentation import train
    return train(config, report, checkpoints)


class TuneCheckpoints:
    """Checkpoints through Ray Tune: resume from ``tune.get_checkpoint()``, hand new ones to ``tune.report``."""

    def __init__(self) -> None:
        self.pending: Optional[str] = None

    def latest(self) -> Optional[dict]:
        ckpt = tune.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as folder:
            return read(Path(folder) / STATE_FILE)

    def save(self, state: dict, epoch: int) -> None:
        folder = tempfile.mkdtemp(prefix=f"tlsweep-epoch{epoch}-")
        write_atomic(state, Path(folder) / STATE_FILE)
        faults.point("checkpoint.write", epoch)  # written, not yet handed to Tune
        self.pending = folder

    def report(self, metrics: dict) -> None:
        folder, self.pending = self.pending, None
        try:
            faults.point("trial.report", metrics.get("epoch"))
            checkpoint = tune.Checkpoint.from_directory(folder) if folder else None
            tune.report(metrics, checkpoint=checkpoint)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def encode(metrics: dict) -> dict:
    return {k: (json.dumps(v) if k in PAYLOAD_KEYS else v) for k, v in metrics.items()}


def run_trial(config: dict, *, base: dict, task: str, pretrained: Optional[dict] = None,
              cpus_per_trial: float = 1.0, resources: Optional[ResourceSpec] = None) -> None:
    """Tune entry point (wrapped with ``tune.with_parameters`` and ``tune.with_resources``)."""
    import torch
    trial = resolve(base, config)
    faults.trial_started(trial)
    arch = trial.get("model", {}).get("arch")
    if pretrained and arch in pretrained:
        trial.setdefault("model", {})["weights"] = f"file:{pretrained[arch]}"
    if resources is not None and resources.workers_per_trial > 1:
        from orchestrator.ddp import run_data_parallel
        per_worker = resources.for_arch(arch if isinstance(arch, str) else None)
        run_data_parallel(trial, task, workers=resources.workers_per_trial, cpu=per_worker["cpu"],
                          gpu=per_worker["gpu"], keep=resources.keep, report=tune.report)
        return
    if trial.get("training", {}).get("threads") is None:
        torch.set_num_threads(max(1, int(cpus_per_trial)))
    data_share.install()  # data decoded once per node (data.share), read by the other trials there
    ckpts = TuneCheckpoints()
    where = placement()
    TASKS.get(task)(trial, lambda m: ckpts.report({**encode(m), **where}), ckpts)


def placement() -> dict:
    """Where the trial runs: Ray node id and the GPUs Ray assigned (also in CUDA_VISIBLE_DEVICES)."""
    import ray
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids())}
