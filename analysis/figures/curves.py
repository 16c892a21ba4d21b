"""Learning curves: training vs validation metrics over epochs for the best trial of each architecture."""
from __future__ import annotations

from typing import Optional

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


@figure("learning_curves", "Learning curves of the best trial per architecture", section="Training")
def learning_curves(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Training (dashed) and validation (solid) curves, one colour per architecture, one panel per metric.

    The trial drawn for an architecture is its best finished trial (``best_per_group`` on the architecture).
    None for a study of a single trial.
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
        for tid, arch in zip(best["trial_id"], names):
            one = rows[rows["trial_id"] == tid]
            for split, style in (("train", "--"), ("val", "-")):
                col = f"{split}_{name}"
                if col in one.columns and one[col].notna().any():
                    ax.plot(one["epoch"], one[col], style, color=palette[arch], lw=1.8,
                            marker="o" if len(one) <= 20 else None, ms=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(name))
        ax.set_title(metric_label(name))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=palette[a], lw=2, label=a) for a in names]
    handles += [Line2D([], [], color="0.3", ls="--", label="train"), Line2D([], [], color="0.3", label="val")]
    axes[-1].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(f"Best trial per architecture (by {metric_label(metric)})")
    return fig
