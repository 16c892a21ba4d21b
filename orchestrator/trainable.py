"""The Ray Tune function that runs one trial: resolve its config, call the task's ``train``, relay reports.

Per-epoch metrics go to ``ray.tune.report`` together with the epoch's checkpoint; per-class tables and
confusion matrices travel as JSON strings so every result stays flat for Tune's loggers. Each checkpoint names the
trial that wrote it: a trial restarted from another trial's checkpoint (a PBT exploit) says so in the
``exploited_from`` column of its next epoch. A trial of
``resources.workers_per_trial`` > 1 trains on that many data-parallel workers instead (orchestrator.ddp).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ray import tune

from orchestrator import data_share
from orchestrator import faults
from orchestrator import trial_memory
from orchestrator.space import resolve
from orchestrator.weights_share import Shipped, with_weights
from search_spaces.sections import ResourceSpec
from trainables.checkpoint import read, write_atomic

PAYLOAD_KEYS = ("per_class", "confusion", "test_per_class", "test_confusion", "samples")
STATE_FILE = "state.pt"
WRITER_KEY = "tune_trial_id"  # in a checkpoint's state: the trial that wrote it


class TuneCheckpoints:
    """Checkpoints through Ray Tune: resume from ``tune.get_checkpoint()``, hand new ones to ``tune.report``."""

    def __init__(self) -> None:
        self.pending: Optional[str] = None
        self.exploited_from: Optional[str] = None  # the donor trial, until the first report after restoring

    @staticmethod
    def trial_id() -> Optional[str]:
        return tune.get_context().get_trial_id()

    def latest(self) -> Optional[dict]:
        ckpt = tune.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as folder:
            state = read(Path(folder) / STATE_FILE)
        writer = state.pop(WRITER_KEY, None)
        if writer is not None and writer != self.trial_id():  # PBT: this trial continues from another's weights
            self.exploited_from = writer
        return state

    def save(self, state: dict, epoch: int) -> None:
        folder = tempfile.mkdtemp(prefix=f"tlsweep-epoch{epoch}-")
        write_atomic({**state, WRITER_KEY: self.trial_id()}, Path(folder) / STATE_FILE)
        faults.point("checkpoint.write", epoch)  # written, not yet handed to Tune
        self.pending = folder

    def report(self, metrics: dict) -> None:
        folder, self.pending = self.pending, None
        try:
            faults.point("trial.report", metrics.get("epoch"))
            checkpoint = tune.Checkpoint.from_directory(folder) if folder else None
            # every epoch row has the column: empty, or the donor on the first epoch after an exploit
            metrics, self.exploited_from = {**metrics, "exploited_from": self.exploited_from}, None
            tune.report(metrics, checkpoint=checkpoint)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def encode(metrics: dict) -> dict:
    return {k: (json.dumps(v) if k in PAYLOAD_KEYS else v) for k, v in metrics.items()}


def with_objective(trial: dict, task: str, objective: Optional[tuple[str, str]]) -> dict:
    """The trial config with its task and the study's objective (``search.metric``, ``search.mode``): the one
    definition of "best" inside the trial (best epoch, early stopping, test weights, payloads)."""
    trial["task"] = task
    if objective is not None:
        training = trial.setdefault("training", {})
        training["objective"], training["objective_mode"] = objective
    return trial


# With reuse_actors, Ray hands this process the next trial only once the last one's thread has ended, and waits
# TUNE_FUNCTION_THREAD_TIMEOUT_S (default 2 s) for it; past that it fails the *next* trial ("Trainable runner reuse
# requires reset_config() ...") without a retry. Ending a trial (releasing its memory, its data workers) took longer
# than 2 s on a loaded 2-core machine and lost a quickstart trial, so the process waits longer. Read by Ray in
# this process at each reset, so setting it here holds on every node.
THREAD_TIMEOUT_S = "120"


def run_trial(config: dict, *, base: dict, task: str, pretrained: Optional[Shipped | dict] = None,
              cpus_per_trial: float = 1.0, resources: Optional[ResourceSpec] = None,
              objective: Optional[tuple[str, str]] = None) -> None:
    """Tune entry point (wrapped with ``tune.with_parameters`` and ``tune.with_resources``)."""
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", THREAD_TIMEOUT_S)
    with trial_memory.around(TuneCheckpoints.trial_id()):  # a reused process hands back what the trial freed
        _run_trial(config, base=base, task=task, pretrained=pretrained, cpus_per_trial=cpus_per_trial,
                   resources=resources, objective=objective)


def _run_trial(config: dict, *, base: dict, task: str, pretrained: Optional[Shipped | dict],
               cpus_per_trial: float, resources: Optional[ResourceSpec], objective: Optional[tuple[str, str]]) -> None:
    import torch
    from trainables.loop import train
    trial = with_objective(resolve(base, config), task, objective)
    faults.trial_started(trial)
    arch = trial.get("model", {}).get("arch")
    if resources is not None and resources.workers_per_trial > 1:
        from orchestrator.ddp import run_data_parallel
        per_worker = resources.for_arch(arch if isinstance(arch, str) else None)
        run_data_parallel(trial, task, workers=resources.workers_per_trial, cpu=per_worker["cpu"],
                          gpu=per_worker["gpu"], keep=resources.keep, report=tune.report, pretrained=pretrained)
        return
    with_weights(trial, pretrained)  # this node's copy of the pretrained checkpoint (orchestrator.weights_share)
    if trial.get("training", {}).get("threads") is None:
        torch.set_num_threads(max(1, int(cpus_per_trial)))
    data_share.install()  # data decoded once per node (data.share), read by the other trials there
    ckpts = TuneCheckpoints()
    where = placement()
    train(trial, lambda m: ckpts.report({**encode(m), **where}), ckpts)


def placement() -> dict:
    """Where the trial runs: Ray node id and the GPUs Ray assigned (also in CUDA_VISIBLE_DEVICES)."""
    import ray
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids())}
