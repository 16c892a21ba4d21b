"""Classification metrics from torchmetrics on a whole split's logits (no hand-written confusion or F1)."""
from __future__ import annotations

import torch


def _C():
    # torchmetrics takes seconds to import: only when metrics are computed, not for CLI errors
    from torchmetrics.functional import classification
    return classification


def classification_metrics(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                           prefix: str = "val_") -> dict:
    """Scalar metrics for one split, keyed ``{prefix}acc``, ``{prefix}macro_f1``, ...

    Example:
        >>> m = classification_metrics(torch.eye(3), torch.tensor([0, 1, 1]), 3)
        >>> round(m["val_acc"], 3)
        0.667
    """
    C = _C()
    preds = logits.argmax(1)
    kw = {"num_classes": num_classes}
    out = {
        f"{prefix}acc": C.multiclass_accuracy(preds, target, average="micro", **kw).item(),
        f"{prefix}macro_f1": C.multiclass_f1_score(preds, target, average="macro", **kw).item(),
        f"{prefix}precision": C.multiclass_precision(preds, target, average="macro", **kw).item(),
        f"{prefix}recall": C.multiclass_recall(preds, target, average="macro", **kw).item(),
    }
    if num_classes >= 10:
        out[f"{prefix}top5"] = C.multiclass_accuracy(logits, target, top_k=5, average="micro", **kw).item()
    return out


def per_class_table(logits: torch.Tensor, target: torch.Tensor, class_names: list[str]) -> dict:
    """Per-class precision, recall, F1, accuracy and support, as columns (lists), plus the confusion matrix."""
    C = _C()
    k = len(class_names)
    preds = logits.argmax(1)
    conf = C.multiclass_confusion_matrix(preds, target, num_classes=k)
    support = conf.sum(1)
    return {
        "class_index": list(range(k)),
        "class_name": list(class_names),
        "precision": C.multiclass_precision(preds, target, num_classes=k, average="none").tolist(),
        "recall": C.multiclass_recall(preds, target, num_classes=k, average="none").tolist(),
        "f1": C.multiclass_f1_score(preds, target, num_classes=k, average="none").tolist(),
        # per-class accuracy as the earlier projects reported it: correct / support of the class
        "accuracy": (conf.diag().float() / support.clamp(min=1)).tolist(),
        "support": support.tolist(),
    }, conf.tolist()
