"""One trial as N data-parallel workers: the Tune function drives a Ray Train ``TorchTrainer`` (Train V2).

``resources.workers_per_trial: N`` turns a trial into this chain of processes::

    Tune trial actor (driver) ─> FitRunner actor ─> TorchTrainer.fit() ─> Train controller ─> N workers
      ^ tune.report, once per epoch                                               | ray.train.report
      └─ FitRunner.take <── a queue of one <── TuneRelay.after_report <───────────┘ (rank 0's metrics)

- Workers run the task's ``train`` under ``torch.distributed`` (gloo on CPU, NCCL on GPU; Ray sets the process
  group up). Every rank reports each epoch (``ray.train.report`` is a barrier); rank 0 attaches the epoch's
  checkpoint, which Train persists under the trial's folder (``<trial>/train/``) and hands back through
  ``ray.train.get_checkpoint()`` when the trial is retried or resumed: same (storage path, name), same run.
- The driver thread relays rank 0's metrics with ``tune.report``, so the Parquet sink and ASHA see exactly what a
  one-worker trial reports. The documented ``ray.tune.integration.ray_train.TuneReportCallback`` feeds Tune from
  the trial actor's main thread instead, which leaves the driver thread inside ``fit()`` when ASHA stops the
  trial: with ``reuse_actors`` the next trial then fails to reset the actor, and the stopped run keeps its CPUs.
- Stop: relayed through the driver thread, Tune's stop ends ``tune.report`` there; the driver asks the runner to
  abort the Train run (the controller's own abort, as on Ctrl-C: workers, placement group and cleaner go) and
  returns at once, so the actor can be reused. Killing the controller instead would leave its placement group
  reserved until Train's cleaner notices, which needs Ray's state API (the dashboard). So the runner is detached
  and outside the trial's placement group (Tune removes both the trial actor and its group when it ends a trial
  without reusing the actor), and aborts the run itself when the trial actor dies.
- Resources: the workers reserve ``{cpu, gpu}`` each in the placement group Train creates for them; the trial
  itself only drives, so it asks Tune for a token of memory (``DRIVER_RESOURCES``) and no CPU.
"""
from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import ray
from ray.train.v2.api.callback import UserCallback

# torch (trainables.checkpoint) is imported where it runs, on the workers: the runner and the Train controller
# unpickle this module too, and a torch import is seconds of start-up for each of them.

V2_FLAG = "RAY_TRAIN_V2_ENABLED"
# Tune needs a non-empty request per trial; memory is the one resource every node has that no trainer counts on.
DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 2**20}
RUN_NAME = "train"                      # the Train run's folder inside the trial's folder
POLL_S = 0.5
WATCH_S = 1.0


class TuneRelay(UserCallback):
    """Train callback (runs in the controller): hand rank 0's metrics of each report to the trial's driver."""

    def __init__(self, runner):
        self.runner = runner

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        controller = ray.get_runtime_context().current_actor  # this callback runs in the controller
        ray.get(self.runner.put.remote(metrics[0], controller))  # waits while Tune has not taken the last one


class TrainCheckpoints:
    """The trainable's ``Checkpoints`` on a Train worker: resume from ``ray.train.get_checkpoint()``; the
    pending state (rank 0 only) goes with the next ``ray.train.report``."""

    STATE_FILE = "state.pt"

    def __init__(self) -> None:
        self.pending: Optional[str] = None

    def latest(self) -> Optional[dict]:
        from trainables.checkpoint import read
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as folder:
            return read(Path(folder) / self.STATE_FILE)

    def save(self, state: dict, epoch: int) -> None:
        from trainables.checkpoint import write_atomic
        folder = tempfile.mkdtemp(prefix=f"tlsweep-epoch{epoch}-")
        write_atomic(state, Path(folder) / self.STATE_FILE)
        self.pending = folder

    def report(self, metrics: dict) -> None:
        folder, self.pending = self.pending, None
        try:
            checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
            ray.train.report(metrics, checkpoint=checkpoint)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def placement_of_all_ranks() -> dict:
    """``node_id`` / ``gpu_ids`` columns for the whole worker group (node ids deduplicated, in rank order)."""
    import torch.distributed as dist

    from orchestrator.trainable import placement
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, placement())
    nodes = list(dict.fromkeys(p["node_id"] for p in parts))
    return {"node_id": ",".join(nodes), "gpu_ids": ",".join(p["gpu_ids"] for p in parts if p["gpu_ids"])}


