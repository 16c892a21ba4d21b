"""One self-contained HTML report of a study: summary, a sortable leaderboard, the settings held fixed, the
winner's command, interactive figures (:mod:`analysis.interactive`) and the static ones in a collapsed section.

The page embeds everything it needs (the plotly.js bundle once, the static figures as base64 PNGs), so the file can
be mailed or copied off a cluster and opened offline. Without JavaScript the summary, leaderboard, command, fixed
settings and the static figures still read; the interactive figures need it. A few lines of script record, for
automated checks, whether every image decoded, every Plotly figure drew and whether any script error happened.

Example:
    >>> path = write_report("results/quickstart")         # doctest: +SKIP
    >>> path.name                                         # doctest: +SKIP
    'report.html'
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import os
import shlex
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import yaml

from analysis.aggregate import (SEED_COLUMNS, aggregate_seeds, finished, seed_groups, split_metric, swept_columns,
                                welch_p)
from analysis.figures.asha import stopped_by_scheduler
from analysis.load import StudyNotFound, StudyTables, load
from trainables.applies import applicable   # plain Python: imports no torch

TOP = 10
BOARD_ROWS = 100   # configurations in the report's leaderboard (sortable and filterable in the page)
ALPHA = 0.05   # Welch's t-test level for "indistinguishable from the first"
STUDY_FILE, PRETRAINED_FILE = "study.yaml", "pretrained.yaml"
CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.wide{overflow-x:auto}
.notice{background:#fff4d6;border:1px solid #e8c66a;padding:.6em 1em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.95em;margin-top:.3em}.muted{color:#777}
tr.tied td{background:#eef7ee}td.test,th.test{background:#f3f0fa}
#leaderboard th{cursor:pointer;user-select:none}#leaderboard td{white-space:nowrap}
#leaderboard th[aria-sort=ascending]::after{content:" ▲"}#leaderboard th[aria-sort=descending]::after{content:" ▼"}
#leaderboard-filter{margin:.3em 0;padding:.2em .4em;width:20em}
.plot-scroll{max-height:75vh;overflow:auto;border:1px solid #eee}figure.interactive{margin:1.5em 0}
details.static>summary{cursor:pointer;font-size:1.2em;margin-top:2em}
"""
# Sets data-images / data-broken-images on <body> once the page has loaded, so a headless browser can tell
# whether every embedded figure decoded. The report reads the same without it.
CHECK_SCRIPT = """window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.body.dataset.images = String(imgs.length);
  document.body.dataset.brokenImages = String(broken);
  setTimeout(function () {   // Plotly draws while the page loads; count what it drew once it settled
    var figs = Array.prototype.slice.call(document.querySelectorAll("figure.interactive"));
    var state = figs.map(function (f) {
      var gd = f.querySelector(".plotly-graph-div");
      var traces = gd && gd.data ? gd.data.length : -1;
      var drawn = gd && gd.querySelector(".plot-container svg.main-svg") ? 1 : 0;
      return f.id + ":" + f.dataset.traces + ":" + traces + ":" + drawn;
    });
    document.body.dataset.plots = String(figs.length);
    document.body.dataset.plotsDrawn = String(state.filter(function (s) {
      var p = s.split(":"); return p[1] === p[2] && p[3] === "1"; }).length);
    document.body.dataset.plotState = state.join(" ");
    document.body.dataset.jsErrors = String(window.tlsweepErrors.length);
    document.body.dataset.jsErrorText = window.tlsweepErrors.join(" | ").slice(0, 2000);
  }, 200);
});"""
# First in <head>: records uncaught errors and console.error calls, for the check above.
ERROR_SCRIPT = """window.tlsweepErrors = [];
window.addEventListener("error", function (e) { window.tlsweepErrors.push(String(e.message || e)); });
(function () { var original = console.error; console.error = function () {
  window.tlsweepErrors.push(Array.prototype.join.call(arguments, " ")); return original.apply(console, arguments); };
})();"""
# The leaderboard: a click on a header sorts by that column (again: the other way), the box filters the rows.
LEADERBOARD_SCRIPT = """document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("leaderboard");
  if (!table || !table.tBodies.length) return;
  var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
  function key(row, i) {
    var cell = row.cells[i], raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    var num = parseFloat(raw);
    return raw !== "" && !isNaN(num) && isFinite(Number(raw)) || raw === "Infinity" ? num : raw.toLowerCase();
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    th.title = "sort by this column";
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, i), y = key(b, i), xe = x === "" || x === "—", ye = y === "" || y === "—";
        if (xe || ye) return xe - ye;   // empty cells last, either way
        var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var box = document.createElement("input");
  box.type = "search"; box.id = "leaderboard-filter"; box.placeholder = "filter rows (any text, e.g. resnet)";
  var count = document.createElement("span");
  count.className = "muted"; count.id = "leaderboard-count";
  table.parentNode.parentNode.insertBefore(box, table.parentNode);
  table.parentNode.parentNode.insertBefore(count, table.parentNode);
  box.addEventListener("input", function () {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var text = r.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.hidden = !keep; shown += keep ? 1 : 0;
    });
    count.textContent = words.length ? " " + shown + " of " + body.rows.length + " rows" : "";
  });
});"""
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == "" or value is pd.NA or value is pd.NaT


