"""Interactive Plotly figures of a study, for the HTML report: hover, zoom, brushing.

The numbers come from the same functions the matplotlib figures use (:mod:`analysis.figures`:
``arch_strategy_cells``, ``per_class_matrix``, ``swept_params``, ``importance_table``, ``asha_data``, ...); this
module only lays them out. Every builder has the signature ``fn(tables, metric="val_acc", mode="max") ->
Optional[go.Figure]`` (None when it does not apply) and is registered in :data:`INTERACTIVE` in report order.
A point's hover names its trial and that trial's swept settings.

Example:
    >>> from analysis.synthetic import synthetic_tables
    >>> fig = INTERACTIVE["optimization_history"].fn(synthetic_tables(n_trials=12, n_epochs=4))
    >>> [t.name for t in fig.data]
    ['trial', 'best so far']
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.aggregate import finished, swept_columns
from analysis.figures._common import (ARCH, LR, STRATEGY, better, fmt_value, metric_label, ordered_labels,
                                      short, subsample)
from analysis.figures.asha import curves_data
from analysis.figures.comparison import arch_strategy_cells, arch_strategy_matrix
from analysis.figures.importance import importance_table, trials_note
from analysis.figures.params import encode, swept_params
from analysis.figures.perclass import PER_CLASS_VALUES, per_class_matrix

CELL_PX = 16          # per-class heatmap: pixels per class row, whatever the number of classes
MAX_CURVES = 300      # early-stopping curves drawn (SVG); the counts in the title cover every trial
MAX_LR_BINS = 12      # beyond this many distinct learning rates the best-per-lr line uses log bins
PANEL_COLUMNS = 3     # learning-rate panels per row
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass
class InteractiveSpec:
    name: str
    title: str
    fn: Callable[..., Optional[go.Figure]]
    section: str


INTERACTIVE: dict[str, InteractiveSpec] = {}


def interactive(name: str, title: str, section: str):
    """Register an interactive figure builder under ``name``."""
    def deco(fn):
        INTERACTIVE[name] = InteractiveSpec(name, title, fn, section)
        return fn
    return deco


def _layout(fig: go.Figure, title: str, height: int = 420, **kw) -> go.Figure:
    kw.setdefault("margin", {"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_layout(title={"text": html.escape(title), "font": {"size": 14}}, height=height, template="plotly_white",
                      hoverlabel={"align": "left"}, **kw)
    return fig


def hover_text(frame: pd.DataFrame, columns: Sequence[str], metric: Optional[str] = None) -> list[str]:
    """One hover label per row: ``trial <id>``, the metric, then ``name: value`` for each of ``columns``."""
    parts = [("trial " + frame["trial_id"].astype(str)).map(html.escape)]
    if metric and f"best_{metric}" in frame.columns:
        parts.append(frame[f"best_{metric}"].map(lambda v: f"best {metric}: {fmt_value(v)}"))
    for col in columns:
        if col in frame.columns:
            parts.append(frame[col].map(lambda v, c=col: html.escape(f"{short(c)}: {fmt_value(v)}")))
    return ["<br>".join(values) for values in zip(*parts)]


def _config_columns(trials: pd.DataFrame) -> list[str]:
    return swept_columns(trials) + [c for c in ("seed",) if c in trials.columns and trials[c].nunique() > 1]


def _colour(names: Sequence[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _arch_colours(trials: pd.DataFrame) -> dict[str, str]:
    """One colour per architecture of the study, the same in every figure."""
    return _colour(ordered_labels(trials[ARCH].map(fmt_value), None) if ARCH in trials.columns else ["all"])


# ---- search --------------------------------------------------------------------------------------------------
def history_data(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Finished trials in completion order (``ended_at``, else trial id) with ``order`` (1, 2, ...), ``value``
    (``best_<metric>``) and ``best_so_far`` (the best value among the trials finished until then)."""
    ok = finished(trials, metric)
    keys = [c for c in ("ended_at", "trial_id") if c in ok.columns]
    ok = ok.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)
    values = ok[f"best_{metric}"].astype(float)
    best = values.cummax() if mode == "max" else values.cummin()
    return ok.assign(order=np.arange(1, len(ok) + 1), value=values, best_so_far=best)