def worker_loop(config: dict) -> None:
    """``train_loop_per_worker``: the task's ``train`` with Train's report and checkpoints."""
    import torch

    from orchestrator.trainable import encode
    from trainables.loop import train
    from orchestrator.weights_share import with_weights
    trial = with_weights({**config["trial"], "task": config["task"]}, config.get("pretrained"))  # this node's copy
    if trial.get("training", {}).get("threads") is None:
        torch.set_num_threads(max(1, int(config["cpu"])))
    where = placement_of_all_ranks()
    ckpts = TrainCheckpoints()
    train(trial, lambda m: ckpts.report({**encode(m), **where}), ckpts)


@ray.remote(num_cpus=0, max_concurrency=4)  # fit, put, take and stop run on their own threads
class FitRunner:
    """Runs the Train run and passes its results on, one at a time; ``stop`` aborts it, and so does the death
    of ``driver`` (the trial's actor)."""

    def __init__(self, driver) -> None:
        self.results: queue.Queue = queue.Queue(maxsize=1)
        self.controller = None
        self.stopping = False
        threading.Thread(target=self._watch, args=(driver,), daemon=True).start()

    def _watch(self, driver) -> None:
        while True:
            try:
                ray.get(driver.__ray_ready__.remote())
            except ray.exceptions.RayActorError:
                self.stop()
                return
            time.sleep(WATCH_S)

    def put(self, metrics: dict, controller) -> None:
        self.controller = controller
        while not self.stopping:  # a stop frees the controller, which waits here, to take its abort
            try:
                self.results.put(metrics, timeout=POLL_S)
                return
            except queue.Full:
                pass

    def take(self, timeout: float) -> Optional[dict]:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Abort the run (known from its first report; before that, ending this actor ends the controller)."""
        self.stopping = True
        if self.controller is not None:
            try:
                ray.get(self.controller.abort.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - already finished or gone: nothing left to abort
                pass
        ray.actor.exit_actor()

    def fit(self, loop_config: dict, workers: int, cpu: float, gpu: float, keep: int, storage_path: str,
            storage_filesystem) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        per_worker = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
        trainer = TorchTrainer(
            worker_loop, train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu > 0, resources_per_worker=per_worker),
            run_config=RunConfig(
                name=RUN_NAME, storage_path=storage_path, storage_filesystem=storage_filesystem,
                callbacks=[TuneRelay(ray.get_runtime_context().current_actor)],
                checkpoint_config=CheckpointConfig(num_to_keep=keep),
                failure_config=FailureConfig(max_failures=0)))  # Tune retries the trial (resources.max_failures)
        try:
            trainer.fit()
        except ray.train.TrainingFailedError as e:
            raise first_worker_error(e) from None


def first_worker_error(error: Exception) -> Exception:
    """The lowest rank's own exception (e.g. FloatingPointError: loss became NaN) instead of Train's summary."""
    failures = getattr(error, "worker_failures", None) or {}
    return failures[min(failures)] if failures else error


def run_data_parallel(trial: dict, task: str, *, workers: int, cpu: float, gpu: float, keep: int,
                      report: Callable[[dict], None], pretrained=None) -> None:
    """Train ``trial`` on ``workers`` processes, calling ``report`` (``tune.report``) once per epoch; each worker
    starts from its node's copy of the ``pretrained`` checkpoint (orchestrator.weights_share.Shipped)."""
    from ray import tune
    storage = tune.get_context().get_storage()
    env = {} if os.environ.get(V2_FLAG) == "1" else {"runtime_env": {"env_vars": {V2_FLAG: "1"}}}
    runner = FitRunner.options(lifetime="detached", scheduling_strategy="DEFAULT", **env).remote(
        ray.get_runtime_context().current_actor)
    loop_config = {"trial": trial, "task": task, "cpu": cpu, "pretrained": pretrained}
    done = runner.fit.remote(loop_config, workers, cpu, gpu, keep, storage.trial_fs_path, storage.storage_filesystem)
    finished = False
    try:
        while True:
            metrics = ray.get(runner.take.remote(0 if finished else POLL_S))
            if metrics is not None:
                report(metrics)  # when Tune stops the trial, this raises SystemExit
            elif finished:  # fit has returned and nothing was left to take
                break
            else:
                finished = bool(ray.wait([done], timeout=0)[0])
        ray.get(done)
    finally:
        if finished:
            ray.kill(runner)
        else:  # Tune stopped the trial (or the relay broke): abort without waiting, Tune reuses this actor
            runner.stop.remote()
