"""The segmentation task: images and masks in, per-pixel logits out, IoU / Dice / pixel accuracy as metrics.

The loop (:mod:`trainables.loop`) trains it, with the contract of classification: ``train(config, report,
checkpoints)`` calls ``report(metrics)`` once per epoch (``epoch``, ``train_loss``, ``val_loss``,
``val_pixel_acc``, ``val_mean_acc``, ``val_miou``, ``val_dice``, ``lr``, ``trainable_params``, ``epoch_seconds``,
``best_<objective>``, ``best_epoch``, ``train_images_per_s``; the objective defaults to ``val_miou``). The best
epoch's report also carries ``per_class`` (columns ``class_index``, ``class_name``, ``iou``, ``accuracy``,
``support``), ``confusion`` (the pixel confusion matrix) and ``samples`` (PNG predictions on the first
``data.sample_images`` val images); the final epoch adds ``test_*`` metrics of the best weights when the data set
has a test split. One process per trial.
"""
from __future__ import annotations

from typing import Iterator

import torch

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.freezing import STRATEGIES, Plan
from trainables.loop import entry_points
from trainables.segmentation.data import SEG_DATASETS, SegSplit, load_seg_data
from trainables.segmentation.losses import LOSSES, build_loss
from trainables.segmentation.metrics import ConfusionMeter, per_class_table
from trainables.segmentation.models import build_seg_model, check_seg_model, default_input_size
from trainables.segmentation.samples import samples_payload
from trainables.segmentation.transforms import SEG_AUGMENTATIONS, normalize
from trainables.tasks import Evaluation, Task


class SegInputs:
    """Images and masks of a segmentation data set: joint augmentation in training, then normalisation."""

    kind = "images"

    def __init__(self, splits: dict, bundle, augment, device: torch.device, gen: torch.Generator,
                 num_workers: int = 0):
        self.splits, self.bundle, self.augment, self.device, self.gen = splits, bundle, augment, device, gen
        self.num_workers = num_workers
        self.model = bundle.model

    def batches(self, split: str, batch_size: int, shuffle: bool, shard=(0, 1)) -> Iterator[tuple]:
        """(uint8 images, masks) batches; the shuffle order comes from the trial's generator."""
        part: SegSplit = self.splits[split]
        n = len(part)
        order = torch.randperm(n, generator=self.gen) if shuffle else torch.arange(n)
        if part.in_memory:
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                yield part.images[idx], part.masks[idx]
        else:
            yield from torch.utils.data.DataLoader(torch.utils.data.Subset(part.images, order.tolist()),
                                                   batch_size=batch_size, num_workers=self.num_workers)

    def prepare(self, x, y, train):
        if train and self.augment is not None:
            x, y = self.augment(x, y, self.gen)
        return normalize(x, self.bundle.mean, self.bundle.std, self.device), y.to(self.device).long()

    def forward(self, x, train):
        return self.model(x)


class SegmentationTask(Task):
    name = "segmentation"
    default_objective = "val_miou"

    def __init__(self, cfg: TrialConfig, device: torch.device, world: int):
        super().__init__(cfg, device, world)
        if world > 1:
            raise ConfigError("resources.workers_per_trial: segmentation trains in one process per trial")
        t = cfg.training
        augment_factory = SEG_AUGMENTATIONS.get(cfg.data.augment)
        self.image_size = cfg.data.image_size or default_input_size(cfg.model)
        self.data = load_seg_data(cfg.data, self.image_size)
        self.loss_fn = build_loss(t.loss, self.data.num_classes, self.data.ignore_index, t.label_smoothing)
        torch.manual_seed(cfg.seed)
        self.bundle = build_seg_model(cfg.model, self.data.num_classes)
        self.model = self.bundle.model.to(device)
        self.augment = augment_factory(self.image_size)

    @staticmethod
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

    def inputs(self, net, plan: Plan, frozen_bn, autocast, amp, gen) -> SegInputs:
        return SegInputs(self.data.splits, self.bundle, self.augment, self.device, gen, self.cfg.data.num_workers)

    def loss(self, logits, y):
        return self.loss_fn(logits, y)

    def state_extra(self) -> dict:
        return {"decoder": self.cfg.model.decoder, "ignore_index": self.data.ignore_index}

    @torch.no_grad()
    def evaluate(self, inputs: SegInputs, split: str, prefix: str) -> Evaluation:
        """Metrics of a split; ``details()``: per-class IoU, the pixel confusion matrix and (val) sample PNGs."""
        keep = min(self.cfg.data.sample_images, len(self.data.splits["val"])) if split == "val" else 0
        self.model.eval()
        meter = ConfusionMeter(self.data.num_classes, self.data.ignore_index)
        loss_sum, seen, kept = 0.0, 0, []
        for x, y in inputs.batches(split, self.cfg.training.batch_size, False):
            x, target = inputs.prepare(x, y, train=False)
            with self.autocast():
                logits = inputs.forward(x, train=False).float()
            loss_sum += self.loss_fn(logits, target).item() * len(x)
            seen += len(x)
            preds = logits.argmax(1).cpu()
            meter.update(preds, y.long())
            if sum(len(p) for p in kept) < keep:
                kept.append(preds)
        metrics = {f"{prefix}loss": loss_sum / max(seen, 1), **meter.metrics(prefix)}

        def details() -> dict:
            per_class, confusion = per_class_table(meter.matrix, self.data.class_names)
            out = {"per_class": per_class, "confusion": confusion}
            if keep:
                images, targets = self.data.splits["val"].take(list(range(keep)))
                out["samples"] = samples_payload(images, targets.long(), torch.cat(kept)[:keep])
            return out
        return Evaluation(metrics, details)


# SegTrainer(cfg), preflight(cfg), train(config, report, checkpoints); e.g.
#   train({"task": "segmentation", "data": {"name": "shapes", "image_size": 16, "shapes_count": 16},
#          "model": {"arch": "scratch_cnn", "decoder": "unet", "conv_layers": 3}, "training": {"epochs": 1}}, print)
SegTrainer, preflight, train = entry_points(SegmentationTask)
