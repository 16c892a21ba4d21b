"""One training loop for classification that serves every model, data set and freezing strategy.

Plain PyTorch, no Ray: ``train(config, report)`` calls ``report(metrics)`` once per epoch with a flat dict
(``epoch``, ``train_*``, ``val_*``, ``lr``, ...). When an epoch is the best so far the dict also carries
``per_class`` (columns of per-class metrics) and ``confusion`` (a k x k list); the final epoch adds ``test_*``
metrics of the best weights when the data set has a test split. The same function runs standalone
(``tlsweep train``), under Ray Tune (the orchestrator wraps ``report`` and ``checkpoints``) and in tests
(``report=rows.append``).

Data parallel: when ``torch.distributed`` is initialised with more than one process, each rank trains on its
slice of the same seeded permutation (``batch_size // world`` per rank, so a step sees one global batch), the
model is wrapped in ``DistributedDataParallel``, training sums and validation/test logits are gathered from all
ranks, so every rank computes the same metrics as one process would. Every rank calls ``report`` with that same
dict once per epoch (under Ray Train reporting is a barrier); only rank 0 saves checkpoints.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from trainables.batch_augment import batch_augment
from trainables.checkpoint import Checkpoints, NoCheckpoints
from trainables.config import TrialConfig, trial_config
from trainables.data import ImageData, Split, load_raw
from trainables.data.shared import prepared
from trainables.distributed import all_sum, gather_rows, rank_world, shard_bounds, wrap
from trainables.feature_cache import CachedInputs, for_phase
from trainables.freezing import STRATEGIES, Plan, set_train_mode
from trainables.metrics import classification_metrics, per_class_table
from trainables.models import ModelBundle, build_model
from trainables.placement import place
from trainables.transforms import AUGMENTATIONS, Preprocess
from trainables.trial_state import Resumable

Report = Callable[[dict], Any]
log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from trainables.errors import ConfigError
        raise ConfigError("training.device: cuda requested but no GPU is visible")
    return torch.device(name)


def amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: bf16/fp16 on CUDA only; CPU trains in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


def iterate(split: Split, batch_size: int, shuffle: bool, gen: torch.Generator, num_workers: int = 0,
            shard: tuple[int, int] = (0, 1), pin_memory: bool = False):
    """Yield (uint8 images, labels) batches; in-memory splits are indexed directly (no per-epoch decoding).

    ``shard=(rank, world)``: this rank's samples ``order[rank::world]`` of the permutation every rank draws
    alike, after dropping the last ``n % world`` so that all ranks take the same number of equal batches;
    batch ``b`` of each rank is then a slice of the one-process batch ``b`` of size ``batch_size * world``.
    """
    rank, world = shard
    if isinstance(split.images, torch.Tensor) or world > 1:
        n = len(split)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        order = order[:n - n % world][rank::world]
        if not isinstance(split.images, torch.Tensor):
            yield from torch.utils.data.DataLoader(torch.utils.data.Subset(split.images, order.tolist()),
                                                   batch_size=batch_size, num_workers=num_workers,
                                                   pin_memory=pin_memory)
            return
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            yield split.images[idx], split.labels[idx]
    else:
        yield from torch.utils.data.DataLoader(split.images, batch_size=batch_size, shuffle=shuffle,
                                               generator=gen, num_workers=num_workers, pin_memory=pin_memory)


class Trainer(Resumable):
    """State of one classification trial; ``run`` drives the epochs."""

    def __init__(self, cfg: TrialConfig):
        self.cfg = cfg
        t = cfg.training
        self.strategy = STRATEGIES.get(cfg.model.strategy)
        augment_factory = AUGMENTATIONS.get(cfg.data.augment)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.rank, self.world = rank_world()
        self.device = resolve_device(t.device)
        if self.device.type == "cuda" and self.world > 1:  # the launcher set this rank's GPU as current
            self.device = torch.device("cuda", torch.cuda.current_device())
        raw = load_raw(cfg.data)
        torch.manual_seed(cfg.seed)
        self.bundle: ModelBundle = build_model(cfg.model, len(raw.class_names), cfg.data.image_size)
        self.image_size = cfg.data.image_size or self.bundle.input_size
        cuda = self.device.type == "cuda"
        self.data: ImageData
        self.data, where = place(prepared(raw, cfg.data, self.image_size), self.device, t.data_on_gpu_mb)
        log.info("images in %s", where)
        self.model = self.bundle.model.to(self.device, memory_format=torch.channels_last if cuda else
                                          torch.contiguous_format)
        self.pre = Preprocess(self.bundle.mean, self.bundle.std, self.device, augment_factory(self.image_size),
                              channels_last=cuda,
                              batch_augment=batch_augment(cfg.data.augment, self.image_size) if cuda else None)
        self.amp = amp_dtype(t.precision, self.device)
        self.pin = cuda  # DataLoaders of lazily read sets hand over page-locked batches
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.batch_size = max(1, t.batch_size // self.world)  # per rank: the global batch stays batch_size
        n_train = len(self.data.splits["train"]) // self.world
        batches = math.ceil(n_train / self.batch_size)
        if t.max_steps_per_epoch:
            batches = min(batches, t.max_steps_per_epoch)
        self.batches_per_epoch = batches
        self.steps_per_epoch = math.ceil(batches / t.grad_accum)
        self.plan: Optional[Plan] = None
        self.start_epoch = 0
        self.best = {"val_acc": -1.0, "epoch": 0, "per_class": None, "confusion": None, "bad_epochs": 0}
        self.best_model: Optional[dict] = None
        self.cached: Optional[CachedInputs] = None  # this phase's frozen part, precomputed (trainables.feature_cache)

    # ---- phases (trainables.trial_state) ----------------------------------------------------------------
    def on_new_phase(self, plan: Plan) -> None:
        self.net = wrap(self.model, self.device, self.world)  # DDP hooks follow requires_grad: rebuild per phase
        self.cached, note = for_phase(self.cfg, self.bundle, plan, self.frozen_bn, self.data.splits, self.pre,
                                      self._autocast, self.amp, self.world)
        log.info("phase %d: %s", plan.phase, note)

    # ---- one epoch --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        t = self.cfg.training
        set_train_mode(self.model, self.frozen_bn)
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        self.opt.zero_grad(set_to_none=True)
        start = time.perf_counter()
        cached = self.cached  # same permutation and batches over the cached tensors as over the images
        train_split = cached.splits["train"] if cached else self.data.splits["train"]
        for i, (x, y) in enumerate(iterate(train_split, self.batch_size, True, self.gen,
                                           self.cfg.data.num_workers, (self.rank, self.world), self.pin)):
            if i >= self.batches_per_epoch:
                break
            if len(y) < 2 and i > 0:  # a lone last sample breaks BatchNorm; skip it (shards are equal: all ranks do)
                continue
            x, y = cached.batch(x) if cached else self.pre(x, train=True), y.to(self.device, non_blocking=True)
            stepping = (i + 1) % t.grad_accum == 0 or i + 1 == self.batches_per_epoch
            # accumulation steps skip DDP's gradient all-reduce; the stepping one averages the sum over ranks
            with contextlib.nullcontext() if stepping or self.net is self.model else self.net.no_sync():
                with self._autocast():
                    logits = cached.forward(x) if cached else self.net(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
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
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's last steps are queued, not done
        seconds = time.perf_counter() - start
        loss_total, correct_total, seen = all_sum([loss_sum.item(), correct.item(), seen], self.device, self.world)
        return {"train_loss": loss_total / max(seen, 1), "train_acc": correct_total / max(seen, 1),
                "train_images_per_s": seen / max(seconds, 1e-9)}

    @torch.no_grad()
    def predict(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32, CPU) and labels of a whole split (each rank predicts a slice; all get the whole)."""
        if self.world > 1:
            lo, hi = shard_bounds(len(split), self.rank, self.world)
            images = (split.images[lo:hi] if isinstance(split.images, torch.Tensor)
                      else torch.utils.data.Subset(split.images, range(lo, hi)))
            logits, labels = self._predict(Split(images, split.labels[lo:hi]))
            return (gather_rows(logits, self.device, self.world), gather_rows(labels, self.device, self.world))
        return self._predict(split)

    def _predict(self, split: Split, cached: Optional[CachedInputs] = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        logits, labels = [], []
        bs = max(self.cfg.training.batch_size, 256)
        for x, y in iterate(split, bs, False, self.gen, self.cfg.data.num_workers, pin_memory=self.pin):
            with self._autocast():
                out = cached.forward(cached.batch(x)) if cached else self.model(self.pre(x, train=False))
            logits.append(out.float().cpu())
            labels.append(y.cpu())
        return torch.cat(logits), torch.cat(labels)

    def evaluate(self, split_name: str, prefix: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
        if self.cached is not None and split_name in self.cached.splits:
            with torch.no_grad():
                logits, labels = self._predict(self.cached.splits[split_name], self.cached)
        else:
            logits, labels = self.predict(self.data.splits[split_name])
        m = {f"{prefix}loss": F.cross_entropy(logits, labels).item()}
        m.update(classification_metrics(logits, labels, self.data.num_classes, prefix))
        return m, logits, labels

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self, report: Report, checkpoints: Checkpoints) -> dict:
        t = self.cfg.training
        state = checkpoints.latest()
        if state is not None:
            self.restore(state)
        for epoch in range(self.start_epoch, t.epochs):
            self.ensure_phase(epoch)
            start = time.perf_counter()
            metrics: dict = {"epoch": epoch + 1}
            if self.data.skipped:  # data.on_bad_image: skip (the files are listed in the trial's log)
                metrics["skipped_images"] = len(self.data.skipped)
            metrics.update(self.train_epoch(epoch))
            val, logits, labels = self.evaluate("val", "val_")
            metrics.update(val)
            metrics["lr"] = self.opt.param_groups[0]["lr"]
            metrics["trainable_params"] = self.trainable_params
            metrics["feature_cache"] = int(self.cached is not None and self.cached.kind == "features")
            metrics["prefix_cache"] = int(self.cached is not None and self.cached.kind == "prefix")
            metrics["epoch_seconds"] = time.perf_counter() - start
            self.sched.step_epoch(val["val_acc"])
            if val["val_acc"] > self.best["val_acc"]:
                per_class, confusion = per_class_table(logits, labels, self.data.class_names)
                self.best.update(val_acc=val["val_acc"], epoch=epoch + 1, per_class=per_class,
                                 confusion=confusion, bad_epochs=0)
                metrics["per_class"], metrics["confusion"] = per_class, confusion
                self.keep_best_weights()
            else:
                self.best["bad_epochs"] += 1
            metrics["best_val_acc"], metrics["best_epoch"] = self.best["val_acc"], self.best["epoch"]
            if self.end_epoch(epoch, metrics, report, checkpoints, save=self.rank == 0):
                break
        return {"best_val_acc": self.best["val_acc"], "best_epoch": self.best["epoch"],
                "class_names": self.data.class_names}

    def test_metrics(self) -> dict:
        """Test-split metrics of the best epoch's weights."""
        with self.best_weights():
            m, logits, labels = self.evaluate("test", "test_")
        m["test_per_class"], m["test_confusion"] = per_class_table(logits, labels, self.data.class_names)
        return m


def preflight(cfg: TrialConfig) -> None:
    """Check every name in the config (model, data set, strategy, augmentation) before any work starts."""
    from trainables.data import DATASETS
    from trainables.models import check_arch
    check_arch(cfg.model.arch)
    DATASETS.get(cfg.data.name)
    STRATEGIES.get(cfg.model.strategy)
    AUGMENTATIONS.get(cfg.data.augment)


def train(config: dict | TrialConfig, report: Report, checkpoints: Optional[Checkpoints] = None) -> dict:
    """Train one classification trial, calling ``report(metrics)`` once per epoch.

    Example:
        >>> rows = []
        >>> train({"data": {"name": "digits", "image_size": 16},
        ...        "model": {"arch": "scratch_cnn", "conv_layers": 2},
        ...        "training": {"epochs": 1}}, rows.append)["best_epoch"]
        1
    """
    cfg = trial_config(config)
    preflight(cfg)
    return Trainer(cfg).run(report, checkpoints or NoCheckpoints())
