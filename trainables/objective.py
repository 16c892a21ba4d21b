"""The one objective of a trial: which metric, maximised or minimised, decides "best".

A study's ``search.metric`` / ``search.mode`` travel into every trial as ``training.objective`` /
``training.objective_mode``; a standalone trial uses its task's default (``val_acc`` for classification,
``val_miou`` for segmentation). The training loop asks only this object, so the best epoch, early stopping, the
plateau schedule, the weights evaluated on the test split, the per-class and confusion payloads and the weights
``explain`` / ``predict`` load all follow the same epoch.

Example:
    >>> o = Objective("val_loss", "min")
    >>> o.better(0.3, None), o.better(0.3, 0.2), o.better(0.1, 0.2)
    (True, False, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from trainables.errors import ConfigError, suggest

MODES = ("max", "min")


def natural_mode(metric: str) -> str:
    """``min`` for losses, ``max`` for everything else (accuracy, F1, IoU, ...)."""
    return "min" if metric.endswith("_loss") else "max"


@dataclass(frozen=True)
class Objective:
    metric: str = "val_acc"
    mode: str = "max"

    @classmethod
    def of(cls, metric: Optional[str], mode: Optional[str], default: str) -> "Objective":
        """From ``training.objective`` / ``training.objective_mode``, with the task's default metric."""
        metric = metric or default
        mode = mode or natural_mode(metric)
        if mode not in MODES:
            raise ConfigError(f"training.objective_mode: {mode!r} is not one of max, min{suggest(str(mode), MODES)}")
        return cls(metric, mode)

    def value(self, metrics: dict) -> float:
        """The objective's value in one epoch's metrics; a metric the task does not report is a ConfigError."""
        if self.metric not in metrics:
            reported = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and k.startswith("val_"))
            raise ConfigError(f"training.objective: {self.metric!r} is not reported by this task"
                              f"{suggest(self.metric, reported) or ' (reported: ' + ', '.join(reported) + ')'}")
        return float(metrics[self.metric])

    def better(self, value: float, best: Optional[float]) -> bool:
        """Whether ``value`` improves on ``best`` (None: nothing yet). NaN never improves."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if self.mode == "max" else value < best
