"""Tasks by name: what one kind of trial (classification, segmentation) supplies to the one training loop.

The loop (:mod:`trainables.loop`) owns epochs, phases, checkpoints, early stopping, the best weights, the test
evaluation and reporting. A task owns only what differs: its data, its model, how batches become inputs, its loss
and ``evaluate(inputs, split, prefix) -> Evaluation`` (metrics now; per-class table, confusion and extras on
demand, which the loop asks for only at the epochs the objective says are best).

A new task is one file with a :class:`Task` subclass and one registration here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

from trainables.registry import Registry

TASKS: Registry = Registry("task")


# task modules import torch, timm and their data sets: only when a trial of that task runs
TASKS.add("classification", "trainables.classification:ClassificationTask",
          "images -> one label; accuracy, macro F1, per-class tables, confusion matrix")
TASKS.add("segmentation", "trainables.segmentation.trainer:SegmentationTask",
          "images -> a label per pixel; mIoU, Dice, per-class IoU, sample predictions")

# What each task's epochs report that can be a study's objective (search.metric), checked before any trial runs.
OBJECTIVES = {
    "classification": ("val_acc", "val_loss", "val_top5", "val_macro_f1", "val_precision", "val_recall",
                       "train_acc", "train_loss"),
    "segmentation": ("val_miou", "val_loss", "val_dice", "val_pixel_acc", "val_mean_acc", "train_loss"),
}


def task_class(name: str) -> type["Task"]:
    return TASKS.get(name)


@dataclass
class Evaluation:
    """One split's metrics, and its payloads computed only when asked (``details()``)."""
    metrics: dict
    details: Callable[[], dict] = field(default=lambda: {})


class Task:
    """The task plug-in: set up by ``__init__(cfg, device, world)``, then used by the loop.

    After ``__init__`` a task has ``bundle`` (a :class:`~trainables.models.ModelBundle`), ``model`` (on the
    device), ``data`` (``splits``, ``class_names``, ``num_classes``) and ``image_size``.
    """

    name: str = ""
    default_objective: str = "val_acc"

    def __init__(self, cfg, device, world: int) -> None:
        self.cfg, self.device, self.world = cfg, device, world
        self.autocast = contextlib.nullcontext  # the loop sets the trial's (mixed precision on CUDA)

    @staticmethod
    def preflight(cfg) -> None:
        """Check every name in the config before any work starts (ConfigError naming the key)."""

    def inputs(self, net, plan, frozen_bn: list, autocast, amp, gen) -> "object":
        """This phase's :class:`~trainables.inputs.Inputs` (images, or cached outputs of the frozen part)."""
        raise NotImplementedError

    def loss(self, logits, y):
        raise NotImplementedError

    def batch_sums(self, logits, y) -> list:
        """Per-batch sums the epoch adds up (e.g. correct predictions), besides loss and count."""
        return []

    def train_metrics(self, sums: list, seen: int) -> dict:
        return {}

    def evaluate(self, inputs, split: str, prefix: str) -> Evaluation:
        """Metrics of ``split`` keyed ``{prefix}...``; ``details()``: ``per_class``, ``confusion`` (and extras)."""
        raise NotImplementedError

    def state_extra(self) -> dict:
        return {}
