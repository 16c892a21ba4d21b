"""Segmentation metrics from one pixel confusion matrix, accumulated over batches (no logits are kept).

Rows of the confusion matrix are the true class, columns the predicted class; pixels whose target equals the
ignore index are left out everywhere. A class absent from both the target and the prediction has no IoU, Dice or
accuracy (NaN per class) and does not count in the means (``nanmean``); a class absent from the target but
predicted somewhere has IoU 0 and counts.
"""
from __future__ import annotations

import math

import torch


def confusion_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = 255) -> torch.Tensor:
    """``num_classes x num_classes`` int64 pixel counts (row: true, column: predicted) of one batch.

    Example:
        >>> confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0, 255]]), 2).tolist()
        [[1, 0], [0, 0]]
    """
    from torchmetrics.functional.classification import multiclass_confusion_matrix  # slow import: only here
    return multiclass_confusion_matrix(preds.reshape(-1), target.reshape(-1).long(), num_classes,
                                       ignore_index=ignore_index, validate_args=False).long()


class ConfusionMeter:
    """Running pixel confusion over batches: ``update(logits or preds, target)`` then ``metrics()``.

    Example:
        >>> m = ConfusionMeter(2)
        >>> m.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
        >>> round(m.metrics()["miou"], 3)
        0.5
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.long)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` as class indices [B, H, W] or logits [B, C, H, W]."""
        if preds.dim() == target.dim() + 1:
            preds = preds.argmax(1)
        self.matrix += confusion_matrix(preds.detach().cpu(), target.detach().cpu(), self.num_classes,
                                        self.ignore_index)

    def metrics(self, prefix: str = "") -> dict:
        return segmentation_metrics(self.matrix, prefix)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with NaN where den is 0 (the quantity is undefined for that class)."""
    out = num.double() / den.double().clamp(min=1)
    out[den == 0] = math.nan
    return out


def per_class(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class IoU, accuracy (recall), Dice and support (true pixels) from a confusion matrix."""
    conf = conf.long()
    tp = conf.diag()
    true = conf.sum(1)
    pred = conf.sum(0)
    return {"iou": _ratio(tp, true + pred - tp), "accuracy": _ratio(tp, true), "dice": _ratio(2 * tp, true + pred),
            "support": true}


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if len(kept) else math.nan


def segmentation_metrics(conf: torch.Tensor, prefix: str = "") -> dict:
    """``pixel_acc``, ``mean_acc``, ``miou`` and ``dice`` (binary: foreground Dice; else the mean Dice).

    Example:
        >>> m = segmentation_metrics(torch.tensor([[3, 1], [0, 4]]))
        >>> round(m["pixel_acc"], 3), round(m["miou"], 3), round(m["dice"], 3)
        (0.875, 0.775, 0.889)
    """
    pc = per_class(conf)
    total = int(conf.sum())
    dice = float(pc["dice"][1]) if conf.shape[0] == 2 else _nanmean(pc["dice"])
    return {f"{prefix}pixel_acc": float(conf.diag().sum()) / total if total else math.nan,
            f"{prefix}mean_acc": _nanmean(pc["accuracy"]), f"{prefix}miou": _nanmean(pc["iou"]),
            f"{prefix}dice": dice}


def per_class_table(conf: torch.Tensor, class_names: list[str]) -> tuple[dict, list[list[int]]]:
    """Columns ``class_index``, ``class_name``, ``iou``, ``accuracy``, ``support`` (pixels), and the confusion
    matrix as a list of lists, as ``trainables.metrics.per_class_table`` gives them for classification."""
    pc = per_class(conf)
    return {"class_index": list(range(len(class_names))), "class_name": list(class_names),
            "iou": pc["iou"].tolist(), "accuracy": pc["accuracy"].tolist(),
            "support": pc["support"].tolist()}, conf.tolist()
