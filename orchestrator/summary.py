"""What a study found, from its Parquet tables: the status table, the end-of-run summary, and why a study that
produced nothing failed.

Every view works on partial results (a time budget shorter than an epoch, every trial errored): a column that
no trial reported is left out, never looked up.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pandas as pd

from analysis.aggregate import best_per_group, swept_columns
from analysis.load import StudyNotFound, load
from analysis.transferability import preselect_lines
from orchestrator.storage import is_uri, redact

GROUPS = ["config.model.arch", "config.model.strategy"]


class StudyFailed(Exception):
    """No trial of a study reported a result: one line per distinct error. ``tlsweep`` prints it, exits 1."""


def read_trials(folder: str | Path) -> pd.DataFrame:
    """The trials table; empty when no trial has started yet (no ``results/`` folder)."""
    try:
        return load(folder).trials
    except StudyNotFound:
        return pd.DataFrame()


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def held_out_column(trials: pd.DataFrame, metric: str) -> Optional[str]:
    """``best_test_<x>`` for a ``val_<x>`` metric: the best weights on the test split, when the data has one.

    Example:
        >>> held_out_column(pd.DataFrame({"best_test_acc": [0.5]}), "val_acc")
        'best_test_acc'
    """
    col = "best_test_" + metric.removeprefix("val_") if metric.startswith("val_") else None
    return col if col in trials.columns and trials[col].notna().any() else None


def _shown(frame: pd.DataFrame, cols: list[str], test: Optional[str]) -> str:
    cols = [c for c in dict.fromkeys(cols) if c in frame.columns]
    names = {test: test.removeprefix("best_")} if test else {}
    return frame[cols].rename(columns=lambda c: names.get(c, c.removeprefix("config."))).to_string(
        index=False, float_format=_fmt)


def status_table(folder: str | Path, metric: str = "val_acc") -> str:
    """One line per trial: state, epochs, best metric (and the best weights' test metric), early stop, error."""
    trials = read_trials(folder)
    if trials.empty:
        return f"{folder}: no trial results yet"
    test = held_out_column(trials, metric)
    cols = ["trial_id", "status", "epochs_run", "max_epochs", f"best_{metric}", test, "stopped_early"]
    lines = [_shown(trials.sort_values("trial_id"), [c for c in cols if c] + swept_columns(trials), test)]
    if "error" in trials.columns:
        for _, row in trials[trials["status"] == "ERROR"].iterrows():
            lines.append(f"{row['trial_id']}: {row['error']}")
    counts = trials["status"].value_counts().to_dict()
    lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def _flag(trials: pd.DataFrame, col: str) -> pd.Series:
    if col not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials[col].astype("boolean").fillna(False).astype(bool)


def _epochs(trials: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(trials[col], errors="coerce").fillna(0) if col in trials.columns else \
        pd.Series(0, index=trials.index)


def summary(folder: str | Path, metric: str = "val_acc", mode: str = "max") -> str:
    """Best configuration per architecture and strategy (with its test metric when the data has a test split),
    what early stopping and the end of the study stopped and saved, where the results are and their size."""
    trials = read_trials(folder)
    if trials.empty:
        return f"no trial results in {folder}"
    col = f"best_{metric}"
    groups = best_per_group(trials, GROUPS, metric, mode)
    if groups.empty:
        lines = [f"no finished trial reported {metric}"]
    else:
        groups = groups.sort_values(col, ascending=(mode == "min"))
        test = held_out_column(groups, metric)
        note = f" (test: {test.removeprefix('best_')} of the same weights)" if test else ""
        lines = [f"best {metric} per architecture and strategy{note}:",
                 _shown(groups, GROUPS + swept_columns(trials) + [col, test or "", "best_epoch", "epochs_run"],
                        test)]
    status = trials["status"] if "status" in trials.columns else pd.Series("", index=trials.index)
    at_end = _flag(trials, "ended_with_study")
    stopped = trials[_flag(trials, "stopped_early") & ~at_end]
    cut = trials[at_end & (status == "TERMINATED")]   # the rest of them: INTERRUPTED
    run = int(_epochs(trials, "epochs_run").sum())
    saved = int((_epochs(stopped, "max_epochs") - _epochs(stopped, "epochs_run")).clip(lower=0).sum())
    ended = f", {len(cut)} stopped by search.time_budget_s" if len(cut) else ""
    lines.append(f"trials: {len(trials)} ({(status == 'TERMINATED').sum()} finished, "
                 f"{len(stopped)} stopped early by ASHA{ended}, {(status == 'ERROR').sum()} errored); "
                 f"epochs run {run}, saved by early stopping {saved} "
                 f"({saved / max(1, saved + run):.0%} of a full run)")
    lines += preselect_lines(folder)  # search.preselect: what was left out and why (analysis.transferability)
    if (status == "INTERRUPTED").any():
        lines.append(f"{_trials(int((status == 'INTERRUPTED').sum()))} interrupted: continue with 'tlsweep resume "
                     f"{redact(folder)}'")
    if is_uri(folder):
        lines.append(f"results: {redact(str(folder).partition('?')[0])}/results (study folder size unknown: "
                     f"not a local folder)")
    else:
        where = Path(folder).resolve()
        lines.append(f"results: {where / 'results'} (study folder {human_size(folder_size(where))}, "
                     f"checkpoints included)")
    return "\n".join(lines)


def folder_size(path: str | Path) -> int:
    """Bytes of the files under a local folder (links not followed; files removed meanwhile skipped)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
    return total


def human_size(n: float) -> str:
    """
    Example:
        >>> human_size(512), human_size(3_400_000)
        ('512 B', '3.2 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def failure(folder: str | Path, metric: str = "val_acc", time_budget_s: Optional[float] = None) -> Optional[str]:
    """Why a study has nothing to show, or None when a trial reported ``metric``: one line per distinct error
    (by exception type: how many trials, the first one's message), and the trials that ended before reporting."""
    trials = read_trials(folder)
    lines = failure_lines(trials, metric, time_budget_s)
    return None if lines is None else lines.replace("of the study", f"of {folder}", 1)


def failure_lines(trials: pd.DataFrame, metric: str, time_budget_s: Optional[float]) -> Optional[str]:
    """The lines of :func:`failure` from a trials table.

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b"], "status": ["ERROR"] * 2, "epochs_run": [0, 0],
        ...                   "error": ["RuntimeError: x", "RuntimeError: y"]})
        >>> print(failure_lines(t, "val_acc", None))
        no trial of the study reported val_acc:
          2 trials errored: RuntimeError: x
    """
    col = f"best_{metric}"
    if col in trials.columns and trials[col].notna().any():
        return None
    lines = [f"no trial of the study reported {metric}:"]
    if trials.empty:
        lines.append("  no trial started before the study ended" + _budget(time_budget_s))
        return "\n".join(lines)
    trials = trials.sort_values([c for c in ("started_at", "trial_id") if c in trials.columns])
    status = trials["status"] if "status" in trials.columns else pd.Series("", index=trials.index)
    errored = trials[status == "ERROR"]
    messages = errored["error"].fillna("unknown error").astype(str) if "error" in errored.columns else \
        pd.Series("unknown error", index=errored.index)
    kinds = messages.map(lambda m: m.split(":", 1)[0].strip() if ":" in m else m)
    for kind in dict.fromkeys(kinds):
        same = messages[kinds == kind]
        lines.append(f"  {_trials(len(same))} errored: {same.iloc[0]}")
    rest = trials[status != "ERROR"]
    for state, group in rest.groupby(status[status != "ERROR"], sort=True):
        why = _budget(time_budget_s) if state == "TERMINATED" else ""
        lines.append(f"  {_trials(len(group))} {str(state).lower()} before reporting an epoch{why}")
    return "\n".join(lines)


def _trials(n: int) -> str:
    return f"{n} trial" + ("" if n == 1 else "s")


def _budget(time_budget_s: Optional[float]) -> str:
    return f" (search.time_budget_s: {time_budget_s:g} s)" if time_budget_s else ""