def _fmt(value, digits: int = 4) -> str:
    if _empty(value):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) or hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f":
        return f"{float(value):.{digits}g}"
    return str(value)


def _duration(seconds: float) -> str:
    s = float(seconds)
    human = f"{s / 3600:.1f} h" if s >= 7200 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"
    return f"{s:,.0f} s ({human})" if s >= 120 else human


def _read_study(folder: Path) -> dict:
    path = folder / STUDY_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _load(study_dir) -> StudyTables:
    text = str(study_dir)
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.exists():
            raise StudyNotFound(f"{study_dir}: no such study folder")
        if not path.is_dir():
            raise StudyNotFound(f"{study_dir}: not a folder")
    try:
        return load(study_dir)
    except StudyNotFound:
        if "://" in text:
            raise
        if not (path / STUDY_FILE).is_file():  # any folder: nothing is written into it
            raise StudyNotFound(f"{study_dir}: not a study folder (no {STUDY_FILE}, no results/); run a study "
                                f"with 'tlsweep run' first") from None
        empty = pd.DataFrame()
        return StudyTables(empty, empty, empty, empty, path=text)  # the folder exists: nothing reported yet


# ---- sections -----------------------------------------------------------------------------------------------
def _swept_values(trials: pd.DataFrame, col: str) -> str:
    values = trials[col]
    present = values.dropna()
    note = " and empty where it does not apply" if len(present) < len(values) else ""
    uniques = present.unique().tolist()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if numeric and len(uniques) > 8:
        return f"{_fmt(present.min())} to {_fmt(present.max())} ({len(uniques)} values){note}"
    shown = sorted(uniques) if numeric else sorted(uniques, key=str)
    return ", ".join(_fmt(v) for v in shown) + note


def _winner_row(board: Optional[pd.DataFrame], metric: str) -> Optional[tuple[str, str]]:
    if board is None or board.empty:
        return None
    row, test = board.iloc[0], board.attrs.get("test")
    seeds = f"{int(row['n'])} seed{'s' if row['n'] != 1 else ''}" + (
        f" at {_fmt(row['epochs'], 3)} epochs" if not _empty(row["epochs"]) else "")
    text = f"{metric} {_mean_ci(row['mean'], row['ci'], row['n'])}"
    if test:
        text += f"; {test} {_mean_ci(row['test_mean'], row['test_ci'], row['test_n'])}"
    text += f" (mean over {seeds}); best trial {row['best_trial']}: {metric} {_fmt(row['best_value'])}"
    if test:
        text += f", {test} {_fmt(row['best_test'])}"
    return "Best configuration", f'<span id="summary-winner">{esc(text)}</span>'


