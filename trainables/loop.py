"""The one training loop: every task's epochs, phases, checkpoints, early stopping, best weights and reports.

Plain PyTorch, no Ray: ``train(config, report, checkpoints)`` calls ``report(metrics)`` once per epoch with a flat
dict (``epoch``, ``train_*``, ``val_*``, ``lr``, ``trainable_params``, ``frozen_fraction``, ``epoch_seconds``,
``best_<objective>``, ``best_epoch``, ...). The trial's :class:`~trainables.objective.Objective` decides, here
and nowhere else, which epoch is best: that epoch's report carries the task's payloads (``per_class``,
``confusion``, segmentation's ``samples``) and, when the data has a test split, the test metrics of its weights
(``test_*``, ``test_per_class``, ``test_confusion``: reported at every new best epoch, so a trial stopped early has
them too); its weights are the ones a checkpoint keeps as ``best_model``; early
stopping and the plateau schedule count from it. The same function runs standalone (``tlsweep train``), under
Ray Tune (the orchestrator supplies ``report`` and ``checkpoints``) and in tests (``report=rows.append``).

A task (:mod:`trainables.tasks`) supplies its data, model, inputs, loss and ``evaluate``.

Data parallel (classification): when ``torch.distributed`` is initialised with more than one process, each rank
trains on its slice of the same seeded permutation (``batch_size // world`` per rank, so a step sees one global
batch), the model is wrapped in ``DistributedDataParallel``, and the sums are added over ranks, so every rank
computes the same metrics as one process would. Every rank calls ``report`` with the same dict once per epoch
(under Ray Train reporting is a barrier); only rank 0 saves checkpoints.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from typing import Any, Callable, Optional

import torch

from trainables.checkpoint import Checkpoints, NoCheckpoints
from trainables.config import TrialConfig, trial_config
from trainables.distributed import all_sum, rank_world, wrap
from trainables.errors import ConfigError
from trainables.freezing import STRATEGIES, Plan, frozen_fraction, set_train_mode
from trainables.objective import Objective
from trainables.tasks import Task, task_class
from trainables.trial_state import Resumable

Report = Callable[[dict], Any]
log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: cuda requested but no GPU is visible")
    return torch.device(name)


def amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: bf16/fp16 on CUDA only; CPU trains in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


class Trainer(Resumable):
    """One trial of any task; ``run`` drives the epochs.

    Example:
        >>> from trainables.config import trial_config
        >>> t = Trainer(trial_config({"model": {"arch": "scratch_cnn", "conv_layers": 2},
        ...                           "data": {"image_size": 16}, "training": {"epochs": 1}}))
        >>> t.objective, t.task.name
        (Objective(metric='val_acc', mode='max'), 'classification')
    """

    def __init__(self, cfg: TrialConfig, task: Optional[type[Task]] = None):
        self.cfg = cfg
        t = cfg.training
        cls = task or task_class(cfg.task)
        self.objective = Objective.of(t.objective, t.objective_mode, cls.default_objective)
        self.strategy = STRATEGIES.get(cfg.model.strategy)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.rank, self.world = rank_world()
        self.device = resolve_device(t.device)
        if self.device.type == "cuda" and self.world > 1:  # the launcher set this rank's GPU as current
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.amp = amp_dtype(t.precision, self.device)
        self.task: Task = cls(cfg, self.device, self.world)
        self.task.autocast = self._autocast
        self.bundle, self.model, self.data = self.task.bundle, self.task.model, self.task.data
        self.image_size = self.task.image_size
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.batch_size = max(1, t.batch_size // self.world)  # per rank: the global batch stays batch_size
        batches = math.ceil(len(self.data.splits["train"]) // self.world / self.batch_size)
        if t.max_steps_per_epoch:
            batches = min(batches, t.max_steps_per_epoch)
        self.batches_per_epoch = batches
        self.steps_per_epoch = math.ceil(batches / t.grad_accum)
        self.plan: Optional[Plan] = None
        self.inputs = None  # this phase's inputs (trainables.inputs): images or the frozen part's cached outputs
        self.start_epoch = 0
        self.best: dict = {"value": None, "epoch": 0, "bad_epochs": 0}
        self.best_model: Optional[dict] = None

    @property
    def cached(self):
        """This phase's cached inputs (head input or frozen prefix), or None when it trains on images."""
        return self.inputs if self.inputs is not None and self.inputs.kind != "images" else None

    def on_new_phase(self, plan: Plan) -> None:
        self.net = wrap(self.model, self.device, self.world)  # DDP hooks follow requires_grad: rebuild per phase
        self.inputs = self.task.inputs(self.net, plan, self.frozen_bn, self._autocast, self.amp, self.gen)
        self.frozen_fraction = frozen_fraction(self.bundle, plan)

    # ---- one epoch --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        t = self.cfg.training
        set_train_mode(self.model, self.frozen_bn)
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        sums: list = []
        seen = 0
        self.opt.zero_grad(set_to_none=True)
        start = time.perf_counter()
        for i, (x, y) in enumerate(self.inputs.batches("train", self.batch_size, True, (self.rank, self.world))):
            if i >= self.batches_per_epoch:
                break
            if len(y) < 2 and i > 0:  # a lone last sample breaks BatchNorm; skip it (shards are equal: all ranks do)
                continue
            x, y = self.inputs.prepare(x, y, train=True)
            stepping = (i + 1) % t.grad_accum == 0 or i + 1 == self.batches_per_epoch
            # accumulation steps skip DDP's gradient all-reduce; the stepping one averages the sum over ranks
            with contextlib.nullcontext() if stepping or self.net is self.model else self.net.no_sync():
                with self._autocast():
                    logits = self.inputs.forward(x, train=True)
                    loss = self.task.loss(logits, y)
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {'NaN' if math.isnan(value) else 'inf'} "
                                             f"at epoch {epoch + 1}, step {i + 1}")
                self.scaler.scale(loss / t.grad_accum).backward()
            if stepping:
                if t.grad_clip:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step_batch()
            loss_sum += loss.detach().float() * len(y)
            batch = self.task.batch_sums(logits, y)
            sums = batch if not sums else [a + b for a, b in zip(sums, batch)]
            seen += len(y)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's last steps are queued, not done
        seconds = time.perf_counter() - start
        totals = all_sum([loss_sum.item(), seen, *(float(s) for s in sums)], self.device, self.world)
        seen = int(totals[1])
        return {"train_loss": totals[0] / max(seen, 1), **self.task.train_metrics(totals[2:], seen),
                "train_images_per_s": seen / max(seconds, 1e-9)}

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self, report: Report, checkpoints: Checkpoints) -> dict:
        t = self.cfg.training
        state = checkpoints.latest()
        if state is not None:
            self.restore(state)
        best_key = f"best_{self.objective.metric}"
        for epoch in range(self.start_epoch, t.epochs):
            self.ensure_phase(epoch)
            start = time.perf_counter()
            metrics: dict = {"epoch": epoch + 1}
            if getattr(self.data, "skipped", None):  # data.on_bad_image: skip (the files are listed in the log)
                metrics["skipped_images"] = len(self.data.skipped)
            metrics.update(self.train_epoch(epoch))
            val = self.task.evaluate(self.inputs, "val", "val_")
            metrics.update(val.metrics)
            metrics["lr"] = self.opt.param_groups[0]["lr"]
            metrics["trainable_params"] = self.trainable_params
            metrics["frozen_fraction"] = self.frozen_fraction
            metrics["feature_cache"] = int(self.inputs.kind == "features")
            metrics["prefix_cache"] = int(self.inputs.kind == "prefix")
            metrics["epoch_seconds"] = time.perf_counter() - start
            score = self.objective.value(val.metrics)
            self.sched.step_epoch(score)
            if self.objective.better(score, self.best["value"]):
                self.best.update(value=score, epoch=epoch + 1, bad_epochs=0)
                metrics.update(val.details())
                self.keep_best_weights()
                if self.has_test:  # claimed on data that did not choose it, whenever the trial stops
                    metrics.update(self.test_metrics())
            else:
                self.best["bad_epochs"] += 1
            metrics[best_key], metrics["best_epoch"] = self.best["value"], self.best["epoch"]
            if self.end_epoch(epoch, metrics, report, checkpoints, save=self.rank == 0):
                break
        return {"objective": self.objective.metric, "best_value": self.best["value"], best_key: self.best["value"],
                "best_epoch": self.best["epoch"], "class_names": self.data.class_names}

    def test_metrics(self) -> dict:
        """Test-split metrics (and per-class table, confusion) of the model's weights: called at each epoch the
        objective says is the best so far, so a trial stopped at any moment (ASHA, a time budget, a crash) has
        the test numbers of its best weights, and the test split never chooses anything."""
        ev = self.task.evaluate(self.inputs, "test", "test_")
        details = ev.details()
        return {**ev.metrics, "test_per_class": details["per_class"], "test_confusion": details["confusion"]}


def train(config: dict | TrialConfig, report: Report, checkpoints: Optional[Checkpoints] = None,
          task: Optional[type[Task]] = None) -> dict:
    """Train one trial of its task (``config.task``), calling ``report(metrics)`` once per epoch.

    Example:
        >>> rows = []
        >>> train({"data": {"name": "digits", "image_size": 16},
        ...        "model": {"arch": "scratch_cnn", "conv_layers": 2},
        ...        "training": {"epochs": 1}}, rows.append)["best_epoch"]
        1
    """
    cfg = trial_config(config)
    cls = task or task_class(cfg.task)
    cls.preflight(cfg)
    return Trainer(cfg, cls).run(report, checkpoints or NoCheckpoints())


def entry_points(task: type[Task]) -> tuple[Callable, Callable, Callable]:
    """A task module's ``Trainer(cfg)``, ``preflight(cfg)`` and ``train(config, report, checkpoints)``."""
    return functools.partial(Trainer, task=task), task.preflight, functools.partial(train, task=task)
