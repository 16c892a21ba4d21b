"""Read a study's Parquet tables into pandas (no Ray, no GPU): while the study runs and after, from a local
folder or an ``s3://`` / ``gs://`` URI (pyarrow filesystems), one study or several.

Example:
    >>> t = load("results/quickstart")                                   # doctest: +SKIP
    >>> t.trials.groupby("config.model.arch")["best_val_acc"].max()      # doctest: +SKIP
    >>> both = load(["results/quickstart", "results/other"])            # a `study` column tells them apart
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TABLES = ("trials", "epochs", "per_class", "confusion")
PathLike = Union[str, Path]


class StudyNotFound(FileNotFoundError):
    """No study results at the given location."""


@dataclass
class StudyTables:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    path: str = ""

    @property
    def empty(self) -> bool:
        return self.trials.empty


def _filesystem(location: PathLike) -> tuple[pafs.FileSystem, str]:
    text = str(location)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def results_root(location: PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the folder that holds the tables (``<study>/results`` or the folder itself)."""
    fs, path = _filesystem(location)
    if _is_dir(fs, f"{path}/results"):
        return fs, f"{path}/results"
    if any(_is_dir(fs, f"{path}/{t}") for t in TABLES):
        return fs, path
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise StudyNotFound(f"{location}: no such study folder")
    raise StudyNotFound(f"{location}: no results yet (no results/ folder with trials/, epochs/, ...)")


def _read_one(fs: pafs.FileSystem, path: str):
    for attempt in range(3):  # a part may be replaced while a running study writes it
        try:
            return pq.read_table(path, filesystem=fs)
        except (OSError, FileNotFoundError):
            time.sleep(0.05 * (attempt + 1))
    return None


def _read_parts(fs: pafs.FileSystem, folder: str) -> pd.DataFrame:
    """All parts of one table as one DataFrame: read as Arrow in parallel, joined once, converted once
    (10,000 parts convert ~10x faster than part-by-part pandas). Parts may differ in columns (e.g. val_top5
    only with 10+ classes, or an all-empty column): permissive promotion aligns them."""
    if not _is_dir(fs, folder):
        return pd.DataFrame()
    infos = fs.get_file_info(pafs.FileSelector(folder))
    paths = sorted(i.path for i in infos if i.path.endswith(".parquet") and not i.base_name.startswith("."))
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = [t for t in pool.map(lambda p: _read_one(fs, p), paths) if t is not None and t.num_rows]
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_table(location: PathLike, table: str) -> pd.DataFrame:
    fs, root = results_root(location)
    return _read_parts(fs, f"{root}/{table}")


def load(location: PathLike | Sequence[PathLike]) -> StudyTables:
    """All four tables of one study (a folder or URI), or of several studies concatenated."""
    if isinstance(location, (list, tuple)):
        parts = [load(loc) for loc in location]
        return StudyTables(*(pd.concat([getattr(p, t) for p in parts], ignore_index=True, sort=False)
                             for t in TABLES), path=",".join(str(x) for x in location))
    fs, root = results_root(location)
    return StudyTables(*(_read_parts(fs, f"{root}/{t}") for t in TABLES), path=str(location))