def _summary(name: str, spec: dict, trials: pd.DataFrame, metric: str, mode: str,
             board: Optional[pd.DataFrame] = None) -> str:
    data = spec.get("data", {}) if isinstance(spec.get("data"), dict) else {}
    dataset = data.get("name")
    if dataset is None and "config.data.name" in trials.columns:
        dataset = ", ".join(sorted(trials["config.data.name"].dropna().astype(str).unique()))
    rows = [("Study", esc(name))]
    if spec.get("description"):
        rows.append(("Description", esc(str(spec["description"]).strip())))
    rows += [("Data set", esc(dataset or "—")), ("Metric", esc(f"{metric} ({mode})"))]
    if trials.empty:
        return _kv_table(rows, "summary")
    swept = swept_columns(trials)
    rows.append(("Swept", "<br>".join(f"<code>{esc(c.removeprefix('config.'))}</code>: "
                                      f"{esc(_swept_values(trials, c))}" for c in swept) or "nothing (one configuration)"))
    if "seed" in trials.columns and trials["seed"].nunique() > 1:
        groups = seed_groups(trials, metric, swept)
        lower = int((~groups["_averaged"]).sum())
        note = (f"; {lower} finished seed{'s' if lower != 1 else ''} stopped at fewer epochs than the longest-"
                f"running seed of {'their' if lower != 1 else 'its'} configuration, counted but not averaged"
                if lower else "")
        rows.append(("Seeds", esc(f"{trials['seed'].nunique()} per configuration{note}")))
    status = trials["status"].astype(str) if "status" in trials.columns else pd.Series(dtype=str)
    stopped = trials[stopped_by_scheduler(trials)]  # by the scheduler; a time budget's or an interrupt's are not
    running = int((~status.isin(["TERMINATED", "ERROR"])).sum())
    counts = (f"{len(trials)} trials: {int((status == 'TERMINATED').sum())} finished "
              f"({len(stopped)} of them stopped early by ASHA), {int((status == 'ERROR').sum())} errored"
              + (f", {running} still running" if running else ""))
    rows.append(("Trials", esc(counts)))
    compute = []
    for col, label in (("wall_seconds", "trial time"), ("gpu_seconds", "GPU time"), ("cpu_seconds", "CPU time")):
        if col in trials.columns and trials[col].fillna(0).sum() > 0:
            compute.append(f"{label} {_duration(trials[col].fillna(0).sum())}")
    if "epochs_run" in trials.columns:
        run = int(trials["epochs_run"].fillna(0).sum())
        saved = int((stopped["max_epochs"] - stopped["epochs_run"]).sum()) if len(stopped) else 0
        compute.append(f"epochs run {run:,}; saved by early stopping {saved:,} "
                       f"({saved / max(1, saved + run):.0%} of running every trial to the end)")
    rows.append(("Compute", esc("; ".join(compute))))
    winner = _winner_row(board, metric)
    if winner:
        rows.append(winner)
    return _kv_table(rows, "summary")


