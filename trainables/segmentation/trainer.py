"""One training loop for segmentation that serves every model, data set, loss and freezing strategy.

Plain PyTorch, no Ray, the contract of ``trainables.classification.train``: ``train(config, report, checkpoints)``
calls ``report(metrics)`` once per epoch with a flat dict (``epoch``, ``train_loss``, ``val_loss``,
``val_pixel_acc``, ``val_mean_acc``, ``val_miou``, ``val_dice``, ``lr``, ``trainable_params``, ``epoch_seconds``,
``best_val_miou``, ``best_epoch``, ``train_images_per_s``). An epoch that improves ``val_miou`` also carries
``per_class`` (columns ``class_index``, ``class_name``, ``iou``, ``accuracy``, ``support``), ``confusion`` (the
pixel confusion matrix) and ``samples`` (PNG predictions on the first ``data.sample_images`` val images). The final
epoch adds ``test_*`` metrics of the best weights when the data set has a test split. It resumes from
``checkpoints.latest()`` exactly (model, optimizer, scheduler and every random generator). One process only.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator, Optional

import torch

from trainables.checkpoint import Checkpoints, NoCheckpoints
from trainables.classification import amp_dtype, resolve_device
from trainables.config import TrialConfig, trial_config
from trainables.distributed import rank_world
from trainables.errors import ConfigError
from trainables.freezing import STRATEGIES, Plan, set_train_mode
from trainables.segmentation.data import SEG_DATASETS, SegSplit, load_seg_data
from trainables.segmentation.losses import LOSSES, build_loss
from trainables.segmentation.metrics import ConfusionMeter, per_class_table
from trainables.segmentation.models import build_seg_model, check_seg_model, default_input_size
from trainables.segmentation.samples import samples_payload
from trainables.segmentation.transforms import SEG_AUGMENTATIONS, normalize
from trainables.trial_state import Resumable

Report = Callable[[dict], Any]


class SegTrainer(Resumable):
    """State of one segmentation trial; ``run`` drives the epochs."""

    def __init__(self, cfg: TrialConfig):
        self.cfg = cfg
        t = cfg.training
        if rank_world()[1] > 1:
            raise ConfigError("resources.workers_per_trial: segmentation trains in one process per trial")
        self.strategy = STRATEGIES.get(cfg.model.strategy)
        augment_factory = SEG_AUGMENTATIONS.get(cfg.data.augment)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        self.image_size = cfg.data.image_size or default_input_size(cfg.model)
        self.data = load_seg_data(cfg.data, self.image_size)
        self.loss_fn = build_loss(t.loss, self.data.num_classes, self.data.ignore_index, t.label_smoothing)
        torch.manual_seed(cfg.seed)
        self.bundle = build_seg_model(cfg.model, self.data.num_classes)
        self.model = self.bundle.model.to(self.device)
        self.augment = augment_factory(self.image_size)
        self.amp = amp_dtype(t.precision, self.device)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        batches = math.ceil(len(self.data.splits["train"]) / t.batch_size)
        self.batches_per_epoch = min(batches, t.max_steps_per_epoch or batches)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / t.grad_accum)
        self.plan: Optional[Plan] = None
        self.start_epoch = 0
        self.best = {"val_miou": -1.0, "epoch": 0, "bad_epochs": 0}
        self.best_model: Optional[dict] = None

    # ---- data --------------------------------------------------------------------------------------------
    def batches(self, split: SegSplit, shuffle: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, masks) batches; the shuffle order comes from the trial's generator."""
        n, bs = len(split), self.cfg.training.batch_size
        order = torch.randperm(n, generator=self.gen) if shuffle else torch.arange(n)
        if split.in_memory:
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                yield split.images[idx], split.masks[idx]
        else:
            yield from torch.utils.data.DataLoader(torch.utils.data.Subset(split.images, order.tolist()),
                                                   batch_size=bs, num_workers=self.cfg.data.num_workers)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.bundle.mean, self.bundle.std, self.device)

    # ---- one epoch --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        t = self.cfg.training
        set_train_mode(self.model, self.frozen_bn)
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum, seen = 0.0, 0
        self.opt.zero_grad(set_to_none=True)
        start = time.perf_counter()
        for i, (x, y) in enumerate(self.batches(self.data.splits["train"], True)):
            if i >= self.batches_per_epoch:
                break
            if len(x) < 2 and i > 0:  # a lone last sample breaks BatchNorm; skip it
                continue
            if self.augment is not None:
                x, y = self.augment(x, y, self.gen)
            x, y = self._inputs(x), y.to(self.device).long()
            with self._autocast():
                loss = self.loss_fn(self.model(x), y)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {'NaN' if math.isnan(value) else 'inf'} "
                                         f"at epoch {epoch + 1}, step {i + 1}")
            self.scaler.scale(loss / t.grad_accum).backward()
            if (i + 1) % t.grad_accum == 0 or i + 1 == self.batches_per_epoch:
                if t.grad_clip:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step_batch()
            loss_sum += value * len(x)
            seen += len(x)
        seconds = time.perf_counter() - start
        return {"train_loss": loss_sum / max(seen, 1), "train_images_per_s": seen / max(seconds, 1e-9)}

    @torch.no_grad()
    def evaluate(self, split_name: str, prefix: str, keep: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Metrics of a split, its pixel confusion matrix and the predictions of its first ``keep`` images."""
        self.model.eval()
        meter = ConfusionMeter(self.data.num_classes, self.data.ignore_index)
        loss_sum, seen, kept = 0.0, 0, []
        for x, y in self.batches(self.data.splits[split_name], False):
            with self._autocast():
                logits = self.model(self._inputs(x)).float()
            y = y.long()
            loss_sum += self.loss_fn(logits, y.to(self.device)).item() * len(x)
            seen += len(x)
            preds = logits.argmax(1).cpu()
            meter.update(preds, y)
            if sum(len(p) for p in kept) < keep:
                kept.append(preds)
        metrics = {f"{prefix}loss": loss_sum / max(seen, 1), **meter.metrics(prefix)}
        preds = torch.cat(kept)[:keep] if kept else torch.empty(0)
        return metrics, meter.matrix, preds

    def samples(self, preds: torch.Tensor) -> dict:
        split = self.data.splits["val"]
        images, targets = split.take(list(range(len(preds))))
        return samples_payload(images, targets.long(), preds)

    # ---- checkpoint state (trainables.trial_state) ---------------------------------------------------------
    def state_extra(self) -> dict:
        return {"task": "segmentation", "decoder": self.cfg.model.decoder, "ignore_index": self.data.ignore_index}

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self, report: Report, checkpoints: Checkpoints) -> dict:
        t = self.cfg.training
        state = checkpoints.latest()
        if state is not None:
            self.restore(state)
        n_samples = min(self.cfg.data.sample_images, len(self.data.splits["val"]))
        for epoch in range(self.start_epoch, t.epochs):
            self.ensure_phase(epoch)
            start = time.perf_counter()
            metrics: dict = {"epoch": epoch + 1}
            metrics.update(self.train_epoch(epoch))
            val, confusion, preds = self.evaluate("val", "val_", n_samples)
            metrics.update(val)
            metrics["lr"] = self.opt.param_groups[0]["lr"]
            metrics["trainable_params"] = self.trainable_params
            metrics["epoch_seconds"] = time.perf_counter() - start
            self.sched.step_epoch(val["val_miou"])
            if val["val_miou"] > self.best["val_miou"]:
                self.best.update(val_miou=val["val_miou"], epoch=epoch + 1, bad_epochs=0)
                metrics["per_class"], metrics["confusion"] = per_class_table(confusion, self.data.class_names)
                if n_samples:
                    metrics["samples"] = self.samples(preds)
                self.keep_best_weights()
            else:
                self.best["bad_epochs"] += 1
            metrics["best_val_miou"], metrics["best_epoch"] = self.best["val_miou"], self.best["epoch"]
            if self.end_epoch(epoch, metrics, report, checkpoints):
                break
        return {"best_val_miou": self.best["val_miou"], "best_epoch": self.best["epoch"],
                "class_names": self.data.class_names}

    def test_metrics(self) -> dict:
        """Test-split metrics of the best epoch's weights."""
        with self.best_weights():
            m, confusion, _ = self.evaluate("test", "test_")
        m["test_per_class"], m["test_confusion"] = per_class_table(confusion, self.data.class_names)
        return m


def preflight(cfg: TrialConfig) -> None:
    """Check every name in a segmentation config (data set, decoder, encoder, strategy, augmentation, loss)."""
    SEG_DATASETS.get(cfg.data.name)
    check_seg_model(cfg.model)
    STRATEGIES.get(cfg.model.strategy)
    SEG_AUGMENTATIONS.get(cfg.data.augment)
    LOSSES.get(cfg.training.loss)
    if cfg.data.sample_images < 0:
        raise ConfigError(f"data.sample_images: must be >= 0, got {cfg.data.sample_images}")
    for key in ("classes", "samples_per_class"):  # classification options: silently ignoring them would mislead
        if getattr(cfg.data, key) is not None:
            raise ConfigError(f"data.{key}: a classification option; segmentation trains on every class and image")


def train(config: dict | TrialConfig, report: Report, checkpoints: Optional[Checkpoints] = None) -> dict:
    """Train one segmentation trial, calling ``report(metrics)`` once per epoch.

    Example:
        >>> rows = []
        >>> train({"task": "segmentation", "data": {"name": "shapes", "image_size": 16, "shapes_count": 16},
        ...        "model": {"arch": "scratch_cnn", "decoder": "unet", "conv_layers": 3},
        ...        "training": {"epochs": 1, "batch_size": 8}}, rows.append)["best_epoch"]
        1
    """
    cfg = trial_config(config)
    preflight(cfg)
    return SegTrainer(cfg).run(report, checkpoints or NoCheckpoints())
