"""One self-contained HTML report of a study: summary, leaderboard, every figure that applies, the winner's command.

Figures are embedded as base64 PNGs, so the file can be mailed or copied off a cluster on its own; it needs no
JavaScript (a few lines of script only record, for automated checks, whether every image decoded).

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
import shlex
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import yaml

from analysis.aggregate import aggregate_seeds, best_per_group, finished, swept_columns
from analysis.load import StudyNotFound, StudyTables, load

TOP = 10
STUDY_FILE, PRETRAINED_FILE = "study.yaml", "pretrained.yaml"
CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.wide{overflow-x:auto}
.notice{background:#fff4d6;border:1px solid #e8c66a;padding:.6em 1em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.95em;margin-top:.3em}.muted{color:#777}
"""
# Sets data-images / data-broken-images on <body> once the page has loaded, so a headless browser can tell
# whether every embedded figure decoded. The report reads the same without it.
CHECK_SCRIPT = """window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.body.dataset.images = String(imgs.length);
  document.body.dataset.brokenImages = String(broken);
});"""


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


def _summary(name: str, spec: dict, trials: pd.DataFrame, metric: str, mode: str) -> str:
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
        rows.append(("Seeds", esc(f"{trials['seed'].nunique()} per configuration")))
    status = trials["status"].astype(str) if "status" in trials.columns else pd.Series(dtype=str)
    stopped = trials[trials["stopped_early"].fillna(False).astype(bool)] if "stopped_early" in trials else trials[:0]
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
    return _kv_table(rows, "summary")


def _kv_table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _keys(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    if not by:
        return pd.Series("", index=frame.index)
    return frame[by].astype(object).where(frame[by].notna(), "\x00").astype(str).agg("\x1f".join, axis=1)


def leaderboard(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max", top: int = TOP) -> pd.DataFrame:
    """Best configurations: mean and 95% CI over seeds, with the id of each configuration's best trial."""
    by = swept_columns(trials)
    agg = aggregate_seeds(trials, metric, by)
    if agg.empty:
        return agg
    best = best_per_group(trials, by, metric, mode)
    col = f"best_{metric}"
    lookup = dict(zip(_keys(best, by), best[["trial_id", col, "best_epoch"]].itertuples(index=False)))
    picked = [lookup.get(k) for k in _keys(agg, by)]
    agg["best_trial"] = [p[0] if p else None for p in picked]
    agg["best_value"] = [p[1] if p else float("nan") for p in picked]
    agg["best_epoch"] = [p[2] if p else float("nan") for p in picked]
    agg = agg.sort_values(["mean", "best_trial"], ascending=[mode == "min", True], kind="mergesort")
    return agg.head(top).reset_index(drop=True)


def _leaderboard_html(board: pd.DataFrame, trials: pd.DataFrame, metric: str) -> str:
    by = [c for c in swept_columns(trials) if c in board.columns]
    head = (["#"] + [c.removeprefix("config.") for c in by] +
            [f"{metric}: mean ± 95% CI", "seeds", "best trial", f"best trial's {metric}", "best epoch"])
    lines = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for i, row in board.iterrows():
        ci = f" ± {row['ci']:.4f}" if row["n"] > 1 and not _empty(row["ci"]) else ""
        cells = [f'<td class="num">{i + 1}</td>']
        cells += [f"<td>{esc(_fmt(row[c]))}</td>" for c in by]
        cells += [f'<td class="num">{row["mean"]:.4f}{esc(ci)}</td>', f'<td class="num">{int(row["n"])}</td>',
                  f'<td class="trial-id"><code>{esc(row["best_trial"])}</code></td>',
                  f'<td class="num">{esc(_fmt(row["best_value"]))}</td>',
                  f'<td class="num">{esc(_fmt(row["best_epoch"], 3))}</td>']
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="wide"><table id="leaderboard">{"".join(lines)}</table></div>'


def _cli_value(value) -> str:
    if hasattr(value, "item"):
        value = value.item()  # numpy scalars to Python
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pandas turns int columns with gaps into floats; int fields reject '3.0'
    return repr(value) if isinstance(value, float) else str(value)


def rerun_command(trial: pd.Series, pretrained: Optional[dict] = None) -> str:
    """``tlsweep train --set key=value ...`` from every non-empty ``config.*`` value of one trial row."""
    values = {c.removeprefix("config."): v for c, v in trial.items() if c.startswith("config.") and not _empty(v)}
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
    return (f'<figure id="fig-{esc(spec.name)}"><img src="data:image/png;base64,{data}" alt="{esc(spec.title)}">'
            f"<figcaption>{esc(spec.title)} <span class=\"muted\">({esc(spec.name)})</span></figcaption></figure>")


def _figures(tables: StudyTables, metric: str, mode: str, log: Callable[[str], None]) -> str:
    from analysis.figures import FIGURES
    sections: dict[str, list[str]] = {}
    for spec in FIGURES.values():
        try:
            fig = spec.fn(tables, metric=metric, mode=mode)
            if fig is None:
                continue
            sections.setdefault(spec.section, []).append(_figure_html(spec, fig))
        except Exception as e:  # noqa: BLE001 - one broken figure must not cost the whole report
            log(f"figure {spec.name} failed: {type(e).__name__}: {e}")
            sections.setdefault(spec.section, []).append(
                f'<p class="notice">Figure {esc(spec.name)} could not be drawn: {esc(type(e).__name__)}: '
                f"{esc(e)}</p>")
    if not sections:
        return "<p>No figure applies to these results.</p>"
    return "".join(f"<h2>{esc(section)}</h2>{''.join(parts)}" for section, parts in sections.items())


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
    parts += ["<h2>Summary</h2>", _summary(name, spec, trials, metric, mode)]
    if not ok.empty:
        board = leaderboard(trials, metric, mode)
        parts += [f"<h2>Leaderboard</h2><p>The best configurations by mean {esc(metric)} over seeds "
                  f"(top {len(board)}).</p>", _leaderboard_html(board, trials, metric)]
        winner = trials[trials["trial_id"] == board.loc[0, "best_trial"]].iloc[0]
        pretrained = _read_pretrained(folder) if folder else {}
        parts += ["<h2>Re-run the winner</h2>",
                  f"<p>Trial <code>{esc(winner['trial_id'])}</code>, standalone, without Ray:</p>",
                  f'<pre><code id="rerun">{esc(rerun_command(winner, pretrained))}</code></pre>',
                  _figures(tables, metric, mode, log)]
    if folder is not None:
        parts.append(_explanations_html(folder))
    parts.append(_errors_html(trials))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(name)}: tlsweep report</title><style>{CSS}</style>"
            f"<script>{CHECK_SCRIPT}</script></head><body>{''.join(parts)}</body></html>\n")
    return page, notice


def _read_pretrained(folder: Path) -> dict:
    path = folder / PRETRAINED_FILE
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


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