def _kv_table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _keys(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    if not by:
        return pd.Series("", index=frame.index)
    return frame[by].astype(object).where(frame[by].notna(), "\x00").astype(str).agg("\x1f".join, axis=1)


def _test_column(trials: pd.DataFrame, metric: str) -> Optional[str]:
    """``test_acc`` for ``val_acc`` when the trials table has ``best_test_acc`` values, else None."""
    test = split_metric(metric)
    return test if test and f"best_{test}" in trials.columns and trials[f"best_{test}"].notna().any() else None


def leaderboard(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max", top: int = TOP,
                alpha: float = ALPHA) -> pd.DataFrame:
    """Best configurations: mean and 95% CI over seeds of the same fidelity, with the id of each configuration's
    best trial, and how each compares with the first by Welch's t-test.

    A configuration's seeds are averaged like with like (:func:`analysis.aggregate.aggregate_seeds`): ``n``
    seeds that ran ``epochs`` epochs; ``n_excluded`` seeds stopped earlier are counted, not averaged.
    ``p_value`` is Welch's two-sided t-test (unequal variances) of the configuration's averaged seeds against
    the first's; ``tied`` is True when p >= ``alpha`` (statistically indistinguishable from the first), False
    when p < ``alpha``, None when either side has fewer than 2 seeds (the test cannot be run) and for the first
    row. With a test split, ``test_mean`` / ``test_ci`` / ``test_n`` average ``best_test_*`` over the same seeds
    and ``best_test`` is the best trial's.
    """
    by = swept_columns(trials)
    agg = aggregate_seeds(trials, metric, by)
    if agg.empty:
        return agg
    col = f"best_{metric}"
    groups = seed_groups(trials, metric, by)
    used = groups[groups["_averaged"]]
    # aggregate_seeds and seed_groups number configurations the same way (groupby order)
    agg["_config"] = sorted(groups["_config"].unique())
    ordered = used.sort_values([col, "trial_id"], ascending=[mode == "min", True], kind="mergesort")
    best = ordered.groupby("_config").head(1).set_index("_config")
    agg["best_trial"] = best["trial_id"].reindex(agg["_config"]).to_numpy()
    agg["best_value"] = best[col].reindex(agg["_config"]).to_numpy()
    agg["best_epoch"] = (best["best_epoch"].reindex(agg["_config"]).to_numpy() if "best_epoch" in best.columns
                         else float("nan"))
    test = _test_column(trials, metric)
    if test:
        tagg = aggregate_seeds(trials, metric, by, value=test)
        agg["test_mean"], agg["test_ci"], agg["test_n"] = (tagg["mean"].to_numpy(), tagg["ci"].to_numpy(),
                                                           tagg["n"].to_numpy())
        agg["best_test"] = best[f"best_{test}"].reindex(agg["_config"]).to_numpy()
    agg = agg.sort_values(["mean", "best_trial"], ascending=[mode == "min", True], kind="mergesort")
    values = used.groupby("_config")[col].apply(list)
    first = values[agg["_config"].iloc[0]]
    p = [welch_p(values[c], first) for c in agg["_config"]]
    p[0] = float("nan")
    agg["p_value"] = p
    agg["tied"] = [None if i == 0 or math.isnan(v) else bool(v >= alpha) for i, v in enumerate(p)]
    agg.attrs.update(alpha=alpha, test=test, testable=bool(len(first) >= 2 and (agg["n"] >= 2).sum() >= 2))
    return agg.drop(columns="_config").head(top).reset_index(drop=True)


def _mean_ci(mean, ci, n) -> str:
    if _empty(mean):
        return "—"
    return f"{mean:.4f}" + (f" ± {ci:.4f}" if n > 1 and not _empty(ci) else "")


def _versus_first(row, i: int) -> tuple[str, str]:
    if i == 0:
        return "best", "#1"
    if row["tied"] is None or _empty(row["tied"]):
        return "untestable", "—"
    if row["tied"]:
        return "tied", f"≈ (p = {row['p_value']:.2g})"
    return "worse", f"p = {row['p_value']:.2g}"


def _sort_key(value) -> str:
    """``data-sort`` for a numeric cell (the full value, where the cell shows it rounded); empty cells sort last."""
    if _empty(value):
        return ' data-sort=""'
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
        return ""   # text: the page sorts by what the cell shows
    number = float(value)
    return f' data-sort="{"Infinity" if number == math.inf else repr(number)}"'


def _leaderboard_html(board: pd.DataFrame, trials: pd.DataFrame, metric: str) -> str:
    by = [c for c in swept_columns(trials) if c in board.columns]
    test = board.attrs.get("test")
    head = ([("#", "")] + [(c.removeprefix("config."), "") for c in by] +
            [(f"{metric}: mean ± 95% CI", "")] + ([(f"{test}: mean ± 95% CI", "test")] if test else []) +
            [("seeds", ""), ("stopped earlier", ""), ("epochs", ""), ("vs #1 (Welch)", ""), ("best trial", ""),
             (f"best trial's {metric}", "")] + ([(f"best trial's {test}", "test")] if test else []) +
            [("best epoch", "")])
    lines = ["<thead><tr>" + "".join(f'<th{f" class={chr(34)}{k}{chr(34)}" if k else ""}>{esc(h)}</th>'
                                     for h, k in head) + "</tr></thead><tbody>"]
    for i, row in board.iterrows():
        kind, versus = _versus_first(row, i)
        cells = [f'<td class="num">{i + 1}</td>']
        cells += [f"<td{_sort_key(row[c])}>{esc(_fmt(row[c]))}</td>" for c in by]
        cells.append(f'<td class="num"{_sort_key(row["mean"])}>{esc(_mean_ci(row["mean"], row["ci"], row["n"]))}</td>')
        if test:
            cells.append(f'<td class="num test"{_sort_key(row["test_mean"])}>'
                         f'{esc(_mean_ci(row["test_mean"], row["test_ci"], row["test_n"]))}</td>')
        cells += [f'<td class="num">{int(row["n"])}</td>', f'<td class="num">{int(row["n_excluded"])}</td>',
                  f'<td class="num"{_sort_key(row["epochs"])}>{esc(_fmt(row["epochs"], 3))}</td>',
                  f'<td class="{kind}"{_sort_key(float("inf") if i == 0 else row["p_value"])}>{esc(versus)}</td>',
                  f'<td class="trial-id"><code>{esc(row["best_trial"])}</code></td>',
                  f'<td class="num"{_sort_key(row["best_value"])}>{esc(_fmt(row["best_value"]))}</td>']
        if test:
            cells.append(f'<td class="num test"{_sort_key(row["best_test"])}>{esc(_fmt(row["best_test"]))}</td>')
        cells.append(f'<td class="num"{_sort_key(row["best_epoch"])}>{esc(_fmt(row["best_epoch"], 3))}</td>')
        lines.append(f'<tr class="{kind}">' + "".join(cells) + "</tr>")
    lines.append("</tbody>")
    alpha = board.attrs.get("alpha", ALPHA)
    if board.attrs.get("testable"):
        welch = (f"≈: statistically indistinguishable from #1, Welch's t-test (two-sided, unequal variances) of "
                 f"its averaged seeds against #1's, p ≥ {alpha:g}; each row is compared with #1 alone, without a "
                 f"correction for multiple comparisons. —: fewer than 2 seeds, the test cannot be run.")
    else:
        welch = ("Welch's t-test against #1 needs at least 2 seeds per configuration: it cannot be run here, so no "
                 "configuration is marked as indistinguishable from #1.")
    note = ("Seeds are averaged like with like: a configuration's seeds that ran as many epochs as its longest-"
            "running seed (<i>epochs</i>); seeds an early-stopping scheduler stopped sooner are counted in "
            "<i>stopped earlier</i> and not averaged. " + esc(welch) +
            (f" The {esc(test)} columns are the same seeds' test-split results (best epoch's weights); they never "
             "chose anything." if test else "") + " Click a column header to sort by it; type in the box to filter.")
    return (f'<div class="wide"><table id="leaderboard">{"".join(lines)}</table></div>'
            f'<p class="muted" id="leaderboard-note">{note}</p>')


def _winner_metrics_html(winner: pd.Series) -> str:
    """The winner's metrics at its best epoch, validation next to test (and train)."""
    names = sorted({c.split("_", 2)[2] for c in winner.index
                    if c.startswith(("best_val_", "best_test_")) and not _empty(winner[c])})
    splits = [s for s in ("train", "val", "test") if any(f"best_{s}_{n}" in winner.index and
                                                           not _empty(winner[f"best_{s}_{n}"]) for n in names)]
    if not names or "val" not in splits:
        return ""
    head = "<tr><th>metric</th>" + "".join(f"<th>{s}</th>" for s in splits) + "</tr>"
    body = "".join("<tr><th>" + esc(n) + "</th>" + "".join(
        f'<td class="num">{esc(_fmt(winner.get(f"best_{s}_{n}")))}</td>' for s in splits) + "</tr>" for n in names)
    return f'<table id="winner-metrics">{head}{body}</table>'


def _cli_value(value) -> str:
    if hasattr(value, "item"):
        value = value.item()  # numpy scalars to Python
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pandas turns int columns with gaps into floats; int fields reject '3.0'
    return repr(value) if isinstance(value, float) else str(value)


def rerun_command(trial: pd.Series, pretrained: Optional[dict] = None, task: Optional[str] = None) -> str:
    """``tlsweep train --set key=value ...`` from the non-empty ``config.*`` values of one trial row that apply to
    it (:mod:`trainables.applies`: no ``model.conv_layers`` for a ResNet, no ``model.head_epochs`` unless the
    strategy is ``two_phase``, ...); ``task`` (the study's, when not classification) comes first."""
    values = {c.removeprefix("config."): v for c, v in trial.items() if c.startswith("config.") and not _empty(v)}
    if task and task != "classification":
        values = {"task": task, **values}
    values = applicable(values)
    arch = values.get("model.arch")
    if pretrained and arch in pretrained:  # the sweep started this architecture from its cached checkpoint
        values["model.weights"] = f"file:{pretrained[arch]}"
    args = [f"--set {shlex.quote(f'{k}={_cli_value(v)}')}" for k, v in values.items()]
    return " \\\n    ".join(["tlsweep train"] + args)


def _figure_html(spec, fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure class="static" id="fig-{esc(spec.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{esc(spec.title)}">'
            f"<figcaption>{esc(spec.title)} <span class=\"muted\">({esc(spec.name)})</span></figcaption></figure>")


def _sections(specs, to_html: Callable, tables: StudyTables, metric: str, mode: str,
              log: Callable[[str], None], kind: str = "figure") -> dict[str, list[str]]:
    """``{section: [html, ...]}`` of the figures in ``specs`` that apply; a figure that fails is a notice."""
    sections: dict[str, list[str]] = {}
    for spec in specs:
        try:
            fig = spec.fn(tables, metric=metric, mode=mode)
            if fig is not None:
                sections.setdefault(spec.section, []).append(to_html(spec, fig))
        except Exception as e:  # noqa: BLE001 - one broken figure must not cost the whole report
            log(f"{kind} {spec.name} failed: {type(e).__name__}: {e}")
            sections.setdefault(spec.section, []).append(
                f'<p class="notice">Figure {esc(spec.name)} could not be drawn: {esc(type(e).__name__)}: '
                f"{esc(e)}</p>")
    return sections


def _figures(tables: StudyTables, metric: str, mode: str, log: Callable[[str], None]) -> str:
    from analysis.figures import FIGURES
    sections = _sections(FIGURES.values(), _figure_html, tables, metric, mode, log)
    if not sections:
        return ""
    body = "".join(f"<h3>{esc(section)}</h3>{''.join(parts)}" for section, parts in sections.items())
    return ('<details class="static" id="static-figures"><summary>Static figures (PNG, as '
            "<code>analysis.figures.save_all</code> writes them for papers)</summary>" + body + "</details>")


def _interactive_html(spec, fig) -> str:
    import plotly.io as pio
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{spec.name}",
                      config=PLOTLY_CONFIG, default_width="100%", default_height=f"{fig.layout.height or 420}px")
    scroll = ' class="plot-scroll"' if spec.section == "Per class" else ""
    return (f'<figure class="interactive" id="ifig-{esc(spec.name)}" data-traces="{len(fig.data)}"><div{scroll}>'
            f"{div}</div><figcaption>{esc(spec.title)} <span class=\"muted\">({esc(spec.name)})</span>"
            "</figcaption></figure>")


