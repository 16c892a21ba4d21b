"""Optimizers and learning-rate schedules by name."""
from __future__ import annotations

import math

import torch

from trainables.config import TrainingConfig
from trainables.registry import Registry

OPTIMIZERS: Registry = Registry("training.optimizer")
OPTIMIZERS.register("adamw")(lambda groups, t: torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay))
OPTIMIZERS.register("adam")(lambda groups, t: torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay))
OPTIMIZERS.register("sgd")(lambda groups, t: torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum,
                                                              weight_decay=t.weight_decay, nesterov=t.momentum > 0))


def build_optimizer(groups: list[dict], t: TrainingConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(t.optimizer)(groups, t)


class Schedule:
    """Wraps a torch scheduler; ``step_batch`` after every optimizer step, ``step_epoch`` after validation."""

    def __init__(self, opt: torch.optim.Optimizer, t: TrainingConfig, epochs: int, steps_per_epoch: int):
        self.kind = t.scheduler
        total = max(1, epochs * steps_per_epoch)
        warm = int(t.warmup_epochs * steps_per_epoch)
        if self.kind == "cosine":
            def f(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
            self.sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
        elif self.kind == "step":
            self.sched = torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma)
        elif self.kind == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=t.gamma, patience=2)
        else:
            self.sched = None

    def step_batch(self) -> None:
        if self.kind == "cosine":
            self.sched.step()

    def step_epoch(self, metric: float) -> None:
        if self.kind == "step":
            self.sched.step()
        elif self.kind == "plateau":
            self.sched.step(metric)

    def state_dict(self) -> dict:
        return self.sched.state_dict() if self.sched else {}

    def load_state_dict(self, state: dict) -> None:
        if self.sched and state:
            self.sched.load_state_dict(state)
