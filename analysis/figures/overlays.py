"""Segmentation: image | ground truth | prediction on fixed validation images, for the best trial of each group.

The segmentation trainable reports its predictions on the same first validation images at every best epoch as
PNGs (``samples`` table: ``image_png`` RGB, ``target_png`` / ``pred_png`` class indices, 255 = ignored); the
figure only decodes them, so it needs neither the model nor torch.
"""
from __future__ import annotations

import base64
import io
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.figures import figure
from analysis.figures.perclass import _configurations

IGNORE = 255
MAX_IMAGES = 4          # rows
MAX_CONFIGS = 6         # prediction columns
MAX_LEGEND = 20


def decode_png(text: str) -> np.ndarray:
    """A base64 PNG as an array (H, W, 3) for RGB or (H, W) for class-index masks."""
    from PIL import Image
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im)


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (tab20, then hsv); class 0 of a binary task is black (background)."""
    if n <= 2:
        return np.array([[0, 0, 0], [255, 215, 0]], dtype=np.uint8)[:max(n, 1)]
    cmap = colormaps["tab20"] if n <= 20 else colormaps["hsv"]
    return (np.array([cmap(i / (n if n > 20 else 20))[:3] for i in range(n)]) * 255).astype(np.uint8)


def colorize(mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Class indices -> RGB; ignored pixels (255) and unknown indices are white."""
    out = np.full((*mask.shape, 3), 255, dtype=np.uint8)
    known = mask < len(colours)
    out[known] = colours[mask[known]]
    return out


def class_names(tables) -> list[str]:
    pc = tables.per_class
    if pc.empty or "class_name" not in pc.columns:
        return []
    rows = pc.drop_duplicates("class_index").sort_values("class_index")
    return [str(n) for n in rows["class_name"]]


def latest_samples(samples: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    rows = samples[samples["trial_id"] == trial_id]
    if rows.empty:
        return rows
    return rows[rows["epoch"] == rows["epoch"].max()].sort_values("sample_index").head(MAX_IMAGES)


@figure("segmentation_overlays", "Predictions on fixed validation images (best trial of each configuration)",
        section="Segmentation")
def segmentation_overlays(tables, metric: str = "val_miou", mode: str = "max") -> Optional[Figure]:
    """Rows: validation images; columns: image, ground truth, then the prediction of each configuration's best
    trial (architecture x strategy), coloured by class with a legend of class names."""
    samples = tables.samples
    if samples is None or samples.empty or "pred_png" not in samples.columns:
        return None
    configs = _configurations(tables.trials[tables.trials["trial_id"].isin(set(samples["trial_id"]))],
                              metric, mode).head(MAX_CONFIGS)
    if configs.empty:
        return None
    columns = [(label, latest_samples(samples, tid)) for tid, label in zip(configs["trial_id"], configs["label"])]
    columns = [(label, rows) for label, rows in columns if len(rows)]
    if not columns:
        return None
    reference = columns[0][1]
    names = class_names(tables)
    targets = [decode_png(t) for t in reference["target_png"]]
    n_classes = max(len(names), max(int(m[m != IGNORE].max(initial=0)) for m in targets) + 1)
    colours = palette(n_classes)
    n_rows, n_cols = len(reference), 2 + len(columns)
    fig = Figure(figsize=(1.9 * n_cols, 1.9 * n_rows + 0.9))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (index, image, target) in enumerate(zip(reference["sample_index"], reference["image_png"], targets)):
        panels = [("image", decode_png(image)), ("ground truth", colorize(target, colours))]
        for label, rows in columns:
            match = rows[rows["sample_index"] == index]
            pred = colorize(decode_png(match["pred_png"].iloc[0]), colours) if len(match) else None
            panels.append((label, pred))
        for c, (title, picture) in enumerate(panels):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if picture is not None:
                ax.imshow(picture, interpolation="nearest")
            if r == 0:
                ax.set_title(title, fontsize=7)
    shown = names[:MAX_LEGEND] if names else [str(i) for i in range(min(n_classes, MAX_LEGEND))]
    fig.legend(handles=[Patch(color=colours[i] / 255, label=n) for i, n in enumerate(shown)],
               loc="lower center", ncol=min(len(shown), 6), fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.9 / (1.9 * n_rows + 0.9) + 0.02)
    return fig