def _interactive(tables: StudyTables, metric: str, mode: str, log: Callable[[str], None]) -> str:
    """The Plotly figures of :mod:`analysis.interactive`, by section; empty when none applies."""
    from analysis.interactive import INTERACTIVE
    sections = _sections(INTERACTIVE.values(), _interactive_html, tables, metric, mode, log, "interactive figure")
    if not sections:
        return ""
    return ('<noscript><p class="notice">The interactive figures need JavaScript; the static figures at the end '
            "of the page do not.</p></noscript>" +
            "".join(f"<h2>{esc(section)}</h2>{''.join(parts)}" for section, parts in sections.items()))


def fixed_settings(trials: pd.DataFrame) -> list[tuple[str, object]]:
    """The ``config.*`` settings every trial shared (not swept, the seed aside), as (key, value); settings empty
    in every trial are left out.

    Example:
        >>> fixed_settings(pd.DataFrame({"config.training.lr": [0.1, 0.01], "config.training.epochs": [5, 5]}))
        [('training.epochs', 5)]
    """
    swept = set(swept_columns(trials))
    out = []
    for col in trials.columns:
        if not col.startswith("config.") or col in swept or col in SEED_COLUMNS:
            continue
        present = trials[col].dropna()
        if len(present):
            value = present.iloc[0]
            out.append((col.removeprefix("config."), value.item() if hasattr(value, "item") else value))
    return out


