"""Early stopping: every trial's validation curve, the trials ASHA stopped and the epochs it saved."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.figures import figure
from analysis.figures._common import (ARCH, MAX_CURVES, colors, curves, fmt_value, metric_label, ordered_labels,
                                      subsample)


def _flag(trials: pd.DataFrame, column: str) -> pd.Series:
    if column not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials[column].astype("boolean").fillna(False).astype(bool)


def stopped_by_scheduler(trials: pd.DataFrame) -> pd.Series:
    """Trials the scheduler stopped early (not those a time budget or an interrupt ended: ``ended_with_study``)."""
    return _flag(trials, "stopped_early") & ~_flag(trials, "ended_with_study")


def asha_data(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """One row per trial: ``trial_id``, ``stopped_early``, ``last_epoch`` (its last reported epoch),
    ``last_value`` (``metric`` at that epoch, NaN without epoch rows) and ``status``.

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b"], "status": ["TERMINATED"] * 2,
        ...                   "stopped_early": [True, False], "epochs_run": [2, 4]})
        >>> e = pd.DataFrame({"trial_id": ["a", "a", "b"], "epoch": [1, 2, 1], "val_acc": [0.1, 0.2, 0.3]})
        >>> asha_data(t, e)["last_epoch"].tolist()
        [2, 1]
    """
    out = pd.DataFrame({"trial_id": trials["trial_id"].to_numpy(), "stopped_early": stopped_by_scheduler(trials).to_numpy(),
                        "status": trials["status"].to_numpy() if "status" in trials.columns else "TERMINATED"})
    have = not epochs.empty and {"trial_id", "epoch"} <= set(epochs.columns)
    if have and metric in epochs.columns:
        rows = epochs.dropna(subset=[metric]).sort_values(["trial_id", "epoch"], kind="mergesort")
        last = rows.groupby("trial_id").tail(1).set_index("trial_id")
        out["last_epoch"] = out["trial_id"].map(last["epoch"])
        out["last_value"] = out["trial_id"].map(last[metric])
    else:
        out["last_epoch"], out["last_value"] = np.nan, np.nan
    if "epochs_run" in trials.columns:  # trials without epoch rows: what the trials table says
        out["last_epoch"] = out["last_epoch"].fillna(pd.Series(trials["epochs_run"].to_numpy(), index=out.index))
    if out["last_epoch"].notna().all():
        out["last_epoch"] = out["last_epoch"].astype(int)
    return out


def epochs_saved(trials: pd.DataFrame) -> int:
    """Epochs not run thanks to early stopping: the sum of ``max_epochs - epochs_run`` over stopped trials."""
    stopped = trials[stopped_by_scheduler(trials)]
    if stopped.empty or not {"max_epochs", "epochs_run"} <= set(trials.columns):
        return 0
    return int((stopped["max_epochs"] - stopped["epochs_run"]).clip(lower=0).sum())


def curves_data(tables, metric: str = "val_acc") -> Optional[pd.DataFrame]:
    """:func:`asha_data` of the trials that reported ``metric``, with each one's architecture (``arch``: "all"
    without one); None when fewer than 2 trials did. The static and the interactive early-stopping figures draw it."""
    trials, epochs = tables.trials, tables.epochs
    if trials.empty or epochs.empty or metric not in epochs.columns:
        return None
    data = asha_data(trials, epochs, metric)
    data = data[data["last_value"].notna()]
    if len(data) < 2:
        return None
    archs = pd.Series(dtype=object)
    if ARCH in trials.columns:
        archs = trials.drop_duplicates("trial_id").set_index("trial_id")[ARCH].map(fmt_value)
    return data.assign(arch=data["trial_id"].map(archs).fillna("all") if len(archs) else "all")


@figure("asha", "Early stopping: validation curves of every trial", section="Early stopping")
def asha(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Validation curves coloured by architecture: full-length finished trials solid, trials stopped early
    thin, faded and dashed with an ``x`` at their last epoch (in their architecture's colour), the rest
    (running, errored) dotted. At most 500 curves are drawn (a random choice); the counts in the title cover
    every trial."""
    data = curves_data(tables, metric)
    if data is None:
        return None
    trials, epochs = tables.trials, tables.epochs
    palette = colors(ordered_labels(data["arch"], None))
    full = data[~data["stopped_early"] & (data["status"] == "TERMINATED")]
    stopped = data[data["stopped_early"]]
    other = data[~data.index.isin(full.index) & ~data["stopped_early"]]
    share = MAX_CURVES / len(data)
    fig = Figure(figsize=(8, 5.4), layout="constrained")
    ax = fig.add_subplot()
    arch_of = dict(zip(data["trial_id"], data["arch"]))

    def draw(frame, **style):
        keep = sorted(subsample(frame["trial_id"], max(1, int(len(frame) * share))))   # curves() sorts by id
        if keep:
            ax.add_collection(LineCollection(curves(epochs, metric, keep), colors=[palette[arch_of[t]] for t in keep],
                                             **style))
        return frame[frame["trial_id"].isin(set(keep))]

    marks = draw(stopped, lw=0.9, alpha=0.45, linestyles="--", zorder=2)
    if len(marks):
        ax.scatter(marks["last_epoch"], marks["last_value"], marker="x", s=26, zorder=3, lw=1.2,
                   color=[palette[a] for a in marks["arch"]])
    draw(other, lw=0.8, alpha=0.6, linestyles=":")
    draw(full, lw=1.4, zorder=2.6)
    by_arch = [Line2D([], [], color=c, lw=2, label=a) for a, c in palette.items()]
    handles = [Line2D([], [], color="0.3", lw=1.4, label="full length")]
    if len(stopped):
        handles.append(Line2D([], [], color="0.3", lw=0.9, ls="--", alpha=0.6, marker="x", label="stopped early"))
    if len(other):
        handles.append(Line2D([], [], color="0.3", lw=0.8, ls=":", label="running / errored"))
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    # below the axes (inside, they would cover curves): colour is the architecture, line style how the trial ended
    fig.legend(handles=by_arch, fontsize=8, loc="outside lower left", ncols=-(-len(by_arch) // 3),
               title="architecture", title_fontsize=8)
    fig.legend(handles=handles, fontsize=8, loc="outside lower right", title="trial", title_fontsize=8)
    saved = epochs_saved(trials)
    run = int(trials["epochs_run"].sum()) if "epochs_run" in trials.columns else 0
    ax.set_title(f"{len(stopped)} of {len(data)} trials stopped early; {saved} epochs saved "
                 f"({saved / max(1, saved + run):.0%} of a full run)"
                 + (f"; {MAX_CURVES} of {len(data)} curves drawn" if len(data) > MAX_CURVES else ""), fontsize=10)
    return fig
