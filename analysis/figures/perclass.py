"""Per-class results: class x configuration heatmaps and the gain of transfer over training from scratch."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from analysis.aggregate import baseline, best_per_group, transferred
from analysis.figures import figure
from analysis.aggregate import swept_columns
from analysis.figures._common import (ARCH, STRATEGY, STRATEGY_ORDER, config_label, fmt_value, group_column,
                                      metric_label, text_color)

DECODER = "config.model.decoder"   # segmentation studies may sweep it

PER_CLASS_VALUES = ("accuracy", "f1", "iou")   # drawn when the per_class table has them
MAX_ROWS = 100          # classes shown (the hardest) in a heatmap
ANNOTATE_CLASSES = 15


def class_rows(per_class: pd.DataFrame, trial_ids, split: str = "val") -> pd.DataFrame:
    """Per-class rows of the given trials and split, the latest epoch of each trial only, with ``class_name``
    filled from ``class_index`` where missing."""
    if per_class.empty or not {"trial_id", "split"} <= set(per_class.columns):
        return per_class.iloc[0:0]
    rows = per_class[(per_class["split"] == split) & per_class["trial_id"].isin(set(trial_ids))]
    if "epoch" in rows.columns and len(rows):
        latest = rows.groupby("trial_id")["epoch"].transform("max")
        rows = rows[rows["epoch"] == latest]
    names = rows["class_name"] if "class_name" in rows.columns else pd.Series(np.nan, index=rows.index)
    return rows.assign(class_name=names.fillna(rows["class_index"]).map(fmt_value))


def _configurations(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """The best trial of each architecture x strategy group (x decoder, when a segmentation study sweeps it),
    with its column ``label``, in reading order."""
    group_col = group_column(trials)
    decoder = DECODER if DECODER in swept_columns(trials) else None
    by = [c for c in (ARCH, group_col, decoder) if c is not None and c in trials.columns]
    best = best_per_group(trials, by, metric, mode)
    if best.empty:
        return best.assign(label=[])
    arch = best[ARCH] if ARCH in best.columns else pd.Series("all", index=best.index)
    group = best[group_col] if group_col in best.columns else pd.Series(None, index=best.index, dtype=object)
    rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    key = [(fmt_value(a), rank.get(g, len(rank)) if group_col == STRATEGY else 0, fmt_value(g))
           for a, g in zip(arch, group)]
    labels = [config_label(a, g, group_col) for a, g in zip(arch, group)]
    if decoder:
        labels = [f"{label} / {fmt_value(d)}" for label, d in zip(labels, best[decoder])]
        key = [k + (fmt_value(d),) for k, d in zip(key, best[decoder])]
    best = best.assign(label=labels, _key=key).sort_values("_key", kind="mergesort")
    return best.drop(columns="_key")


def per_class_matrix(tables, value: str = "accuracy", metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Per-class ``value`` (validation split) of the best trial of each architecture x strategy group.

    Rows are class names sorted by difficulty, hardest first (lowest mean over the columns; ties in class
    order); columns are ``"arch / strategy"`` labels. Empty when the study has no per-class rows for ``value``.

    Example:
        >>> per_class_matrix(load("results/quickstart"), "f1")     # doctest: +SKIP
    """
    pc = tables.per_class
    if pc.empty or value not in pc.columns:
        return pd.DataFrame()
    configs = _configurations(tables.trials, metric, mode)
    rows = class_rows(pc, configs["trial_id"])
    rows = rows[rows[value].notna()]
    if rows.empty:
        return pd.DataFrame()
    label = dict(zip(configs["trial_id"], configs["label"]))
    rows = rows.assign(label=rows["trial_id"].map(label))
    matrix = rows.groupby(["class_name", "label"])[value].first().unstack("label")
    matrix = matrix[[c for c in configs["label"] if c in matrix.columns]]
    index = rows["class_index"] if "class_index" in rows.columns else pd.Series(0, index=rows.index)
    order = index.groupby(rows["class_name"]).min().reindex(matrix.index)
    difficulty = pd.DataFrame({"mean": matrix.mean(axis=1), "index": order})
    matrix = matrix.loc[difficulty.sort_values(["mean", "index"], kind="mergesort").index]
    matrix.index.name, matrix.columns.name = "class_name", "configuration"
    return matrix


