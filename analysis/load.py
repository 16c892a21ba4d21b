"""Read a study's Parquet tables into pandas (no Ray, no GPU): works while the study runs and after.

Example:
    >>> tables = load("results/quickstart")            # doctest: +SKIP
    >>> tables.trials.groupby("config.model.arch")["best_val_acc"].max()   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

TABLES = ("trials", "epochs", "per_class", "confusion")


@dataclass
class StudyTables:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    path: str = ""


def results_dir(path: str | Path) -> Path:
    """The ``results`` folder of a study directory (or the folder itself if it holds the tables)."""
    p = Path(path).expanduser()
    return p / "results" if (p / "results").is_dir() else p


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """Concatenate the parts of one table; parts may differ in columns (e.g. top-5 only with 10+ classes)."""
    folder = results_dir(path) / table
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    frames = [pq.read_table(p).to_pandas() for p in parts]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def load(path: str | Path) -> StudyTables:
    """All four tables of the study at ``path``."""
    return StudyTables(*(read_table(path, t) for t in TABLES), path=str(path))
