"""Learning curves: training vs validation metrics over epochs for the best trial of each architecture."""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.aggregate import best_per_group
from analysis.figures import figure
from analysis.figures._common import ARCH, colors, fmt_value, metric_label


def curve_panels(epochs_columns, metric: str) -> list[str]:
    """Metric names drawn as panels: the study metric, accuracy and loss, each when the epochs table has its
    ``val_`` or ``train_`` column (``val_acc`` -> ``acc``)."""
    base = metric.removeprefix("val_").removeprefix("train_")
    names = list(dict.fromkeys([base, "acc", "loss"]))
    return [n for n in names if f"val_{n}" in epochs_columns or f"train_{n}" in epochs_columns]


def robust_limits(values, fence: float = 3.0) -> tuple[float, float, np.ndarray]:
    """y limits that an outlier cannot squash: the range of the finite ``values`` inside Tukey's far fences
    (quartiles -/+ ``fence`` x the interquartile range), with a 5% margin; and the mask of values outside.

    Example:
        >>> low, high, clipped = robust_limits([1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 9.0])
        >>> round(high, 2), clipped.tolist()
        (1.03, [False, False, False, False, False, False, True])
    """
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0, np.zeros(len(values), bool)
    q1, q3 = np.percentile(finite, [25, 75])
    spread = max(q3 - q1, 1e-12)
    inside = (values >= q1 - fence * spread) & (values <= q3 + fence * spread)
    kept = values[inside]
    low, high = float(kept.min()), float(kept.max())
    margin = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    return low - margin, high + margin, np.isfinite(values) & ~inside


@figure("learning_curves", "Learning curves of the best trial per architecture", section="Training")
def learning_curves(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Training (dashed) and validation (solid) curves, one colour per architecture, one panel per metric.

    The trial drawn for an architecture is its best finished trial (``best_per_group`` on the architecture).
    Loss panels take robust y limits (:func:`robust_limits`), so one huge early loss does not flatten the rest:
    points beyond them are drawn as triangles at the edge, with their value. None for a study of a single trial.
    """
    trials, epochs = tables.trials, tables.epochs
    if len(trials) < 2 or epochs.empty or "epoch" not in epochs.columns:   # one run: nothing to compare
        return None
    best = best_per_group(trials, [ARCH], metric, mode)
    best = best[best["trial_id"].isin(set(epochs["trial_id"]))]
    panels = curve_panels(epochs.columns, metric)
    if best.empty or not panels:
        return None
    names = [fmt_value(a) for a in best[ARCH]] if ARCH in best.columns else ["best trial"]
    palette = colors(names)
    rows = epochs[epochs["trial_id"].isin(set(best["trial_id"]))].sort_values("epoch")
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels):
        drawn = []   # (epoch, value, colour) of every point of the panel
        for tid, arch in zip(best["trial_id"], names):
            one = rows[rows["trial_id"] == tid]
            for split, style in (("train", "--"), ("val", "-")):
                col = f"{split}_{name}"
                if col in one.columns and one[col].notna().any():
                    ax.plot(one["epoch"], one[col], style, color=palette[arch], lw=1.8,
                            marker="o" if len(one) <= 20 else None, ms=3)
                    drawn += [(e, v, palette[arch]) for e, v in zip(one["epoch"], one[col]) if np.isfinite(v)]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(name))
        ax.set_title(metric_label(name))
        ax.grid(alpha=0.3)
        if "loss" in name and drawn:
            _clip_outliers(ax, drawn)
    handles = [Line2D([], [], color=palette[a], lw=2, label=a) for a in names]
    handles += [Line2D([], [], color="0.3", ls="--", label="train"), Line2D([], [], color="0.3", label="val")]
    # below the panels: inside, it would cover a curve
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=min(len(handles), 7))
    fig.suptitle(f"Best trial per architecture (by {metric_label(metric)})")
    return fig


def _clip_outliers(ax, drawn: list) -> None:
    """Robust y limits on ``ax``; each point beyond them a triangle on the edge, labelled with its value."""
    values = np.array([v for _, v, _ in drawn], float)
    low, high, clipped = robust_limits(values)
    if not clipped.any():
        return
    ax.set_ylim(low, high)
    for (epoch, value, colour), out in zip(drawn, clipped):
        if not out:
            continue
        top = value > high
        edge = high if top else low
        ax.plot([epoch], [edge], "^" if top else "v", color=colour, ms=7, clip_on=False, zorder=5)
        ax.annotate(f"{value:.3g}", (epoch, edge), xytext=(6, -10 if top else 4), textcoords="offset points",
                    fontsize=8, color=colour)
    n = int(clipped.sum())
    ax.set_title(f"{ax.get_title()} ({n} point{'s' if n > 1 else ''} off scale: triangles, with value)")
