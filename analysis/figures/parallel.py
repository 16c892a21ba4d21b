"""Parallel coordinates: every finished trial as a line across its swept hyperparameters, coloured by the metric."""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.figures import figure
from analysis.figures._common import MAX_CURVES, log_ticks, metric_label, short
from analysis.figures.params import encode, swept_params

MISSING_Y = -0.08   # where a numeric axis puts trials without a value


def _normalise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = high - low if high > low else 1.0
    out = (values - low) / span
    return np.where(np.isfinite(out), out, MISSING_Y), low, high


def axis_ticks(values: np.ndarray, kind: str) -> list[tuple[float, float]]:
    """(value, position on the axis in [0, 1]) of the labelled ticks of a numeric axis: for a log10 axis
    (``values`` are log10 of the real ones) :func:`~analysis.figures._common.log_ticks`, the values themselves
    for an integer axis of up to 8 of them, else about 5 round numbers; the ends of the range when none fall in.
    """
    finite = values[np.isfinite(values)]
    if not len(finite):
        return []
    low, high = float(finite.min()), float(finite.max())
    span = high - low if high > low else 1.0
    if kind == "log":
        marks = [float(np.log10(r)) for r in log_ticks(10.0 ** finite)[0]]
    elif kind == "int" and len(np.unique(finite)) <= 8:
        marks = np.unique(finite).tolist()
    else:
        marks = MaxNLocator(5).tick_values(low, high).tolist()
    marks = [m for m in marks if low - 1e-9 * span <= m <= high + 1e-9 * span]
    if len(marks) < 2:
        marks = [low, high] if high > low else [low]
    return [(m, (m - low) / span) for m in marks]


def _label(value: float, kind: str) -> str:
    return f"{10 ** value:.0e}" if kind == "log" else f"{value:.3g}"


@figure("parallel_coordinates", "Parallel coordinates of the swept hyperparameters", section="Hyperparameters")
def parallel_coordinates(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """One vertical axis per swept hyperparameter plus the metric; one line per finished trial coloured by the
    metric. Categorical axes are labelled with their categories (a little jitter shows how many trials share
    one), numeric axes with their real values (the learning rate on a log scale; trials without a value at
    ``n/a`` below). The best trials are drawn last (on top); at most 500 lines are drawn, the best 50 always
    among them."""
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
            norm, _, _ = _normalise(values)
            columns.append(norm)
            marks = [(y, _label(v, p.kind)) for v, y in axis_ticks(values, p.kind)]
            if not np.isfinite(values).all():
                marks.append((MISSING_Y, "n/a"))
            ticks.append(marks)
    metric_norm, low, high = _normalise(score)
    columns.append(metric_norm)
    ticks.append([(y, f"{v:.3g}") for v, y in axis_ticks(score, "float")])
    ys = np.column_stack(columns)[order]
    xs = np.arange(ys.shape[1], dtype=float)
    segments = np.stack([np.broadcast_to(xs, ys.shape), ys], axis=-1)
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"]
    norm = Normalize(low, high if high > low else low + 1e-9)
    fig = Figure(figsize=(min(10.5, max(7.0, 1.6 * len(xs) + 2)), 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments, colors=cmap(norm(score[order])), lw=1.0, alpha=0.7))
    left, right = -0.1, xs[-1] + 0.6
    for x, marks in zip(xs, ticks):
        # a real axis per variable, at its x: its ticks carry the categories or the real values
        axis = ax.secondary_yaxis((x - left) / (right - left))
        axis.set_yticks([y for y, _ in marks], [label for _, label in marks])
        axis.tick_params(axis="y", direction="inout", labelsize=8, pad=2, labelleft=False, labelright=True,
                         left=True, right=True, length=4)
        for text in axis.get_yticklabels():
            text.set_bbox({"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
        axis.spines["left"].set_color("0.3")
        axis.set_zorder(3)   # labels above the lines
    names = [short(p.column) + (" (log)" if p.kind == "log" else "") for p in params] + [metric_label(metric)]
    ax.set_xticks(xs, names, rotation=15 if len(xs) > 5 else 0)
    ax.set_xlim(left, right)
    ax.set_ylim(MISSING_Y - 0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"best {metric_label(metric)}")
    shown = f"{len(order)} of {len(ok)}" if len(order) < len(ok) else f"{len(ok)}"
    ax.set_title(f"Swept hyperparameters of {shown} finished trials")
    return fig