def _fixed_html(trials: pd.DataFrame) -> str:
    rows = fixed_settings(trials)
    if not rows:
        return ""
    body = "".join(f"<tr><th><code>{esc(k)}</code></th><td>{esc(_cli_value(v))}</td></tr>" for k, v in rows)
    return ("<h2>Settings held fixed</h2><p>The study's settings that every trial shared (not swept).</p>"
            f'<div class="wide"><table id="fixed-settings"><thead><tr><th>setting</th><th>value</th></tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _preselect_html(study_dir) -> str:
    """What ``search.preselect`` swept and left out, and why (analysis.transferability); empty without it."""
    from analysis.transferability import preselect_lines
    lines = preselect_lines(study_dir)
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line.strip())}</li>" for line in lines[1:])
    return f'<h2>Preselection</h2><p id="preselect">{esc(lines[0])}</p>' + (f"<ul>{items}</ul>" if items else "")


def _errors_html(trials: pd.DataFrame, limit: int = 20) -> str:
    if "status" not in trials.columns:
        return ""
    errored = trials[trials["status"] == "ERROR"].sort_values("trial_id")
    if errored.empty:
        return ""
    items = "".join(f"<li><code>{esc(r['trial_id'])}</code>: {esc(r.get('error') or 'unknown error')}</li>"
                    for _, r in errored.head(limit).iterrows())
    more = f"<p class=\"muted\">and {len(errored) - limit} more</p>" if len(errored) > limit else ""
    return f"<h2>Errored trials</h2><ul>{items}</ul>{more}"


