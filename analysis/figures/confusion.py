"""Normalised confusion matrices of the best trial of each architecture."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from analysis.aggregate import best_per_group
from analysis.figures import figure
from analysis.figures._common import ARCH, fmt_value, metric_label, text_color
from analysis.figures.perclass import class_rows

ANNOTATE_CLASSES = 15
MAX_TICK_LABELS = 40


def confusion_matrix(tables, trial_id: str, split: str = "val", normalize: bool = True) -> pd.DataFrame:
    """The confusion matrix of one trial and split: rows = true class, columns = predicted class, both named
    from the trial's per-class rows (class indices where there are none). With ``normalize`` each row is
    divided by its sum (the class's support), so the diagonal is the per-class recall. Empty without rows.

    Example:
        >>> confusion_matrix(load("results/quickstart"), "abc_00001").round(2)   # doctest: +SKIP
    """
    conf = tables.confusion
    if conf.empty or not {"trial_id", "split", "true", "predicted", "count"} <= set(conf.columns):
        return pd.DataFrame()
    rows = conf[(conf["trial_id"] == trial_id) & (conf["split"] == split)]
    if "epoch" in rows.columns and len(rows):
        rows = rows[rows["epoch"] == rows["epoch"].max()]
    if rows.empty:
        return pd.DataFrame()
    names = class_rows(tables.per_class, [trial_id], split)
    named = dict(zip(names["class_index"].astype(int), names["class_name"])) if len(names) else {}
    k = int(max([rows["true"].max(), rows["predicted"].max()] + [i for i in named])) + 1
    matrix = np.zeros((k, k))
    np.add.at(matrix, (rows["true"].to_numpy(int), rows["predicted"].to_numpy(int)), rows["count"].to_numpy(float))
    if normalize:
        sums = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)
    labels = [named.get(i, str(i)) for i in range(k)]
    return pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))


@figure("confusion_matrices", "Confusion matrices of the best trial per architecture", section="Per class")
def confusion_matrices(tables, metric: str = "val_acc", mode: str = "max", split: str = "val") -> Optional[Figure]:
    """One row-normalised confusion matrix on ``split`` (``val`` or ``test``) per architecture (its best trial,
    chosen on validation); cells are annotated when there are at most 15 classes. None without rows."""
    if tables.confusion.empty:
        return None
    best = best_per_group(tables.trials, [ARCH], metric, mode)
    panels = []
    for _, row in best.iterrows():   # one per architecture: a handful
        matrix = confusion_matrix(tables, row["trial_id"], split)
        if not matrix.empty:
            title = fmt_value(row[ARCH]) if ARCH in best.columns else str(row["trial_id"])
            panels.append((f"{title} ({metric_label(metric)} {row[f'best_{metric}']:.3f})", matrix))
    if not panels:
        return None
    k = max(len(m) for _, m in panels)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    side = min(9.0, max(3.6, 0.42 * k + 1.5))
    fig = Figure(figsize=(side * ncols + 1.0, side * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = colormaps["Blues"]
    for ax, (title, matrix) in zip(axes, panels):
        data = matrix.to_numpy(float)
        image = ax.imshow(data, cmap=cmap, vmin=0, vmax=1)
        n = len(matrix)
        if n <= ANNOTATE_CLASSES:
            for i, j in np.ndindex(n, n):
                if data[i, j] > 0 or i == j:
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7 if n > 8 else 9,
                            color=text_color(cmap(data[i, j])))
        if n <= MAX_TICK_LABELS:
            ax.set_xticks(range(n), matrix.columns, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(n), matrix.index, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.colorbar(image, ax=list(axes[:len(panels)]), shrink=0.8, label="share of the true class")
    if split != "val":
        fig.suptitle(f"{split} split: the best weights of each architecture's best trial (chosen on validation)")
    return fig


@figure("confusion_matrices_test", "Test-split confusion matrices of the best trial per architecture (chosen on "
        "validation)", section="Per class")
def confusion_matrices_test(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """:func:`confusion_matrices` on the test split; None when the study has none."""
    return confusion_matrices(tables, metric, mode, split="test")
