"""The metric against one swept quantity: what is frozen, learning rate, training cost."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from analysis.aggregate import finished
from analysis.figures import figure
from analysis.figures._common import (ARCH, FREEZE, FROZEN, LR, STRATEGY, colors, fmt_value, log_ticks,
                                      metric_label, ordered_labels, better)

MAX_LR_POINTS = 12   # beyond this many distinct learning rates (random search), the best line uses log bins


def _best_by(frame: pd.DataFrame, x: str, col: str, mode: str) -> pd.DataFrame:
    """The best row for each value of ``x``, sorted by ``x``."""
    score = better(frame[col], mode)
    idx = score.groupby(frame[x]).idxmax()
    return frame.loc[idx.to_numpy()].sort_values(x)


def _labels(frame: pd.DataFrame, column: str) -> pd.Series:
    if column in frame.columns:
        return frame[column].map(fmt_value)
    return pd.Series("all", index=frame.index)



def _per_arch_axes(ok: pd.DataFrame):
    """A figure with one axes and a colour per architecture (``_arch`` column), in a stable order."""
    archs = ordered_labels(ok["_arch"], None)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    return fig, fig.add_subplot(), archs, colors(archs)

def _last_frozen(tables) -> Optional[pd.Series]:
    """``frozen_fraction`` per trial: the trials column, else the trial's last epoch row; None when never reported."""
    trials, epochs = tables.trials, tables.epochs
    if FROZEN in trials.columns and trials[FROZEN].notna().any():
        return pd.to_numeric(trials.set_index("trial_id")[FROZEN], errors="coerce")
    if epochs is not None and FROZEN in epochs.columns and epochs[FROZEN].notna().any():
        rows = epochs.dropna(subset=[FROZEN]).sort_values(["trial_id", "epoch"], kind="mergesort")
        return pd.to_numeric(rows.groupby("trial_id")[FROZEN].last(), errors="coerce")
    return None


def freeze_points(tables, metric: str = "val_acc") -> tuple[pd.DataFrame, str]:
    """The finished trials the freeze figure draws, with ``_x`` (what is frozen) and ``_arch``; and the x label.

    ``_x`` is the share of backbone parameters frozen (``frozen_fraction``, as the trial's last epoch reported it:
    comparable across architectures), for every trial with a freezing strategy; studies from before that metric
    fall back to ``freeze_depth`` (a fraction of stages, which freezes 1% of a ResNet-18 but 43% of a ViT at 0.5).
    """
    ok = finished(tables.trials, metric)
    frozen = _last_frozen(tables)
    if frozen is not None and "trial_id" in ok.columns:
        x = ok["trial_id"].map(frozen)
        if STRATEGY in ok.columns:  # the from-scratch baseline (no strategy) is no point on a freezing axis
            x = x.where(ok[STRATEGY].notna())
        label = "frozen fraction (share of backbone parameters frozen)"
    elif FREEZE in ok.columns:
        x = pd.to_numeric(ok[FREEZE], errors="coerce")
        label = "freeze depth (fraction of stages frozen; no frozen_fraction column: older study)"
    else:
        return ok.iloc[0:0].assign(_x=[], _arch=[]), ""
    ok = ok.assign(_x=pd.to_numeric(x, errors="coerce")).dropna(subset=["_x"])
    return ok.assign(_arch=_labels(ok, ARCH)), label