def _explanations_html(folder: Path) -> str:
    """The PNGs ``tlsweep explain`` listed in ``<study>/explain/index.json``, embedded like the figures."""
    index = folder / "explain" / "index.json"
    if not index.is_file():
        return ""
    try:
        entries = json.loads(index.read_text()).get("images", [])
    except (OSError, ValueError, AttributeError):
        return f'<h2 id="explanations">Explanations</h2><p class="notice">{esc(index)} could not be read.</p>'
    figures = []
    for entry in entries if isinstance(entries, list) else []:
        name = Path(str(entry.get("file", "") if isinstance(entry, dict) else "")).name  # only files in explain/
        path = index.parent / name
        if not name.lower().endswith(".png") or not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        title = entry.get("title") or name
        figures.append(f'<figure id="explain-{esc(Path(name).stem)}"><img src="data:image/png;base64,{data}" '
                       f'alt="{esc(title)}"><figcaption>{esc(title)} <span class="muted">({esc(name)})</span>'
                       f"</figcaption></figure>")
    if not figures:
        return ""
    return ('<h2 id="explanations">Explanations</h2><p>What the trained models look at, from '
            "<code>tlsweep explain</code>: Grad-CAM, occlusion, guided backpropagation, first-layer filters and "
            "predictions.</p>" + "".join(figures))


