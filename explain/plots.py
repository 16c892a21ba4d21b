"""PNG sheets of explanations (matplotlib ``Figure`` objects, rendered by Agg; no pyplot, no window).

Every sheet is rows of probe images by columns: for one trial the columns are the original image and its
explanation; for a comparison they are the configurations of a study, side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from matplotlib.figure import Figure

CORRECT, WRONG, UNKNOWN = "#1a7f37", "#cf222e", "#222222"
CELL_INCHES, DPI = 1.7, 90


@dataclass
class Column:
    """One column of a sheet: a title and, per row, an image plus what to draw on it."""
    title: str
    images: torch.Tensor                          # uint8 N x 3 x H x W (at this column's model size)
    kind: str = "image"                           # image | heat | signed | guided | prediction
    maps: Optional[torch.Tensor] = None           # heat / signed: N x H x W; guided: N x 3 x H x W
    captions: list[str] = field(default_factory=list)
    correct: list[Optional[bool]] = field(default_factory=list)   # prediction: frame and colour


def to_hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).cpu().numpy()


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def guided_rgb(grad: torch.Tensor) -> np.ndarray:
    """A 3 x H x W gradient as an RGB picture: grey is zero, brighter / darker is positive / negative.
    Scaled by the 99th percentile, not the maximum: a few border pixels often dwarf the rest."""
    g = grad.permute(1, 2, 0).float().cpu().numpy()
    scale = float(np.percentile(np.abs(g), 99)) or float(np.abs(g).max()) or 1.0
    return np.clip(0.5 + 0.5 * g / scale, 0, 1)


def _frame(ax, colour: Optional[str], width: float = 3.0) -> None:
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(width)


def draw_cell(ax, col: Column, i: int) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    _frame(ax, None)
    img = to_hwc(col.images[i])
    extent = (0, img.shape[1], img.shape[0], 0)
    if col.kind == "guided":
        ax.imshow(guided_rgb(col.maps[i]), extent=extent, interpolation="nearest")
    else:
        ax.imshow(img, extent=extent, interpolation="nearest")
    if col.kind == "heat":
        ax.imshow(_normalise(col.maps[i].numpy()), cmap="jet", alpha=0.45, extent=extent, interpolation="bilinear")
    elif col.kind == "signed":
        m = col.maps[i].numpy()
        a = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap="RdBu_r", vmin=-a, vmax=a, alpha=0.55, extent=extent, interpolation="nearest")
    colour = UNKNOWN
    if col.correct and col.correct[i] is not None:
        colour = CORRECT if col.correct[i] else WRONG
        if col.kind == "prediction" and not col.correct[i]:
            _frame(ax, WRONG)
    if col.captions:
        ax.set_title(col.captions[i], fontsize=7, color=colour, pad=2)


def grid_axes(fig_title: str, rows: int, cols: int, head: float, left: float, caption: float) -> tuple:
    """A figure with rows x cols square cells laid out by hand (in inches): ``head`` above the first row for
    titles, ``left`` for row labels, ``caption`` above each cell. Much faster than a layout engine."""
    cell, gap, right, bottom = CELL_INCHES, 0.12, 0.1, 0.1
    width = left + cols * cell + (cols - 1) * gap + right
    height = 0.4 + head + rows * (cell + caption) + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.suptitle(fig_title, fontsize=10, y=1 - 0.12 / height, va="top")
    axes = np.empty((rows, cols), dtype=object)
    for r in range(rows):
        top = 0.4 + head + r * (cell + caption) + caption
        for c in range(cols):
            x = left + c * (cell + gap)
            axes[r, c] = fig.add_axes((x / width, 1 - (top + cell) / height, cell / width, cell / height))
    return fig, axes


def sheet(columns: list[Column], row_titles: list[str], title: str) -> Figure:
    """Rows = probe images, columns = ``columns``."""
    head = 0.14 * max(c.title.count("\n") + 1 for c in columns)
    left = 0.15 + 0.12 * max(t.count("\n") + 1 for t in row_titles)
    fig, axes = grid_axes(title, len(row_titles), len(columns), head, left, 0.22)
    for c, col in enumerate(columns):
        axes[0, c].annotate(col.title, (0.5, 1.0), xytext=(0, 14), xycoords="axes fraction",
                            textcoords="offset points", ha="center", va="bottom", fontsize=8, weight="bold")
        for r in range(len(row_titles)):
            draw_cell(axes[r, c], col, r)
    for r, name in enumerate(row_titles):
        axes[r, 0].set_ylabel(name, fontsize=7)
    return fig


def prediction_grid(images: torch.Tensor, captions: list[str], correct: list[Optional[bool]], rows: int,
                    cols: int, title: str) -> Figure:
    """A rows x cols grid of predictions: green titles when right, red titles and a red frame when wrong."""
    n = min(len(images), rows * cols)
    rows = max(1, math.ceil(n / cols))
    lines = max((c.count("\n") + 1 for c in captions[:n]), default=1)
    fig, axes = grid_axes(title, rows, cols, 0.0, 0.1, 0.14 * lines + 0.06)
    col = Column("", images[:n], "prediction", captions=captions[:n], correct=correct[:n])
    for k, ax in enumerate(axes.flat):
        if k < n:
            draw_cell(ax, col, k)
        else:
            ax.axis("off")
    return fig


def filter_tiles(weight: torch.Tensor, limit: int = 64) -> list[np.ndarray]:
    """First-layer filters as pictures (RGB when they read 3 channels), each scaled to its own range."""
    w = weight.detach().float().cpu()[:limit]
    if w.shape[1] == 3:
        return [_normalise(f.permute(1, 2, 0).numpy()) for f in w]
    return [_normalise(f[0].numpy()) for f in w]


def filter_mosaic(weight: torch.Tensor, limit: int = 64) -> np.ndarray:
    """Up to ``limit`` filters tiled in a square grid (up to 8 x 8), one pixel of white between them."""
    tiles = filter_tiles(weight, limit)
    side = max(1, math.ceil(math.sqrt(len(tiles))))
    k_h, k_w = tiles[0].shape[:2]
    mosaic = np.ones((side * (k_h + 1) - 1, side * (k_w + 1) - 1, 3))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, side)
        mosaic[r * (k_h + 1):r * (k_h + 1) + k_h, c * (k_w + 1):c * (k_w + 1) + k_w] = (
            tile if tile.ndim == 3 else tile[..., None])
    return mosaic


def filters_figure(panels: list[tuple[str, torch.Tensor]], title: str) -> Figure:
    """The first-layer filters of each configuration as one up-to-8x8 mosaic, side by side."""
    fig = Figure(figsize=(2.6 * len(panels) + 0.4, 3.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, weight) in zip(axes, panels):
        ax.imshow(filter_mosaic(weight), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}\n{min(len(weight), 64)} of {len(weight)}, {tuple(weight.shape[1:])}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
