"""Architecture x freezing strategy: the best validation metric of each cell, as a table and a heatmap."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from analysis.aggregate import aggregate_seeds, finished, swept_columns
from analysis.figures import figure
from analysis.figures._common import (ARCH, fmt_value, group_column, metric_label, ordered_labels, short,
                                      text_color)

CELL_COLUMNS = ["arch", "group", "value", "ci", "n"]


def arch_strategy_cells(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """One row per (architecture, strategy) cell: ``arch``, ``group`` (the strategy label), ``value``, ``ci``, ``n``.

    A configuration is one combination of the swept columns; its score is the mean of ``best_<metric>`` over
    its seeds (:func:`aggregate_seeds`). A cell's ``value`` is the best configuration score of the cell (max, or
    min with ``mode="min"``); ``ci`` and ``n`` are that configuration's confidence half-width and seed count.
    With one seed per configuration this is simply the best finished trial of the cell. Errored trials never
    count; on a tie the first configuration in sort order wins (the value is the same).
    """
    ok = finished(trials, metric)
    if ok.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    group_col = group_column(trials)
    keys = [c for c in (ARCH, group_col) if c is not None and c in ok.columns]
    by = list(dict.fromkeys(keys + swept_columns(trials)))
    configs = aggregate_seeds(ok, metric, by=by)
    configs = configs.sort_values("mean", ascending=(mode == "min"), kind="mergesort")
    if keys:
        cells = configs.groupby(keys, dropna=False, sort=False).head(1)
    else:
        cells = configs.head(1)
    return pd.DataFrame({
        "arch": [fmt_value(v) for v in cells[ARCH]] if ARCH in cells.columns else "all",
        "group": [fmt_value(v) for v in cells[group_col]] if group_col in cells.columns else "all",
        "value": cells["mean"].to_numpy(float), "ci": cells["ci"].to_numpy(float),
        "n": cells["n"].to_numpy(int)}).reset_index(drop=True)


def _pivot(cells: pd.DataFrame, column: str, trials: pd.DataFrame, mode: str) -> pd.DataFrame:
    matrix = cells.pivot(index="arch", columns="group", values=column)
    group_col = group_column(trials)
    matrix = matrix[ordered_labels(matrix.columns, group_col)]
    best = cells.groupby("arch")["value"].agg("max" if mode == "max" else "min")
    rows = best.sort_values(ascending=(mode == "min"), kind="mergesort").index
    matrix = matrix.loc[list(rows)]
    matrix.index.name, matrix.columns.name = "arch", short(group_col) if group_col else "group"
    return matrix


def arch_strategy_matrix(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """The heatmap's numbers: architectures (rows, best first) x strategies (columns), NaN where nothing ran.

    Columns are ``config.model.strategy`` values (``n/a`` for trials without one, e.g. from scratch), or the
    freeze depth when only the depth is swept. Each value is that of :func:`arch_strategy_cells`: the best over
    the cell's configurations of the seed-mean of ``best_<metric>``.

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b"], "status": ["TERMINATED"] * 2, "seed": [0, 0],
        ...     "config.model.arch": ["r18", "r18"], "config.model.strategy": ["full", "linear_probe"],
        ...     "best_val_acc": [0.9, 0.7]})
        >>> float(arch_strategy_matrix(t).loc["r18", "full"])
        0.9
    """
    cells = arch_strategy_cells(trials, metric, mode)
    if cells.empty:
        return pd.DataFrame()
    return _pivot(cells, "value", trials, mode)


@figure("arch_strategy_heatmap", "Best validation metric per architecture and freezing strategy")
def arch_strategy_heatmap(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Heatmap of :func:`arch_strategy_matrix`, cells annotated with the value (and ``± CI`` over seeds)."""
    trials = tables.trials
    cells = arch_strategy_cells(trials, metric, mode)
    if cells.empty or len(cells) < 2:
        return None
    matrix = _pivot(cells, "value", trials, mode)
    ci = _pivot(cells, "ci", trials, mode).reindex_like(matrix)
    n = _pivot(cells, "n", trials, mode).reindex_like(matrix)
    values = matrix.to_numpy(float)
    rows, cols = values.shape
    fig = Figure(figsize=(max(4.5, 1.5 * cols + 2.5), max(2.8, 0.6 * rows + 1.6)), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"].with_extremes(bad="0.9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, label=metric_label(metric))
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if math.isnan(v):
                ax.text(j, i, "—", ha="center", va="center", color="0.5")
                continue
            text = f"{v:.3f}"
            if n.iat[i, j] > 1 and not math.isnan(ci.iat[i, j]):
                text += f"\n± {ci.iat[i, j]:.3f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color=text_color(cmap(image.norm(v))))
    ax.set_xticks(range(cols), matrix.columns, rotation=20 if cols > 4 else 0, ha="right" if cols > 4 else "center")
    ax.set_yticks(range(rows), matrix.index)
    ax.set_xlabel(matrix.columns.name)
    ax.set_ylabel("architecture")
    seeds = int(n.max().max()) if n.size else 1
    note = f" (seed mean ± 95% CI, up to {seeds} seeds)" if seeds > 1 else ""
    ax.set_title(f"Best {metric_label(metric)}{note}")
    return fig