# ---- the report ---------------------------------------------------------------------------------------------
def render(study_dir, log: Callable[[str], None] = lambda line: None) -> tuple[str, Optional[str]]:
    """The report's HTML and, when there is nothing to rank yet, a one-line notice saying why."""
    tables = _load(study_dir)
    folder = Path(str(study_dir)).expanduser() if "://" not in str(study_dir) else None
    spec = _read_study(folder) if folder else {}
    search = spec.get("search", {}) if isinstance(spec.get("search"), dict) else {}
    metric, mode = search.get("metric", "val_acc"), search.get("mode", "max")
    trials = tables.trials
    name = spec.get("name") or (str(trials["study"].iloc[0]) if "study" in trials.columns and len(trials)
                                else (folder.resolve().name if folder else str(study_dir)))
    parts = [f"<h1>Study report: {esc(name)}</h1>",
             f'<p class="muted">{esc(folder.resolve() if folder else study_dir)}; written '
             f'{esc(datetime.now().strftime("%Y-%m-%d %H:%M"))}</p>']
    notice = None
    ok = finished(trials, metric)
    if trials.empty:
        notice = f"no results yet in {study_dir}: no trial has reported a result"
    elif ok.empty:
        notice = (f"no finished trials yet in {study_dir} ({len(trials)} trials, "
                  f"{int((trials['status'] == 'ERROR').sum())} errored): nothing to rank")
    if notice:
        parts.append(f'<p class="notice" id="notice">{esc(notice[0].upper() + notice[1:])}.</p>')
    board = leaderboard(trials, metric, mode, top=BOARD_ROWS) if not ok.empty else None
    parts += ["<h2>Summary</h2>", _summary(name, spec, trials, metric, mode, board)]
    parts.append(_preselect_html(study_dir))
    if board is not None:
        parts += [f"<h2>Leaderboard</h2><p>The best configurations by mean {esc(metric)} over seeds "
                  f"({'top ' if len(board) == BOARD_ROWS else ''}{len(board)}).</p>",
                  _leaderboard_html(board, trials, metric)]
        winner = trials[trials["trial_id"] == board.loc[0, "best_trial"]].iloc[0]
        pretrained = _read_pretrained(folder) if folder else {}
        parts += ["<h2>Re-run the winner</h2>",
                  f"<p>Trial <code>{esc(winner['trial_id'])}</code>, standalone, without Ray:</p>",
                  f'<pre><code id="rerun">{esc(rerun_command(winner, pretrained, spec.get("task")))}</code></pre>',
                  '<p class="muted">Only the settings that apply to this trial are listed (its architecture, '
                  "freezing strategy, optimizer and schedule); the others keep their defaults.</p>",
                  _winner_metrics_html(winner), _fixed_html(trials)]
        figures = _interactive(tables, metric, mode, log) + _figures(tables, metric, mode, log)
        parts.append(figures or "<p>No figure applies to these results.</p>")
    if folder is not None:
        parts.append(_explanations_html(folder))
    parts.append(_errors_html(trials))
    plotly_js = ""
    if 'class="interactive"' in "".join(parts):   # the bundle once, inline: the page works offline
        from plotly.offline import get_plotlyjs
        plotly_js = f'<script charset="utf-8">{get_plotlyjs()}</script>'
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(name)}: tlsweep report</title><style>{CSS}</style><script>{ERROR_SCRIPT}</script>"
            f"<script>{CHECK_SCRIPT}</script><script>{LEADERBOARD_SCRIPT}</script>{plotly_js}</head>"
            f"<body>{''.join(parts)}</body></html>\n")
    return page, notice


def _read_pretrained(folder: Path) -> dict:
    path = folder / PRETRAINED_FILE
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    # the study folder's own copies are named relative to it (orchestrator.weights_share); older studies: absolute
    return {arch: str(folder / p) if isinstance(p, str) and not os.path.isabs(p) else p
            for arch, p in data.items()} if isinstance(data, dict) else {}


def write_report(study_dir, out=None, log: Optional[Callable[[str], None]] = None) -> Path:
    """Write the study's HTML report (default ``<study_dir>/report.html``) and return its path.

    Raises StudyNotFound when ``study_dir`` does not exist. A study with no finished trials still gets a report
    that says so; ``log`` (e.g. ``print``) receives that notice and any figure that failed to draw.
    """
    log = log or (lambda line: None)
    page, notice = render(study_dir, log)
    if notice:
        log(notice)
    if out is None:
        text = str(study_dir)
        out = Path(text).expanduser() / "report.html" if "://" not in text else Path(
            f"{text.partition('?')[0].rstrip('/').rsplit('/', 1)[-1]}-report.html")
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path.resolve()
