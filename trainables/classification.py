"""The classification task: images and labels in, logits out, accuracy / F1 / per-class tables as metrics.

The loop (:mod:`trainables.loop`) trains it; this module supplies the data (decoded once, placed on the device
when it fits), the model (any of :mod:`trainables.models`), the phase's inputs (images, or the frozen part's
cached outputs: :mod:`trainables.feature_cache`), cross-entropy and ``evaluate``. ``train(config, report)`` calls
``report(metrics)`` once per epoch (``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
``val_macro_f1``, ...; the best epoch's report adds ``per_class`` and ``confusion``; the final one ``test_*`` of the
best weights when the data has a test split).

Data parallel: validation and test logits are predicted by every rank on its slice and gathered, so every rank
computes the metrics one process would.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F

from trainables.batch_augment import batch_augment
from trainables.config import TrialConfig
from trainables.data import ImageData, Split, load_raw
from trainables.data.shared import prepared
from trainables.distributed import gather_rows, rank_world, shard_bounds
from trainables.feature_cache import for_phase
from trainables.freezing import STRATEGIES, Plan
from trainables.inputs import ImageInputs
from trainables.loop import entry_points
from trainables.metrics import classification_metrics, per_class_table
from trainables.models import ModelBundle, build_model
from trainables.placement import place
from trainables.tasks import Evaluation, Task
from trainables.transforms import AUGMENTATIONS, Preprocess

log = logging.getLogger(__name__)


class ClassificationTask(Task):
    name = "classification"
    default_objective = "val_acc"

    def __init__(self, cfg: TrialConfig, device: torch.device, world: int):
        super().__init__(cfg, device, world)
        augment_factory = AUGMENTATIONS.get(cfg.data.augment)
        raw = load_raw(cfg.data)
        torch.manual_seed(cfg.seed)
        self.bundle: ModelBundle = build_model(cfg.model, len(raw.class_names), cfg.data.image_size)
        self.image_size = cfg.data.image_size or self.bundle.input_size
        cuda = device.type == "cuda"
        self.data: ImageData
        self.data, where = place(prepared(raw, cfg.data, self.image_size), device, cfg.training.data_on_gpu_mb)
        log.info("images in %s", where)
        self.model = self.bundle.model.to(device, memory_format=torch.channels_last if cuda else
                                          torch.contiguous_format)
        self.pre = Preprocess(self.bundle.mean, self.bundle.std, device, augment_factory(self.image_size),
                              channels_last=cuda,
                              batch_augment=batch_augment(cfg.data.augment, self.image_size) if cuda else None)
        self.pin = cuda  # DataLoaders of lazily read sets hand over page-locked batches

    @staticmethod
    def preflight(cfg: TrialConfig) -> None:
        """Check every name in the config (model, data set, strategy, augmentation) before any work starts."""
        from trainables.data import DATASETS
        from trainables.models import check_arch
        check_arch(cfg.model.arch)
        DATASETS.get(cfg.data.name)
        STRATEGIES.get(cfg.model.strategy)
        AUGMENTATIONS.get(cfg.data.augment)

    def inputs(self, net, plan: Plan, frozen_bn, autocast, amp, gen):
        images = self.images(net, gen)
        cached, note = for_phase(self.cfg, self.bundle, plan, frozen_bn, images, autocast, amp, self.world)
        log.info("phase %d: %s", plan.phase, note)
        if cached is not None:
            cached.gen = gen
        return cached or images

    def loss(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=self.cfg.training.label_smoothing)

    def batch_sums(self, logits, y) -> list:
        return [(logits.argmax(1) == y).sum()]

    def train_metrics(self, sums: list, seen: int) -> dict:
        return {"train_acc": sums[0] / max(seen, 1)}

    # ---- evaluation -------------------------------------------------------------------------------------
    def images(self, net=None, gen: Optional[torch.Generator] = None) -> ImageInputs:
        return ImageInputs(self.data.splits, self.pre, net or self.model, self.model, gen or torch.Generator(),
                           self.cfg.data.num_workers, self.pin)

    @torch.no_grad()
    def predict(self, split: str, inputs=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32, CPU) and labels of a whole split (each rank predicts a slice; all get the whole),
        from ``inputs`` (default: the images through the whole model)."""
        inputs = inputs or self.images()
        if self.world > 1:
            part = inputs.splits[split]
            lo, hi = shard_bounds(len(part), *rank_world())
            images = (part.images[lo:hi] if isinstance(part.images, torch.Tensor)
                      else torch.utils.data.Subset(part.images, range(lo, hi)))
            sliced = ImageInputs({split: Split(images, part.labels[lo:hi])}, self.pre, inputs.net, self.model,
                                 inputs.gen, self.cfg.data.num_workers, self.pin)
            logits, labels = self._predict(sliced, split)
            return gather_rows(logits, self.device, self.world), gather_rows(labels, self.device, self.world)
        return self._predict(inputs, split)

    def _predict(self, inputs, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        logits, labels = [], []
        bs = max(self.cfg.training.batch_size, 256)
        for x, y in inputs.batches(split, bs, False):
            x, _ = inputs.prepare(x, y, train=False)
            with self.autocast():
                out = inputs.forward(x, train=False)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
        return torch.cat(logits), torch.cat(labels)

    def evaluate(self, inputs, split: str, prefix: str) -> Evaluation:
        logits, labels = self.predict(split, inputs)
        m = {f"{prefix}loss": F.cross_entropy(logits, labels).item()}
        m.update(classification_metrics(logits, labels, self.data.num_classes, prefix))

        def details() -> dict:
            per_class, confusion = per_class_table(logits, labels, self.data.class_names)
            return {"per_class": per_class, "confusion": confusion}
        return Evaluation(m, details)


# Trainer(cfg) (tests and benchmarks drive it epoch by epoch), preflight(cfg), train(config, report, checkpoints)
Trainer, preflight, train = entry_points(ClassificationTask)
