"""Per-class results: class x configuration heatmaps and the gain of transfer over training from scratch."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from analysis.aggregate import (FROM_SCRATCH, best_configuration, best_per_group, difference_interval,
                                swept_columns, transferred)
from analysis.figures import figure
from analysis.figures._common import (ARCH, STRATEGY, STRATEGY_ORDER, config_label, fmt_value, group_column,
                                      metric_label, text_color)

DECODER = "config.model.decoder"   # segmentation studies may sweep it

PER_CLASS_VALUES = ("accuracy", "f1", "iou")   # drawn when the per_class table has them
MAX_ROWS = 200          # classes drawn in a heatmap (beyond: the hardest, still in label order)
ROW_INCHES = 0.2        # height of one class row: room for an 8 pt label whatever the number of classes
MAX_WIDTH = 10.5        # inches: the report's column at 100 dpi (1100 px), so the page never shrinks the figure
FONT = 8                # pt, the smallest text of the figure
MIN_CELL, MAX_CELL = 0.2, 0.7   # inches per configuration column: a 90-degree 8 pt label needs 0.2
ANNOTATE_CLASSES, ANNOTATE_CELL = 40, 0.42   # values written in cells this wide (a "0.85" at 8 pt) and no more rows
TALL_CLASSES = 40       # beyond this many rows, configuration names above the panels too


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


def per_class_matrix(tables, value: str = "accuracy", metric: str = "val_acc", mode: str = "max",
                     split: str = "val", order: str = "label") -> pd.DataFrame:
    """Per-class ``value`` on ``split`` (``val`` or ``test``) of the best trial of each architecture x strategy
    group (chosen by the validation ``metric`` whatever the split).

    Rows are class names in the data set's label order (``class_index``, as the trainer stored it) or, with
    ``order="hardest"``, by difficulty, hardest first (lowest mean over the columns; ties in label order);
    columns are ``"arch / strategy"`` labels. Empty when the study has no per-class rows for ``value``.

    Example:
        >>> per_class_matrix(load("results/quickstart"), "f1")     # doctest: +SKIP
    """
    if order not in ("label", "hardest"):
        raise ValueError(f"order: {order!r} is not 'label' or 'hardest'")
    pc = tables.per_class
    if pc.empty or value not in pc.columns:
        return pd.DataFrame()
    configs = _configurations(tables.trials, metric, mode)
    rows = class_rows(pc, configs["trial_id"], split)
    rows = rows[rows[value].notna()]
    if rows.empty:
        return pd.DataFrame()
    label = dict(zip(configs["trial_id"], configs["label"]))
    rows = rows.assign(label=rows["trial_id"].map(label))
    matrix = rows.groupby(["class_name", "label"])[value].first().unstack("label")
    matrix = matrix[[c for c in configs["label"] if c in matrix.columns]]
    index = rows["class_index"] if "class_index" in rows.columns else pd.Series(0, index=rows.index)
    index = pd.to_numeric(index, errors="coerce")
    keys = pd.DataFrame({"index": index.groupby(rows["class_name"]).min().reindex(matrix.index),
                         "mean": matrix.mean(axis=1), "name": matrix.index})
    by = ["mean", "index", "name"] if order == "hardest" else ["index", "name"]
    matrix = matrix.loc[keys.sort_values(by, kind="mergesort", na_position="last").index]
    matrix.index.name, matrix.columns.name = "class_name", "configuration"
    return matrix


@figure("per_class_heatmaps", "Per-class results of the best configurations", section="Per class")
def per_class_heatmaps(tables, metric: str = "val_acc", mode: str = "max", split: str = "val") -> Optional[Figure]:
    """Class x configuration heatmaps of per-class accuracy, F1 and (segmentation) IoU, one panel each, on
    ``split`` (``val`` or ``test``; None when the study has no per-class rows of that split).

    Classes run down the rows in label order, a fixed height each, so the figure grows taller with the classes
    and every label stays at 8 pt; the width never exceeds the report's column (panels stack when the
    configurations do not fit side by side). Each panel's colours span its own values (:func:`colour_range`).
    With more than 200 classes only the 200 hardest are drawn, still in label order.
    """
    matrices = {v: per_class_matrix(tables, v, metric, mode, split) for v in PER_CLASS_VALUES}
    matrices = {v: m for v, m in matrices.items() if not m.empty}
    if not matrices:
        return None
    first = next(iter(matrices.values()))
    total = len(first)
    shown = first.index
    if total > MAX_ROWS:
        hardest = set(first.mean(axis=1).sort_values(kind="mergesort").index[:MAX_ROWS])
        shown = pd.Index([c for c in first.index if c in hardest], name=first.index.name)
    rows, cols, n = len(shown), first.shape[1], len(matrices)
    left = 0.06 * max(len(str(c)) for c in shown) + 0.6            # class names and the axis label
    room = MAX_WIDTH - left - 0.3
    side = n if room / (n * cols) >= MIN_CELL else 1               # panels side by side, else one above the other
    cell = min(MAX_CELL, room / (side * cols) - 0.3 / cols)
    longest = max(len(str(c)) for c in first.columns)
    rotation = 90 if cell * 13 < longest else 0                   # about 13 characters of 8 pt per inch
    below = 0.06 * longest + 0.2 if rotation else 0.3
    tall = rows > TALL_CLASSES                                     # configuration names above the panel too
    panel_h = rows * ROW_INCHES
    band_h = panel_h + below + (below if tall else 0) + 0.75       # + colour bar and its label
    stack = -(-n // side)
    size = (left + side * (cols * cell + 0.3) + 0.3, stack * band_h + 0.5)
    fig = Figure(figsize=size, layout="constrained")
    grid = fig.add_gridspec(2 * stack, side, height_ratios=[0.14, panel_h] * stack)
    annotate = rows <= ANNOTATE_CLASSES and cell >= ANNOTATE_CELL
    cmap = colormaps["viridis"]
    axes = []
    for k, (value, matrix) in enumerate(matrices.items()):
        r, c = divmod(k, side)
        ax = fig.add_subplot(grid[2 * r + 1, c], sharey=axes[0] if axes else None)
        axes.append(ax)
        data = matrix.reindex(index=shown, columns=first.columns).to_numpy(float)
        low, high = colour_range(data)
        norm = Normalize(low, high)
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto", interpolation="none")
        if annotate:
            for i, j in zip(*np.nonzero(np.isfinite(data))):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=FONT,
                        color=text_color(cmap(norm(data[i, j]))))
        ax.set_xticks(range(cols), first.columns, rotation=rotation, fontsize=FONT)
        ax.tick_params(axis="x", top=tall, labeltop=tall)
        ax.set_yticks(range(rows), shown, fontsize=FONT)
        ax.tick_params(axis="y", labelleft=c == 0, length=2)
        ax.set_ylabel("class (label order)" if c == 0 else "", fontsize=FONT + 1)
        finite = data[np.isfinite(data)]
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
            (bool((finite < low).any()), bool((finite > high).any()))]
        bar = fig.colorbar(image, cax=fig.add_subplot(grid[2 * r, c]), orientation="horizontal", extend=extend)
        bar.ax.tick_params(labelsize=FONT)
        name = value if value != "iou" else "IoU"
        bar.ax.set_title(f"{name} (colours: {low:.2f} to {high:.2f})", fontsize=FONT + 2)
    note = f" ({rows} hardest of {total} classes, in label order)" if total > rows else ""
    words = {"val": "validation", "test": "test"}.get(split, split)
    chosen = " (chosen on validation)" if split != "val" else ""
    fig.suptitle(f"Per-class {words} results of the best trial per configuration{chosen}{note}", fontsize=11)
    return fig


def colour_range(data: np.ndarray) -> tuple[float, float]:
    """The colour limits of a heatmap: the 2nd to 98th percentile of its finite values (their min and max with
    fewer than 50 values), widened to 0.05 when the values hardly differ; (0, 1) when there are none.

    Example:
        >>> colour_range(np.array([[0.8, 0.9], [np.nan, 0.85]]))
        (0.8, 0.9)
    """
    finite = np.asarray(data, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return 0.0, 1.0
    low, high = ((float(finite.min()), float(finite.max())) if len(finite) < 50
                 else tuple(float(v) for v in np.percentile(finite, [2, 98])))
    if high - low < 0.05:
        mid = (low + high) / 2
        low, high = mid - 0.025, mid + 0.025
    return low, high


@figure("per_class_heatmaps_test", "Per-class test results of the best configurations (chosen on validation)",
        section="Per class")
def per_class_heatmaps_test(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """:func:`per_class_heatmaps` on the test split (the best weights of the same trials); None without one."""
    return per_class_heatmaps(tables, metric, mode, split="test")


GAIN_COLUMNS = ["class_name", "transferred", "baseline", "gain", "ci", "low", "high", "n_transferred",
                "n_baseline"]


def _side(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    return best_configuration(trials, metric, mode, by=swept_columns(trials))


def per_class_gain_table(tables, metric: str = "val_acc", mode: str = "max", split: str = "val",
                         level: float = 0.95) -> pd.DataFrame:
    """Per-class accuracy of transfer against training from scratch, over seeds.

    The best transferred configuration and the best from-scratch configuration (``scratch_cnn`` /
    ``baseline_cnn``) are those with the best seed mean of ``best_<metric>`` (seeds of the same fidelity,
    :func:`analysis.aggregate.best_configuration`). Per class on ``split``: ``transferred`` and ``baseline`` are
    the means over each configuration's seeds, ``gain`` their difference, ``ci`` the half-width of its ``level``
    interval (Welch-Satterthwaite; NaN when either side has one seed), ``low`` / ``high`` its ends, and
    ``n_transferred`` / ``n_baseline`` the seeds with per-class rows. Largest gain first; the trial ids of
    both sides are in ``.attrs`` (lists). Empty without a baseline or per-class rows.
    """
    empty = pd.DataFrame(columns=GAIN_COLUMNS)
    trials, pc = tables.trials, tables.per_class
    if (pc.empty or "accuracy" not in pc.columns or "config.model.arch" not in trials.columns or trials.empty):
        return empty
    scratch = trials[trials["config.model.arch"].isin(FROM_SCRATCH)]
    base, best = _side(scratch, metric, mode), _side(transferred(trials), metric, mode)
    if base.empty or best.empty:
        return empty
    rows = class_rows(pc, list(best["trial_id"]) + list(base["trial_id"]), split)
    rows = rows[rows["accuracy"].notna()]
    values = {name: rows[rows["trial_id"].isin(set(side["trial_id"]))].groupby("class_name")["accuracy"].apply(list)
              for name, side in (("transferred", best), ("baseline", base))}
    names = values["transferred"].index.intersection(values["baseline"].index)
    if not len(names):
        return empty
    out = []
    for name in names:
        a, b = values["transferred"][name], values["baseline"][name]
        gain = float(np.mean(a) - np.mean(b))
        ci = difference_interval(a, b, level)
        out.append({"class_name": name, "transferred": float(np.mean(a)), "baseline": float(np.mean(b)),
                    "gain": gain, "ci": ci, "low": gain - ci, "high": gain + ci, "n_transferred": len(a),
                    "n_baseline": len(b)})
    table = pd.DataFrame(out, columns=GAIN_COLUMNS)
    table = table.sort_values(["gain", "class_name"], ascending=[False, True], kind="mergesort")
    table = table.reset_index(drop=True)
    table.attrs.update(transferred=sorted(best["trial_id"]), baseline=sorted(base["trial_id"]), split=split,
                       level=level)
    return table


def _describe(trials: pd.DataFrame, ids: list, metric: str) -> str:
    rows = trials[trials["trial_id"].isin(set(ids))]
    group_col = group_column(trials)
    row = rows.iloc[0]
    label = config_label(row.get(ARCH, "?"), row.get(group_col) if group_col else None, group_col)
    values = rows[f"best_{metric}"]
    seeds = f"{len(rows)} seed{'s' if len(rows) != 1 else ''}"
    return f"{label} ({metric_label(metric)} {values.mean():.3f}, mean of {seeds})"


@figure("per_class_gain", "Per-class gain of transfer over training from scratch (mean over seeds, 95% CI)",
        section="Per class")
def per_class_gain(tables, metric: str = "val_acc", mode: str = "max", split: str = "val") -> Optional[Figure]:
    """A bar per class: mean accuracy over the seeds of the best transferred configuration minus that of the
    best from-scratch configuration, with its 95% interval (Welch) when both sides have 2+ seeds."""
    table = per_class_gain_table(tables, metric, mode, split)
    if table.empty:
        return None
    n = len(table)
    fig = Figure(figsize=(7.5, max(3.0, ROW_INCHES * min(n, MAX_ROWS) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    ci = table["ci"].to_numpy(float)
    has_ci = np.isfinite(ci).any()
    ax.barh(y, table["gain"], color=np.where(table["gain"] >= 0, "tab:green", "tab:red"),
            xerr=np.where(np.isfinite(ci), ci, 0.0) if has_ci else None, ecolor="0.25", capsize=2 if n <= 40 else 0)
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_ylim(-0.6, n - 0.4)   # no empty margin of rows above the first class
    if n <= MAX_ROWS:   # a fixed height per class keeps every label at 8 pt
        ax.set_yticks(y, table["class_name"], fontsize=FONT)
    else:
        ax.set_yticks([])
    words = {"val": "validation", "test": "test"}.get(split, split)
    interval = ("bars: mean over seeds, whiskers: 95% CI (Welch)" if has_ci
                else "one seed on a side: no interval")
    ax.set_xlabel(f"{words} accuracy gain (transferred - from scratch); {interval}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Best transferred: {_describe(tables.trials, table.attrs['transferred'], metric)}\n"
                 f"vs from scratch: {_describe(tables.trials, table.attrs['baseline'], metric)}", fontsize=10)
    return fig
