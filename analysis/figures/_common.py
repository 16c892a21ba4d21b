"""Small helpers shared by the figure modules: column names, labels, colours, subsampling."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis.aggregate import swept_columns

ARCH = "config.model.arch"
STRATEGY = "config.model.strategy"
FREEZE = "config.model.freeze_depth"
FROZEN = "frozen_fraction"   # share of backbone parameters the trial froze (its last epoch; trials and epochs)
LR = "config.training.lr"
MAX_CURVES = 500   # curves drawn per figure; statistics always use every trial
# freezing strategies from least to most trained parameters; unknown names follow alphabetically
STRATEGY_ORDER = ("linear_probe", "partial", "unfreeze_last_k", "two_phase", "full")
MISSING = "n/a"


def short(column: str) -> str:
    """``config.training.lr`` -> ``lr``; other names unchanged."""
    return column.rsplit(".", 1)[-1] if column.startswith("config.") else column


def metric_label(metric: str) -> str:
    """``val_acc`` -> ``val acc`` (axis labels)."""
    return metric.replace("_", " ")


def fmt_value(value) -> str:
    """A table value as a short label: 0.5 -> '0.5', 3.0 -> '3', None/NaN -> 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def group_column(trials: pd.DataFrame) -> Optional[str]:
    """The column that names a trial's freezing: the strategy when swept, else a swept freeze depth, else the
    strategy when present at all; None when the table has neither."""
    swept = swept_columns(trials)
    for col in (STRATEGY, FREEZE):
        if col in swept:
            return col
    return STRATEGY if STRATEGY in trials.columns else None


def ordered_labels(values: Sequence, column: Optional[str]) -> list:
    """Distinct values in reading order: strategies by how much they train, numbers ascending, n/a last."""
    present = [v for v in pd.unique(pd.Series(list(values), dtype=object)) if fmt_value(v) != MISSING]
    if column == STRATEGY:
        rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
        present.sort(key=lambda s: (rank.get(str(s), len(rank)), str(s)))
    else:
        try:
            present.sort(key=float)
        except (TypeError, ValueError):
            present.sort(key=str)
    labels = [fmt_value(v) for v in present]
    if any(fmt_value(v) == MISSING for v in values):
        labels.append(MISSING)
    return labels


def config_label(arch, group, group_col: Optional[str]) -> str:
    """Column label of one configuration in per-class figures: ``arch / strategy`` (``arch`` alone when the
    trial has no strategy, e.g. the from-scratch baseline)."""
    arch = fmt_value(arch)
    if group_col is None or fmt_value(group) == MISSING:
        return arch
    prefix = "freeze " if group_col == FREEZE else ""
    return f"{arch} / {prefix}{fmt_value(group)}"


def colors(names: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per name (tab10, tab20 beyond 10 names)."""
    from matplotlib import colormaps
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def better(values: pd.Series, mode: str) -> pd.Series:
    """Scores where larger is better, whatever the mode (so one argmax serves both)."""
    return values if mode == "max" else -values


def subsample(ids: Sequence, limit: int = MAX_CURVES, seed: int = 0) -> list:
    """At most ``limit`` of ``ids``, a reproducible random choice in the original order."""
    ids = list(ids)
    if len(ids) <= limit:
        return ids
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=limit, replace=False))
    return [ids[i] for i in keep]


def curves(epochs: pd.DataFrame, column: str, trial_ids: Sequence) -> list[np.ndarray]:
    """One (epochs x 2) array of (epoch, value) per trial in ``trial_ids`` that has rows (for a LineCollection)."""
    rows = epochs[epochs["trial_id"].isin(set(trial_ids))][["trial_id", "epoch", column]].dropna()
    if rows.empty:
        return []
    rows = rows.sort_values(["trial_id", "epoch"], kind="mergesort")
    ids = rows["trial_id"].to_numpy()
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    xy = rows[["epoch", column]].to_numpy(dtype=float)
    return np.split(xy, cuts)


def text_color(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def log_ticks(values: Sequence[float]) -> tuple[list[float], list[str]]:
    """Labelled ticks of a log axis (a learning rate): the values themselves when a grid swept few of them, else
    1-2-5 steps within the swept range (1-3 over more than 1.5 decades, decades alone over more than 2).

    Example:
        >>> log_ticks([1e-3, 3e-3, 1e-2])
        ([0.001, 0.003, 0.01], ['1e-03', '3e-03', '1e-02'])
    """
    rates = np.unique(np.asarray(values, float))
    if len(rates) <= 6:
        ticks = rates.tolist()
    else:
        low, high = float(rates[0]), float(rates[-1])
        decades = np.log10(high / low)
        steps = (1,) if decades > 2 else (1, 3) if decades > 1.5 else (1, 2, 5)
        ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
                 for m in steps if low / 1.5 <= m * 10.0 ** e <= high * 1.5]
        if len(ticks) < 2:
            ticks = [low, high]
    return ticks, [f"{t:.0e}" for t in ticks]
