"""``tlsweep status --watch``: a table of a study's trials, refreshed from its Parquet tables while it runs.

Reads the trials table only (no Ray, no torch), so it costs what ``tlsweep status`` costs, once per refresh. The
watch ends when the study ends (the sink compacts the tables then: :func:`analysis.load.study_ended`) or on
Ctrl-C; a driver that died without ending its study is watched until Ctrl-C.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

import pandas as pd

from analysis.load import study_ended
from orchestrator.summary import read_trials
from trainables.progress import duration as clock, eta as eta_s

LIVE = ("RUNNING", "RECOVERING", "PENDING")


def _num(row: pd.Series, col: str) -> Optional[float]:
    value = row.get(col)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def watch_rows(trials: pd.DataFrame, metric: str, mode: str, now: float) -> pd.DataFrame:
    """One row per trial: status, epoch, the last and best ``metric``, elapsed and (running trials) ETA; the
    best trials first (``mode``), trials without a value last.

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b"], "status": ["RUNNING", "TERMINATED"], "epochs_run": [2, 4],
        ...                   "max_epochs": [4, 4], "last_val_acc": [0.5, 0.7], "best_val_acc": [0.6, 0.8],
        ...                   "started_at": [0.0, 0.0], "ended_at": [None, 100.0]})
        >>> watch_rows(t, "val_acc", "max", now=60.0)[["trial", "epoch", "best", "elapsed", "ETA"]].values.tolist()
        [['b', '4/4', 0.8, '1:40', '—'], ['a', '2/4', 0.6, '1:00', '1:00']]
    """
    out = []
    for _, row in trials.iterrows():
        status = str(row.get("status") or "")
        run, most = _num(row, "epochs_run"), _num(row, "max_epochs")
        start, end = _num(row, "started_at"), _num(row, "ended_at")
        elapsed = None if start is None else (end if end is not None and status not in LIVE else now) - start
        eta = eta_s(run, most, elapsed) if status in LIVE and elapsed is not None and run and most else None
        out.append({"trial": row.get("trial_id"), "status": status,
                    "epoch": f"{int(run or 0)}/{int(most)}" if most else f"{int(run or 0)}",
                    metric: _num(row, f"last_{metric}"), "best": _num(row, f"best_{metric}"),
                    "elapsed": clock(elapsed), "ETA": clock(eta)})
    frame = pd.DataFrame(out, columns=["trial", "status", "epoch", metric, "best", "elapsed", "ETA"])
    return frame.sort_values(["best", "trial"], ascending=[mode == "min", True], na_position="last",
                             kind="stable").reset_index(drop=True)


def watch_table(folder: str | Path, metric: str, mode: str, now: Optional[float] = None) -> str:
    """The text of one refresh: a line of counts, then the table (or why there is none yet)."""
    trials = read_trials(folder)
    if trials.empty:
        return f"{folder}: no trial results yet (waiting for the first trial to start)"
    rows = watch_rows(trials, metric, mode, time.time() if now is None else now)
    counts = rows["status"].str.lower().value_counts()
    head = f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    best = rows["best"].dropna()
    if len(best):
        head += f"; best {metric} so far {best.iloc[0]:.4f} ({rows.loc[best.index[0], 'trial']})"
    return head + "\n" + rows.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="—")


def watch(folder: str | Path, metric: str, mode: str, interval: float = 5.0, out: TextIO = sys.stdout,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Refresh :func:`watch_table` every ``interval`` seconds until the study ends (or Ctrl-C); exit code 0."""
    tty = out.isatty()
    try:
        while True:
            ended = study_ended(folder)  # before reading: the table printed last is complete
            text = watch_table(folder, metric, mode)
            stamp = time.strftime("%H:%M:%S")
            if tty:
                out.write("\033[H\033[J")  # redraw in place
            out.write(f"{folder} at {stamp}{' (study ended)' if ended else ''}\n{text}\n\n")
            out.flush()
            if ended:
                return 0
            sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
