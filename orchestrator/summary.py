"""What a study found, from its Parquet tables: the status table and the end-of-run summary."""
from __future__ import annotations

from pathlib import Path

from analysis.aggregate import best_per_group, swept_columns
from analysis.load import load
from orchestrator.storage import is_uri, redact


def status_table(folder: str | Path, metric: str = "val_acc") -> str:
    """One line per trial: state, epochs, best metric, early stop, error."""
    trials = load(folder).trials
    if trials.empty:
        return f"{folder}: no trial results yet"
    swept = swept_columns(trials)
    cols = ["trial_id", "status", "epochs_run", "max_epochs", f"best_{metric}", "stopped_early"] + swept
    cols = [c for c in cols if c in trials.columns]
    table = trials[cols].sort_values("trial_id").rename(columns=lambda c: c.removeprefix("config."))
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
    errored = trials[trials["status"] == "ERROR"]
    for _, row in errored.iterrows():
        lines.append(f"{row['trial_id']}: {row['error']}")
    counts = trials["status"].value_counts().to_dict()
    lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def summary(folder: str | Path, metric: str = "val_acc", mode: str = "max") -> str:
    """Best configuration per architecture and strategy, what ASHA stopped and saved, where the results are."""
    tables = load(folder)
    trials = tables.trials
    if trials.empty:
        return f"no trial results in {folder}"
    col = f"best_{metric}"
    groups = best_per_group(trials, ["config.model.arch", "config.model.strategy"], metric, mode)
    groups = groups.sort_values(col, ascending=(mode == "min"))
    swept = swept_columns(trials)
    shown = list(dict.fromkeys(["config.model.arch", "config.model.strategy"] + swept + [col, "best_epoch",
                                                                                        "epochs_run"]))
    shown = [c for c in shown if c in groups.columns]
    lines = [f"best {metric} per architecture and strategy:",
             groups[shown].rename(columns=lambda c: c.removeprefix("config.")).to_string(
                 index=False, float_format=lambda v: f"{v:.4f}")]
    stopped = trials[trials["stopped_early"].fillna(False).astype(bool)]
    saved = int((stopped["max_epochs"] - stopped["epochs_run"]).sum()) if len(stopped) else 0
    run = int(trials["epochs_run"].sum())
    lines.append(f"trials: {len(trials)} ({(trials['status'] == 'TERMINATED').sum()} finished, "
                 f"{len(stopped)} stopped early by ASHA, {(trials['status'] == 'ERROR').sum()} errored); "
                 f"epochs run {run}, saved by early stopping {saved} "
                 f"({saved / max(1, saved + run):.0%} of a full run)")
    where = redact(f"{folder}".partition("?")[0]) + "/results" if is_uri(folder) else Path(folder).resolve() / "results"
    lines.append(f"results: {where}")
    return "\n".join(lines)
