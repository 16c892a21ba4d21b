"""Parallel coordinates: every finished trial as a line across its swept hyperparameters, coloured by the metric."""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from analysis.figures import figure
from analysis.figures._common import MAX_CURVES, metric_label, short
from analysis.figures.params import encode, swept_params

MISSING_Y = -0.08   # where a numeric axis puts trials without a value


def _normalise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = high - low if high > low else 1.0
    out = (values - low) / span
    return np.where(np.isfinite(out), out, MISSING_Y), low, high


@figure("parallel_coordinates", "Parallel coordinates of the swept hyperparameters", section="Hyperparameters")
def parallel_coordinates(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """One axis per swept hyperparameter (log10 for the learning rate, integer codes for categories), each
    normalised to [0, 1], plus the metric; one line per finished trial coloured by the metric. The best
    trials are drawn last (on top); at most 500 lines are drawn, the best 50 always among them."""
    ok, params = swept_params(tables.trials, metric)
    if len(params) < 2 or len(ok) < 3:
        return None
    col = f"best_{metric}"
    score = ok[col].to_numpy(float)
    order = np.argsort(score if mode == "max" else -score, kind="stable")   # worst first, best drawn on top
    if len(order) > MAX_CURVES:
        rest = order[:-50]
        rest = np.sort(np.random.default_rng(0).choice(rest, MAX_CURVES - 50, replace=False))
        order = np.concatenate([rest, order[-50:]])
    columns, ticks = [], []
    for p in params:
        values = encode(ok, p)
        if p.kind == "categorical":
            span = max(1, len(p.categories) - 1)
            # a little vertical jitter shows how many trials share a category
            jitter = np.random.default_rng(0).uniform(-0.025, 0.025, len(values))
            columns.append(values / span + jitter)
            ticks.append([(i / span, label) for i, label in enumerate(p.categories)])
        else:
            norm, low, high = _normalise(values)
            columns.append(norm)
            fmt = (lambda v: f"{10 ** v:.2g}") if p.kind == "log" else (lambda v: f"{v:.3g}")
            marks = [(0.0, fmt(low)), (1.0, fmt(high))] if high > low else [(0.0, fmt(low))]
            if not np.isfinite(values).all():
                marks.append((MISSING_Y, "n/a"))
            ticks.append(marks)
    metric_norm, low, high = _normalise(score)
    columns.append(metric_norm)
    ticks.append([(0.0, f"{low:.3f}"), (1.0, f"{high:.3f}")])
    ys = np.column_stack(columns)[order]
    xs = np.arange(ys.shape[1], dtype=float)
    segments = np.stack([np.broadcast_to(xs, ys.shape), ys], axis=-1)
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"]
    norm = Normalize(low, high if high > low else low + 1e-9)
    fig = Figure(figsize=(max(7.0, 1.6 * len(xs) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments, colors=cmap(norm(score[order])), lw=1.0, alpha=0.7))
    for x, marks in zip(xs, ticks):
        ax.axvline(x, color="0.3", lw=0.8)
        for y, label in marks:
            ax.text(x + 0.04, y, label, fontsize=8, va="center", ha="left",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    names = [short(p.column) + (" (log10)" if p.kind == "log" else "") for p in params] + [metric_label(metric)]
    ax.set_xticks(xs, names, rotation=15 if len(xs) > 5 else 0)
    ax.set_xlim(-0.1, xs[-1] + 0.6)
    ax.set_ylim(MISSING_Y - 0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"best {metric_label(metric)}")
    shown = f"{len(order)} of {len(ok)}" if len(order) < len(ok) else f"{len(ok)}"
    ax.set_title(f"Swept hyperparameters of {shown} finished trials (axes normalised to [0, 1])")
    return fig