@interactive("optimization_history", "Optimization history: the objective of each trial as it finished",
             section="Search")
def optimization_history(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    ok = history_data(tables.trials, metric, mode)
    if len(ok) < 2:
        return None
    fig = go.Figure([
        go.Scatter(x=ok["order"], y=ok["value"], mode="markers", name="trial", marker={"size": 7, "opacity": 0.75},
                   text=hover_text(ok, _config_columns(tables.trials), metric), hovertemplate="%{text}<extra></extra>"),
        go.Scatter(x=ok["order"], y=ok["best_so_far"], mode="lines", name="best so far", line={"shape": "hv"},
                   hovertemplate="best so far after %{x} trials: %{y:.4g}<extra></extra>")])
    return _layout(fig, f"best {metric_label(metric)} of {len(ok)} finished trials, in completion order",
                   xaxis_title="trial (completion order)", yaxis_title=f"best {metric_label(metric)}")


def parallel_dimensions(trials: pd.DataFrame, metric: str = "val_acc") -> tuple[pd.DataFrame, list[dict]]:
    """Finished trials and one Parcoords dimension per swept parameter plus the metric: categories keep their
    labels (tick text at integer codes), the learning rate is on a log10 axis labelled in learning rates, other
    numbers on their own scale."""
    ok, params = swept_params(trials, metric)
    dims = []
    for p in params:
        values = encode(ok, p)
        dim = {"label": short(p.column), "values": values}
        if p.kind == "categorical":
            dim.update(tickvals=list(range(len(p.categories))), ticktext=[str(c) for c in p.categories],
                       range=[-0.3, len(p.categories) - 0.7])
        elif p.kind == "log":
            low, high = math.floor(np.nanmin(values)), math.ceil(np.nanmax(values))
            ticks = list(range(low, high + 1))
            dim.update(label=f"{short(p.column)} (log)", tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])
        dims.append(dim)
    if dims:
        dims.append({"label": f"best {metric_label(metric)}", "values": ok[f"best_{metric}"].to_numpy(float)})
    return ok, dims


@interactive("parallel_coordinates", "Parallel coordinates (drag along an axis to select a range)",
             section="Search")
def parallel_coordinates(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    ok, dims = parallel_dimensions(tables.trials, metric)
    if len(dims) < 3 or len(ok) < 3:
        return None
    score = ok[f"best_{metric}"].to_numpy(float)
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-15,
        line={"color": score, "colorscale": "Viridis", "reversescale": mode == "min", "showscale": True,
              "colorbar": {"title": {"text": metric_label(metric)}}}))
    return _layout(fig, f"{len(ok)} finished trials: one line each, coloured by best {metric_label(metric)}",
                   height=460, margin={"l": 130, "r": 40, "t": 110, "b": 30})


