"""Optimizers and learning-rate schedules by name (``training.optimizer``, ``training.scheduler``: the names are
in ``trainables.catalog``, which points at the factories below)."""
from __future__ import annotations

import math

import torch

from trainables.catalog import LR_SCHEDULES, OPTIMIZERS  # the names, descriptions and these factories
from trainables.config import TrainingConfig

Step = tuple  # (torch scheduler or None, when it steps: "batch" | "epoch" | "metric" | None)


def adamw(groups: list[dict], t: TrainingConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


def adam(groups: list[dict], t: TrainingConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)


def sgd(groups: list[dict], t: TrainingConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                           nesterov=t.momentum > 0)


def cosine(opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int, mode: str) -> Step:
    total = max(1, epochs * steps_per_epoch)
    warm = int(t.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f), "batch"


def step(opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int, mode: str) -> Step:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma), "epoch"


def plateau(opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int, mode: str) -> Step:
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=t.gamma, patience=2), "metric"


def constant(opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int, mode: str) -> Step:
    return None, None


def build_optimizer(groups: list[dict], t: TrainingConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(t.optimizer)(groups, t)


class Schedule:
    """Wraps a torch scheduler; ``step_batch`` after every optimizer step, ``step_epoch`` after validation."""

    def __init__(self, opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int,
                 mode: str = "max"):
        self.kind = t.scheduler
        self.sched, self.every = LR_SCHEDULES.get(t.scheduler)(opt, t, epochs, steps_per_epoch, mode)

    def step_batch(self) -> None:
        if self.every == "batch":
            self.sched.step()

    def step_epoch(self, metric: float) -> None:
        if self.every == "epoch":
            self.sched.step()
        elif self.every == "metric":
            self.sched.step(metric)

    def rebase(self, opt: torch.optim.Optimizer, t: TrainingConfig) -> None:
        """Apply ``t``'s learning rate (and weight decay, momentum) to a restored optimizer and schedule.

        A checkpoint written by another trial (Population Based Training exploits one) holds that trial's
        values; the schedule keeps its position, only its base moves."""
        for group in opt.param_groups:
            base = t.lr * group.get("lr_mult", 1.0)
            old = group.get("initial_lr", group["lr"])
            group["lr"] = group["lr"] * base / old if old else base
            group["initial_lr"] = base
            group["weight_decay"] = t.weight_decay
            if "momentum" in group:
                group["momentum"] = t.momentum
        if self.sched is not None and hasattr(self.sched, "base_lrs"):
            self.sched.base_lrs = [g["initial_lr"] for g in opt.param_groups]

    def state_dict(self) -> dict:
        return self.sched.state_dict() if self.sched else {}

    def load_state_dict(self, state: dict) -> None:
        if self.sched and state:
            self.sched.load_state_dict(state)
