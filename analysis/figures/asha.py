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
from analysis.figures._common import ARCH, MAX_CURVES, colors, curves, fmt_value, metric_label, subsample


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


@figure("asha", "Early stopping: validation curves of every trial", section="Early stopping")
def asha(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Validation curves: trials stopped early in grey with an ``x`` at their last epoch, full-length finished
    trials coloured by architecture, the rest (running, errored) dotted. At most 500 curves are drawn (a random
    choice); the counts in the title cover every trial."""
    trials, epochs = tables.trials, tables.epochs
    if trials.empty or epochs.empty or metric not in epochs.columns:
        return None
    data = asha_data(trials, epochs, metric)
    data = data[data["last_value"].notna()]
    if len(data) < 2:
        return None
    archs = None
    if ARCH in trials.columns:
        archs = trials.drop_duplicates("trial_id").set_index("trial_id")[ARCH].map(fmt_value)
    full = data[~data["stopped_early"] & (data["status"] == "TERMINATED")]
    stopped = data[data["stopped_early"]]
    other = data[~data.index.isin(full.index) & ~data["stopped_early"]]
    share = MAX_CURVES / len(data)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    handles = []
    keep = subsample(stopped["trial_id"], max(1, int(len(stopped) * share)))
    if keep:
        ax.add_collection(LineCollection(curves(epochs, metric, keep), colors="0.55", lw=0.9, alpha=0.7,
                                         zorder=2.5))
        marks = stopped[stopped["trial_id"].isin(set(keep))]
        ax.scatter(marks["last_epoch"], marks["last_value"], marker="x", color="0.25", s=24, zorder=3)
        handles.append(Line2D([], [], color="0.6", marker="x", mec="0.35", label="stopped early"))
    keep = subsample(other["trial_id"], max(1, int(len(other) * share)))
    if keep:
        ax.add_collection(LineCollection(curves(epochs, metric, keep), colors="tab:red", lw=0.8, alpha=0.5,
                                         linestyles=":"))
        handles.append(Line2D([], [], color="tab:red", ls=":", label="running / errored"))
    keep = subsample(full["trial_id"], max(1, int(len(full) * share)))
    if keep:
        names = [archs.get(t, "all") if archs is not None else "all" for t in keep]
        palette = colors(sorted(set(names)))
        by_id = dict(zip(keep, names))
        segments = curves(epochs, metric, keep)  # in trial_id order
        ax.add_collection(LineCollection(segments, colors=[palette[by_id[t]] for t in sorted(by_id)], lw=1.3))
        handles += [Line2D([], [], color=c, lw=2, label=f"{a} (full length)") for a, c in palette.items()]
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    # curves rise (or fall, for a loss) towards the top right: the opposite corner stays free for the legend
    ax.legend(handles=handles, fontsize=8, loc="lower right" if mode == "max" else "upper right")
    saved = epochs_saved(trials)
    run = int(trials["epochs_run"].sum()) if "epochs_run" in trials.columns else 0
    ax.set_title(f"{len(stopped)} of {len(data)} trials stopped early; {saved} epochs saved "
                 f"({saved / max(1, saved + run):.0%} of a full run)"
                 + (f"; {MAX_CURVES} of {len(data)} curves drawn" if len(data) > MAX_CURVES else ""), fontsize=10)
    return fig