@interactive("importance", "Hyperparameter importance (fANOVA)", section="Search")
def importance(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    table = importance_table(tables.trials, metric)
    if table.empty:
        return None
    table = table.iloc[::-1]
    rho = ["—" if np.isnan(s) else f"{s:+.2f}" for s in table["spearman"]]
    fig = go.Figure(go.Bar(x=table["importance"], y=[short(p) for p in table["param"]], orientation="h",
                           customdata=rho, hovertemplate="%{y}: importance %{x:.3f}<br>Spearman ρ %{customdata}"
                                                         "<extra></extra>"))
    return _layout(fig, f"What explains {metric_label(metric)}: {trials_note(table.attrs)}",
                   height=max(260, 40 * len(table) + 120), xaxis_title="fANOVA importance (share of variance)")


# ---- comparison ----------------------------------------------------------------------------------------------
@interactive("arch_strategy", "Best validation metric per architecture and freezing strategy", section="Comparison")
def arch_strategy(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    cells = arch_strategy_cells(tables.trials, metric, mode)
    if len(cells) < 2:
        return None
    matrix = arch_strategy_matrix(tables.trials, metric, mode)
    info = cells.set_index(["arch", "group"])
    text = [[("" if pd.isna(matrix.iat[i, j]) else
              f"{matrix.iat[i, j]:.3f}" + (f" ± {info.loc[(a, g), 'ci']:.3f}" if info.loc[(a, g), "n"] > 1 and
                                           not pd.isna(info.loc[(a, g), "ci"]) else ""))
             for j, g in enumerate(matrix.columns)] for i, a in enumerate(matrix.index)]
    seeds = [[int(info.loc[(a, g), "n"]) if (a, g) in info.index else 0 for g in matrix.columns] for a in matrix.index]
    fig = go.Figure(go.Heatmap(
        z=matrix.to_numpy(float), x=[str(c) for c in matrix.columns], y=[str(r) for r in matrix.index], text=text,
        texttemplate="%{text}", customdata=seeds, colorscale="Viridis", reversescale=mode == "min",
        colorbar={"title": {"text": metric_label(metric)}},
        hovertemplate="%{y} / %{x}<br>" + metric + " %{text} (%{customdata} seeds)<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, f"best {metric_label(metric)} (seed mean of the best configuration of each cell)",
                   height=max(300, 60 * len(matrix) + 140), xaxis_title=str(matrix.columns.name))


def lr_points(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Finished trials with a positive learning rate, with ``_lr``, ``_arch``, ``_strategy`` and ``_best``: True
    for the best trial of its architecture at each learning rate (of each log-spaced bin when the rates were
    drawn at random, more than 12 of them)."""
    ok = finished(trials, metric)
    if LR not in ok.columns:
        return ok.iloc[0:0]
    ok = ok.assign(_lr=pd.to_numeric(ok[LR], errors="coerce"))
    ok = ok[ok["_lr"] > 0]
    arch = ok[ARCH].map(fmt_value) if ARCH in ok.columns else pd.Series("all", index=ok.index)
    strategy = ok[STRATEGY].map(fmt_value) if STRATEGY in ok.columns else pd.Series("all", index=ok.index)
    ok = ok.assign(_arch=arch, _strategy=strategy)
    if ok.empty:
        return ok.assign(_best=[])
    logx = np.log10(ok["_lr"])
    if ok["_lr"].nunique() > MAX_LR_BINS:
        edges = np.linspace(logx.min(), logx.max() + 1e-9, MAX_LR_BINS + 1)
        bins = pd.Series(np.digitize(logx, edges), index=ok.index)
    else:
        bins = ok["_lr"]
    score = better(ok[f"best_{metric}"].astype(float), mode)
    best = score.groupby([ok["_arch"], bins]).idxmax()
    return ok.assign(_best=ok.index.isin(best.to_numpy()))


@interactive("lr_sensitivity", "Sensitivity to the learning rate, per architecture", section="Comparison")
def lr_sensitivity(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    ok = lr_points(tables.trials, metric, mode)
    if ok.empty or ok["_lr"].nunique() < 2:
        return None
    col = f"best_{metric}"
    archs = ordered_labels(ok["_arch"], None)
    strategies = ordered_labels(ok["_strategy"], STRATEGY)
    palette = _colour(strategies)
    ncols = min(PANEL_COLUMNS, len(archs))
    nrows = math.ceil(len(archs) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=archs, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.22 / max(1, nrows - 1) if nrows > 1 else 0.1)
    columns = _config_columns(tables.trials)
    for k, arch in enumerate(archs):
        row, colnum = k // ncols + 1, k % ncols + 1
        one = ok[ok["_arch"] == arch]
        for strategy in strategies:
            pts = one[one["_strategy"] == strategy]
            if pts.empty:
                continue
            fig.add_trace(go.Scatter(x=pts["_lr"], y=pts[col], mode="markers", name=strategy, legendgroup=strategy,
                                     showlegend=strategy not in {t.name for t in fig.data}, opacity=0.7,
                                     marker={"color": palette[strategy], "size": 7},
                                     text=hover_text(pts, columns, metric), hovertemplate="%{text}<extra></extra>"),
                          row=row, col=colnum)
        line = one[one["_best"]].sort_values("_lr")
        fig.add_trace(go.Scatter(x=line["_lr"], y=line[col], mode="lines", name="best per lr", legendgroup="best",
                                 showlegend=k == 0, line={"color": "#333", "width": 1.5}, hoverinfo="skip",
                                 legendrank=2000),
                      row=row, col=colnum)
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text=f"best {metric_label(metric)}", col=1)
    return _layout(fig, f"{metric_label(metric)} vs learning rate ({len(ok)} finished trials; colour: strategy; "
                        "line: best per learning rate)", height=330 * nrows + 80,
                   legend={"title": {"text": "strategy"}})


@interactive("metric_vs_cost", "Validation metric against training cost", section="Comparison")
def metric_vs_cost(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    ok = finished(tables.trials, metric)
    cost = next((c for c in ("gpu_seconds", "wall_seconds") if c in ok.columns and
                 (pd.to_numeric(ok[c], errors="coerce") > 0).any()), None)
    if cost is None or len(ok) < 2:
        return None
    ok = ok.assign(_x=pd.to_numeric(ok[cost], errors="coerce"),
                   _arch=ok[ARCH].map(fmt_value) if ARCH in ok.columns else "all").dropna(subset=["_x"])
    archs = ordered_labels(ok["_arch"], None)
    palette = _arch_colours(tables.trials)
    columns = _config_columns(tables.trials)
    fig = go.Figure([go.Scatter(x=one["_x"], y=one[f"best_{metric}"], mode="markers", name=arch,
                                marker={"color": palette[arch], "size": 7}, opacity=0.75,
                                text=hover_text(one, columns, metric),
                                hovertemplate="%{text}<br>" + cost.replace("_", " ") + " %{x:.0f}<extra></extra>")
                     for arch in archs if len(one := ok[ok["_arch"] == arch])])
    positive = ok["_x"][ok["_x"] > 0]
    if len(positive) and positive.max() / positive.min() > 100:
        fig.update_xaxes(type="log")
    return _layout(fig, f"{metric_label(metric)} vs training cost", xaxis_title=cost.replace("_", " "),
                   yaxis_title=f"best {metric_label(metric)}", legend={"title": {"text": "architecture"}})


# ---- early stopping ------------------------------------------------------------------------------------------
def _lines(epochs: pd.DataFrame, metric: str, ids: Sequence, labels: dict) -> tuple[list, list, list]:
    """x, y and hover text of many curves in one trace, separated by gaps (one SVG path instead of one per trial)."""
    rows = epochs[epochs["trial_id"].isin(set(ids))][["trial_id", "epoch", metric]].dropna()
    rows = rows.sort_values(["trial_id", "epoch"], kind="mergesort")
    xs, ys, texts = [], [], []
    for tid, one in rows.groupby("trial_id", sort=True):
        xs += one["epoch"].tolist() + [None]
        ys += one[metric].tolist() + [None]
        texts += [labels.get(tid, str(tid))] * len(one) + [None]
    return xs, ys, texts


@interactive("early_stopping", "Early stopping: validation curves of every trial", section="Early stopping")
def early_stopping(tables, metric: str = "val_acc", mode: str = "max") -> Optional[go.Figure]:
    data = curves_data(tables, metric)
    if data is None:
        return None
    trials, epochs = tables.trials, tables.epochs
    labels = dict(zip(trials["trial_id"], hover_text(trials, _config_columns(trials))))
    full = data[~data["stopped_early"] & (data["status"] == "TERMINATED")]
    stopped = data[data["stopped_early"]]
    other = data[~data.index.isin(full.index) & ~data["stopped_early"]]
    share = min(1.0, MAX_CURVES / len(data))
    names = ordered_labels(data["arch"], None)
    palette = {**_colour(names), **_arch_colours(trials)}
    # stopped trials in their architecture's colour too, dashed: which architectures ASHA stopped shows
    groups = [(f"{a} (stopped early)", stopped[stopped["arch"] == a],
               {"color": palette[a], "width": 1, "dash": "dash"}) for a in names]
    groups += [(f"{a} (full length)", full[full["arch"] == a], {"color": palette[a], "width": 1.6}) for a in names]
    groups.append(("running / errored", other, {"color": "#d62728", "width": 1, "dash": "dot"}))
    traces = []
    for name, frame, line in groups:
        keep = subsample(frame["trial_id"], max(1, int(math.ceil(len(frame) * share))))
        if not keep:
            continue
        xs, ys, texts = _lines(epochs, metric, keep, labels)
        traces.append(go.Scatter(x=xs, y=ys, text=texts, mode="lines", name=name, line=line, connectgaps=False,
                                 hovertemplate="%{text}<br>epoch %{x}: " + metric + " %{y:.4g}<extra></extra>"))
    if len(stopped):
        marks = stopped[stopped["trial_id"].isin(set(subsample(stopped["trial_id"], MAX_CURVES)))]
        traces.append(go.Scatter(x=marks["last_epoch"], y=marks["last_value"], mode="markers", name="stopped here",
                                 marker={"symbol": "x", "color": "#444", "size": 7},
                                 text=[labels.get(t, t) for t in marks["trial_id"]],
                                 hovertemplate="%{text}<br>stopped after epoch %{x}<extra></extra>"))
    drawn = f"; {MAX_CURVES} of {len(data)} curves drawn" if len(data) > MAX_CURVES else ""
    return _layout(go.Figure(traces), f"{len(stopped)} of {len(data)} trials stopped early{drawn}",
                   height=460, xaxis_title="epoch", yaxis_title=metric_label(metric))


# ---- per class -----------------------------------------------------------------------------------------------
def class_order(per_class: pd.DataFrame) -> dict:
    """``class_name`` -> its position in the data set's label order (``class_index``)."""
    if per_class.empty or "class_index" not in per_class.columns:
        return {}
    names = per_class["class_name"] if "class_name" in per_class.columns else per_class["class_index"]
    names = names.fillna(per_class["class_index"]).map(fmt_value)
    return pd.to_numeric(per_class["class_index"], errors="coerce").groupby(names).min().to_dict()


def per_class_in_label_order(tables, value: str = "accuracy", metric: str = "val_acc", mode: str = "max",
                             split: str = "val") -> pd.DataFrame:
    """:func:`analysis.figures.perclass.per_class_matrix` with its rows in the data set's label order."""
    matrix = per_class_matrix(tables, value, metric, mode, split)
    if matrix.empty:
        return matrix
    order = class_order(tables.per_class)
    rank = [order.get(name, math.inf) for name in matrix.index]
    return matrix.iloc[np.argsort(rank, kind="stable")]


def per_class_heatmap(tables, metric: str = "val_acc", mode: str = "max", split: str = "val",
                      value: str = "accuracy") -> Optional[go.Figure]:
    """Class (rows, label order) x configuration heatmap with a fixed row height (:data:`CELL_PX`): the figure
    grows with the classes and the report scrolls it, the labels keep their size. The colour scale spans the
    data's range."""
    matrix = per_class_in_label_order(tables, value, metric, mode, split)
    if matrix.empty:
        return None
    z = matrix.to_numpy(float)
    finite = z[np.isfinite(z)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.01, high + 0.01
    rows, cols = matrix.shape
    labels = [str(r) for r in matrix.index]
    longest = max(len(str(c)) for c in matrix.columns)
    top = 50 + min(150, 4 * longest)   # configuration labels, above the cells (slanted 30 degrees)
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in matrix.columns], y=labels, colorscale="RdYlGn", zmin=low, zmax=high,
        xgap=1, ygap=1, colorbar={"title": {"text": value}, "len": min(1.0, 400 / (rows * CELL_PX + 1)),
                                  "y": 1, "yanchor": "top"},
        hovertemplate="class %{y}<br>%{x}<br>" + value + " %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=labels, ticktext=labels,
                     tickfont={"size": 11}, title_text="class (label order)")
    fig.update_xaxes(side="top", tickangle=-30 if longest > 12 else 0, tickfont={"size": 11})
    words = {"val": "validation", "test": "test"}.get(split, split)
    return _layout(fig, f"per-class {words} {value} of the best trial per configuration ({rows} classes; "
                        f"colour scale {low:.2f} to {high:.2f})", height=rows * CELL_PX + top + 40,
                   margin={"l": 140, "r": 20, "t": top, "b": 20})


for _split, _words in (("val", "validation"), ("test", "test (chosen on validation)")):
    for _value in PER_CLASS_VALUES:
        def _build(tables, metric: str = "val_acc", mode: str = "max", split=_split, value=_value):
            return per_class_heatmap(tables, metric, mode, split, value)
        _build.__name__ = f"per_class_{_value}_{_split}"
        interactive(_build.__name__, f"Per-class {_words} {_value if _value != 'iou' else 'IoU'}",
                    section="Per class")(_build)