@figure("metric_vs_freeze_depth", "Validation metric against the frozen share of the backbone")
def metric_vs_freeze_depth(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """One line per architecture through the best trial at each frozen fraction (x: :func:`freeze_points`)."""
    col = f"best_{metric}"
    ok, xlabel = freeze_points(tables, metric)
    if ok["_x"].nunique() < 2:
        return None
    fig, ax, archs, palette = _per_arch_axes(ok)
    for arch in archs:
        one = ok[ok["_arch"] == arch]
        ax.scatter(one["_x"], one[col], s=12, alpha=0.35, color=palette[arch])
        line = _best_by(one, "_x", col, mode)
        ax.plot(line["_x"], line[col], "-o", color=palette[arch], label=arch, ms=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"best {metric_label(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="architecture")
    what = "frozen fraction" if xlabel.startswith("frozen") else "freeze depth"
    ax.set_title(f"{metric_label(metric)} vs {what} (line: best per value)")
    return fig


@figure("metric_vs_lr", "Sensitivity to the learning rate")
def metric_vs_lr(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """One panel per architecture (shared y axis): every finished trial as a point (x = learning rate, log
    scale), one colour per strategy, a line through the best trial per learning rate (per log-spaced bin when
    the rates were drawn at random). Every x tick is labelled; the legend sits below the panels."""
    col = f"best_{metric}"
    ok = finished(tables.trials, metric)
    if LR not in ok.columns:
        return None
    ok = ok.assign(_x=pd.to_numeric(ok[LR], errors="coerce"))
    ok = ok[ok["_x"] > 0]
    if ok["_x"].nunique() < 2:
        return None
    ok = ok.assign(_group=_labels(ok, STRATEGY), _arch=_labels(ok, ARCH))
    groups = ordered_labels(ok["_group"], STRATEGY)
    archs = ordered_labels(ok["_arch"], None)
    palette = colors(groups)
    logx = np.log10(ok["_x"])
    if ok["_x"].nunique() > MAX_LR_POINTS:
        edges = np.linspace(logx.min(), logx.max() + 1e-9, MAX_LR_POINTS + 1)
        ok = ok.assign(_bin=np.digitize(logx, edges))
    else:
        ok = ok.assign(_bin=ok["_x"])
    ncols = min(3, len(archs))
    nrows = -(-len(archs) // ncols)
    fig = Figure(figsize=(3.3 * ncols + 0.5, 2.7 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    ticks, labels = log_ticks(ok["_x"])
    for ax, arch in zip(axes, archs):
        mine = ok[ok["_arch"] == arch]
        for group in groups:
            one = mine[mine["_group"] == group]
            if one.empty:
                continue
            ax.scatter(one["_x"], one[col], s=10, alpha=0.3, color=palette[group])
            line = _best_by(one, "_bin", col, mode).sort_values("_x")
            ax.plot(line["_x"], line[col], "-o", color=palette[group], ms=4)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter(labels))
        ax.xaxis.set_minor_locator(NullLocator())   # an unlabelled tick reads as a missing label
        ax.tick_params(axis="x", labelbottom=True, labelsize=8)
        ax.grid(alpha=0.3)
        ax.set_title(f"{arch} ({len(mine)} trials)", fontsize=10)
    for ax in axes[len(archs):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[:len(archs)]):
        if i % ncols == 0:
            ax.set_ylabel(f"best {metric_label(metric)}")
        if i + ncols >= len(archs):   # no panel below: this one carries the axis name
            ax.set_xlabel("learning rate (log scale)", fontsize=9)
    handles = [Line2D([], [], color=palette[g], marker="o", ms=4, label=g) for g in groups]
    handles.append(Line2D([], [], color="0.4", marker="o", ls="none", alpha=0.3, ms=4, label="one trial"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8,
               title="strategy (line: best trial per learning rate)", title_fontsize=8)
    fig.suptitle(f"{metric_label(metric)} vs learning rate, per architecture ({len(ok)} finished trials)")
    return fig


@figure("metric_vs_cost", "Validation metric against training cost")
def metric_vs_cost(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Each finished trial's metric against its cost (GPU seconds when any trial used a GPU, else wall
    seconds), one colour per architecture; the best trial is labelled."""
    col = f"best_{metric}"
    ok = finished(tables.trials, metric)
    cost = None
    for name in ("gpu_seconds", "wall_seconds"):
        if name in ok.columns and (pd.to_numeric(ok[name], errors="coerce") > 0).any():
            cost = name
            break
    if cost is None or len(ok) < 2:
        return None
    ok = ok.assign(_x=pd.to_numeric(ok[cost], errors="coerce"), _arch=_labels(ok, ARCH)).dropna(subset=["_x"])
    fig, ax, archs, palette = _per_arch_axes(ok)
    for arch in archs:
        one = ok[ok["_arch"] == arch]
        ax.scatter(one["_x"], one[col], s=16, alpha=0.6, color=palette[arch], label=arch)
    best = ok.loc[better(ok[col], mode).idxmax()]
    ax.scatter([best["_x"]], [best[col]], s=120, facecolors="none", edgecolors="black", lw=1.5)
    label = f"best: {best['_arch']}"
    if STRATEGY in ok.columns and fmt_value(best[STRATEGY]) != "n/a":
        label += f" / {best[STRATEGY]}"
    right = best["_x"] > ok["_x"].median()   # keep the label inside the axes
    ax.annotate(f"{label}\n{best[col]:.3f} in {best['_x']:.0f} s", (best["_x"], best[col]),
                xytext=(-12 if right else 12, -28), textcoords="offset points", fontsize=8,
                ha="right" if right else "left", arrowprops={"arrowstyle": "-", "color": "0.4"})
    positive = ok["_x"][ok["_x"] > 0]
    if len(positive) and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel(cost.replace("_", " "))
    ax.set_ylabel(f"best {metric_label(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="architecture")
    ax.set_title(f"{metric_label(metric)} vs training cost")
    return fig
