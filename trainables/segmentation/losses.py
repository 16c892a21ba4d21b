"""Segmentation losses by name (``training.loss``): ``ce``, ``bce``, ``dice``, ``bce_dice``, ``ce_dice``.

One convention for every model: it outputs C logits per pixel, and a binary task has two classes (background,
foreground) read with softmax / argmax like any other. ``bce`` is the binary cross-entropy of the foreground
logit difference ``z1 - z0`` (``sigmoid(z1 - z0)`` is the softmax probability of the foreground), so it only
applies to two-class tasks; for two logits it has the same value as ``ce``, and it is there so that binary
studies name the loss the literature names. ``dice`` is the soft Dice loss (binary: of the foreground; else the
mean over the classes present in the batch's targets). Pixels equal to the ignore index count nowhere.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from trainables.catalog import LOSSES  # training.loss: the names, pointing at the factories below
from trainables.errors import ConfigError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [B, C, H, W], target [B, H, W]) -> scalar
BINARY_ONLY = ("bce", "bce_dice")
SMOOTH = 1.0  # Dice smoothing: an empty class predicted empty has loss 0, not 0/0


def _binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    valid = target != ignore_index
    diff = (logits[:, 1] - logits[:, 0])[valid]
    if diff.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(diff, (target[valid] == 1).to(diff.dtype))


def _soft_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """1 - soft Dice over the batch: foreground only for two classes, else the mean over present classes."""
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(target == ignore_index, 0, target), num_classes).permute(0, 3, 1, 2)
    onehot = onehot.to(probs.dtype) * valid
    inter = (probs * onehot).sum((0, 2, 3))
    sizes = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + SMOOTH) / (sizes + SMOOTH)
    if num_classes == 2:
        return 1 - dice[1]
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - (dice[present].mean() if present.any() else dice.mean())


def build_loss(name: str, num_classes: int, ignore_index: int = 255, label_smoothing: float = 0.0) -> Loss:
    """The loss ``name`` for ``num_classes`` classes; ``bce`` / ``bce_dice`` need a two-class task.

    Example:
        >>> loss = build_loss("bce_dice", 2)
        >>> float(loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))) > 0
        True
    """
    factory = LOSSES.get(name)
    if name in BINARY_ONLY and num_classes != 2:
        raise ConfigError(f"training.loss: {name} is for binary tasks (2 classes: background, foreground); "
                          f"this data set has {num_classes} classes (use ce, dice or ce_dice)")
    return factory(ignore_index, label_smoothing)


def ce(ignore_index: int, label_smoothing: float) -> Loss:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != ignore_index).any():  # an all-ignore batch: 0, not NaN
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing)
    return loss


def bce(ignore_index: int, label_smoothing: float) -> Loss:
    return lambda logits, target: _binary_cross_entropy(logits, target, ignore_index)


def dice(ignore_index: int, label_smoothing: float) -> Loss:
    return lambda logits, target: _soft_dice(logits, target, ignore_index)


def bce_dice(ignore_index: int, label_smoothing: float) -> Loss:
    return lambda logits, target: (_binary_cross_entropy(logits, target, ignore_index)
                                   + _soft_dice(logits, target, ignore_index))


def ce_dice(ignore_index: int, label_smoothing: float) -> Loss:
    ce_loss = ce(ignore_index, label_smoothing)
    return lambda logits, target: ce_loss(logits, target) + _soft_dice(logits, target, ignore_index)
