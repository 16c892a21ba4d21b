"""Did the transferability scores predict the sweep? Each score against the best fine-tuned validation metric per
architecture, with Kendall's tau (plain and weighted), for a study that has both (``tlsweep rank`` or
``search.preselect`` wrote its ``transferability`` table)."""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import figure
from analysis.figures._common import metric_label
from analysis.transferability import SCORES, best_per_arch, read_scores, score_vs_sweep

SHOWN = ("logme", "hscore_shrunk", "leep", "knn")  # the panels, where the table has them


def panels(scores: pd.DataFrame) -> list[str]:
    return [n for n in SHOWN if n in scores.columns and scores[n].notna().sum() >= 2] or \
        [n for n in SCORES.names() if n in scores.columns and scores[n].notna().sum() >= 2]


def draw(scores: pd.DataFrame, trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """The figure from the two tables; None when fewer than two architectures have a score and a result."""
    best = best_per_arch(trials, metric, mode)
    if scores.empty or best.empty:
        return None
    by_arch = scores.drop_duplicates("arch", keep="last").set_index("arch")
    names = [n for n in panels(scores) if by_arch[n].reindex(best.index).notna().sum() >= 2]
    if not names:
        return None
    taus = score_vs_sweep(scores, trials, metric, mode).set_index("score")
    fig = Figure(figsize=(3.6 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        both = pd.concat([by_arch[name], best.rename("best")], axis=1, join="inner").dropna()
        ax.scatter(both[name], both["best"], color="tab:blue", zorder=3)
        for arch, row in both.iterrows():
            ax.annotate(str(arch), (row[name], row["best"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        tau, wtau = taus.loc[name, "tau"], taus.loc[name, "weighted_tau"]
        fmt = lambda v: "n/a" if v is None or math.isnan(v) else f"{v:.2f}"  # noqa: E731
        ax.set_title(f"{name}: tau {fmt(tau)}, weighted {fmt(wtau)}", fontsize=9)
        ax.set_xlabel(f"{name} (frozen features)")
        ax.grid(alpha=0.3)
        ax.margins(0.2)  # room for the labels of the outermost points
    axes[0].set_ylabel(f"best fine-tuned {metric_label(metric)}")
    return fig


@figure("transferability", "Transferability scores vs the best fine-tuned result per architecture",
        section="Transferability")
def transferability(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    if not tables.path or "," in tables.path:  # one study's folder: its transferability table
        return None
    return draw(read_scores(tables.path), tables.trials, metric, mode)