@figure("per_class_heatmaps", "Per-class results of the best configurations", section="Per class")
def per_class_heatmaps(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """Class x configuration heatmaps of per-class accuracy, F1 and (segmentation) IoU, one subplot each.

    Rows follow the accuracy matrix's order (hardest first) in every subplot; with more than 100 classes only
    the 100 hardest are drawn.
    """
    matrices = {v: per_class_matrix(tables, v, metric, mode) for v in PER_CLASS_VALUES}
    matrices = {v: m for v, m in matrices.items() if not m.empty}
    if not matrices:
        return None
    first = next(iter(matrices.values()))
    total = len(first)
    shown = first.index[:MAX_ROWS]
    rows, cols = len(shown), first.shape[1]
    annotate = rows <= ANNOTATE_CLASSES and cols <= 12
    longest = max(len(str(c)) for c in first.columns)
    rotation = 90 if longest > 10 else 0
    label_height = 0.075 * longest if rotation else 0.3
    panel_w, panel_h = 0.75 * cols + 1.6, 0.28 * rows + 0.8
    stacked = cols > 10 and len(matrices) > 1   # many configurations: panels one above the other
    if stacked:
        size = (panel_w + 2.2, max(3.0, len(matrices) * panel_h + label_height + 0.8))
    else:
        size = (len(matrices) * panel_w + 2.2, max(3.0, panel_h + label_height + 0.8))
    fig = Figure(figsize=size, layout="constrained")
    grid = (len(matrices), 1) if stacked else (1, len(matrices))
    axes = fig.subplots(*grid, sharex=stacked, sharey=True, squeeze=False).ravel()
    cmap = colormaps["RdYlGn"]
    for ax, (value, matrix) in zip(axes, matrices.items()):
        matrix = matrix.reindex(index=shown, columns=first.columns)
        data = matrix.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        if annotate:
            for i, j in zip(*np.nonzero(np.isfinite(data))):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color=text_color(cmap(data[i, j])))
        ax.set_xticks(range(cols), matrix.columns, rotation=rotation, fontsize=8)
        ax.tick_params(axis="x", labelbottom=not stacked or ax is axes[-1])
        ax.set_yticks(range(rows), shown, fontsize=8 if rows <= 40 else 6)
        ax.tick_params(axis="y", labelleft=stacked or ax is axes[0])
        ax.set_ylabel("class (hardest first)" if stacked or ax is axes[0] else "")
        ax.set_title(value if value != "iou" else "IoU")
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    note = f" ({rows} hardest of {total} classes)" if total > rows else ""
    fig.suptitle(f"Per-class validation results of the best trial per configuration{note}")
    return fig


def per_class_gain_table(tables, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Per-class validation accuracy of the best transferred trial and of the best from-scratch baseline, and
    ``gain`` = transferred - baseline, largest gain first. Columns ``class_name``, ``transferred``,
    ``baseline``, ``gain``; the trial ids are in ``.attrs``. Empty without a baseline or per-class rows."""
    empty = pd.DataFrame(columns=["class_name", "transferred", "baseline", "gain"])
    trials = tables.trials
    base = baseline(trials, metric, mode)
    best = best_per_group(transferred(trials), [], metric, mode)
    if base is None or best.empty or tables.per_class.empty or "accuracy" not in tables.per_class.columns:
        return empty
    best = best.iloc[0]
    rows = class_rows(tables.per_class, [best["trial_id"], base["trial_id"]])
    side = {tid: rows[rows["trial_id"] == tid].groupby("class_name")["accuracy"].first()
            for tid in (best["trial_id"], base["trial_id"])}
    table = pd.concat({"transferred": side[best["trial_id"]], "baseline": side[base["trial_id"]]}, axis=1,
                      join="inner").dropna()
    if table.empty:
        return empty
    table["gain"] = table["transferred"] - table["baseline"]
    table = table.rename_axis("class_name").reset_index()
    table = table.sort_values(["gain", "class_name"], ascending=[False, True], kind="mergesort")
    table = table.reset_index(drop=True)
    table.attrs.update(transferred=best["trial_id"], baseline=base["trial_id"])
    return table


@figure("per_class_gain", "Per-class gain of transfer over training from scratch", section="Per class")
def per_class_gain(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """A bar per class: accuracy of the best transferred trial minus that of the best from-scratch trial."""
    table = per_class_gain_table(tables, metric, mode)
    if table.empty:
        return None
    trials = tables.trials.set_index("trial_id")
    group_col = group_column(tables.trials)

    def describe(tid: str) -> str:
        row = trials.loc[tid]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        label = config_label(row.get(ARCH, "?"), row.get(group_col) if group_col else None, group_col)
        return f"{label} ({metric_label(metric)} {row[f'best_{metric}']:.3f})"

    n = len(table)
    fig = Figure(figsize=(7.5, max(3.0, 0.24 * min(n, 120) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    ax.barh(y, table["gain"], color=np.where(table["gain"] >= 0, "tab:green", "tab:red"))
    ax.axvline(0, color="0.2", lw=0.8)
    if n <= 120:
        ax.set_yticks(y, table["class_name"], fontsize=8 if n <= 40 else 6)
    else:
        ax.set_yticks([])
    ax.set_xlabel("accuracy gain (transferred - from scratch)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Best transferred: {describe(table.attrs['transferred'])}\n"
                 f"vs from scratch: {describe(table.attrs['baseline'])}", fontsize=10)
    return fig
