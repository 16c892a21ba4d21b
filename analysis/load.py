"""Read a study's Parquet tables into pandas (no Ray, no GPU): while the study runs and after, from a local
folder or an ``s3://`` / ``gs://`` URI (pyarrow filesystems), one study or several.

Example:
    >>> t = load("results/quickstart")                                   # doctest: +SKIP
    >>> t.trials.groupby("config.model.arch")["best_val_acc"].max()      # doctest: +SKIP
    >>> both = load(["results/quickstart", "results/other"])            # a `study` column tells them apart
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TABLES = ("trials", "epochs", "per_class", "confusion", "samples")
PathLike = Union[str, Path]


class StudyNotFound(FileNotFoundError):
    """No study results at the given location."""


class StudyUnreadable(StudyNotFound):
    """A study file that cannot be read (``study.yaml`` not UTF-8, or not YAML): one line naming the file."""


class DamagedPart(UserWarning):
    """A Parquet part that cannot be read (truncated copy, disk error): it is left out, the rest is read."""


def warn_damaged(path: str, error: BaseException) -> None:
    """One warning per damaged part (Python shows the same message once), naming the file and the cause."""
    cause = str(error).splitlines()[0] if str(error) else type(error).__name__
    cause = cause.split(f"'{path}': ", 1)[-1]  # pyarrow repeats the path: "Could not open ... '<path>': why"
    warnings.warn(f"{path}: unreadable Parquet part left out ({type(error).__name__}: {cause})", DamagedPart,
                  stacklevel=2)


@dataclass
class StudyTables:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # segmentation: fixed validation predictions
    path: str = ""

    @property
    def empty(self) -> bool:
        return self.trials.empty


def filesystem(location: PathLike) -> tuple[pafs.FileSystem, str]:
    """``pyarrow.fs`` filesystem and path of a local folder or a URI (``s3://bucket/x?endpoint_override=...``)."""
    text = str(location)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def results_root(location: PathLike, fs: Optional[pafs.FileSystem] = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the folder that holds the tables (``<study>/results`` or the folder itself)."""
    fs, path = (fs, str(location).rstrip("/")) if fs is not None else filesystem(location)
    if _is_dir(fs, f"{path}/results"):
        return fs, f"{path}/results"
    if any(_is_dir(fs, f"{path}/{t}") for t in TABLES):
        return fs, path
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise StudyNotFound(f"{location}: no such study folder")
    raise StudyNotFound(f"{location}: no results yet (no results/ folder with trials/, epochs/, ...)")


def read_study_yaml(location: PathLike) -> dict:
    """The ``study.yaml`` of a study folder (local or URI) as a mapping; ``{}`` when there is none.

    Raises StudyUnreadable, one line naming the file, when it is not UTF-8, not YAML or not a mapping."""
    fs, folder = filesystem(location)  # a URI's ?query (endpoint_override=...) stays with the filesystem
    path = f"{folder.rstrip('/')}/study.yaml"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    import yaml
    try:
        with fs.open_input_stream(path) as f:
            data = yaml.safe_load(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StudyUnreadable(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason}); restore it from "
                              f"a copy, or write it again") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise StudyUnreadable(f"{path}:{where} invalid YAML ({getattr(e, 'problem', None) or e})") from None
    except OSError as e:
        raise StudyUnreadable(f"{path}: cannot read ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StudyUnreadable(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _read_one(fs: pafs.FileSystem, path: str, damaged: Optional[list] = None):
    """One part, or None (with one DamagedPart warning) when it cannot be read."""
    error: BaseException | None = None
    for attempt in range(3):  # a part may be replaced while a running study writes it
        try:
            return pq.read_table(path, filesystem=fs)
        except FileNotFoundError:  # replaced or removed meanwhile: not damage
            time.sleep(0.05 * (attempt + 1))
            error = None
        except (OSError, pa.ArrowException) as e:  # truncated, not Parquet, a disk error
            error = e
            if not isinstance(e, OSError):
                break  # a broken file stays broken
            time.sleep(0.05 * (attempt + 1))
    if error is not None:
        warn_damaged(path, error)
        if damaged is not None:
            damaged.append(path)
    return None


def _part_infos(fs: pafs.FileSystem, folder: str) -> list:
    if not _is_dir(fs, folder):
        return []
    infos = fs.get_file_info(pafs.FileSelector(folder))
    return sorted((i for i in infos if i.path.endswith(".parquet") and not i.base_name.startswith(".")),
                  key=lambda i: i.path)


def _signature(infos: list) -> str:
    """What the parts of a table are right now: names, sizes and modification times."""
    h = hashlib.sha256()
    for i in infos:
        h.update(f"{i.base_name}|{i.size}|{i.mtime_ns}\n".encode())
    return h.hexdigest()


def _snapshot_path(root: str, table: str) -> str:
    return f"{root}/{table}.snapshot.parquet"


def _read_parts(fs: pafs.FileSystem, root: str, table: str) -> pa.Table | None:
    """All parts of one table as one Arrow table: from the snapshot when it matches the parts exactly,
    else read in parallel and joined once. Parts may differ in columns (e.g. val_top5 only with 10+
    classes, or an all-empty column): permissive promotion aligns them."""
    infos = _part_infos(fs, f"{root}/{table}")
    if not infos:
        return None
    snap = _snapshot_path(root, table)
    if fs.get_file_info(snap).type == pafs.FileType.File:
        try:
            meta = pq.read_schema(snap, filesystem=fs).metadata or {}
            if meta.get(b"tlsweep.parts") == _signature(infos).encode():
                data = pq.read_table(snap, filesystem=fs)
                for path in json.loads(meta.get(b"tlsweep.damaged", b"[]")):  # left out when it was made
                    warn_damaged(path, ValueError("unreadable when the snapshot was made"))
                return data
        except (OSError, pa.ArrowException, ValueError):
            pass  # an unreadable snapshot is ignored: the parts are the truth
    return _join_parts(fs, infos)


def _snapshot_matches(fs: pafs.FileSystem, snap: str, infos: list) -> bool:
    try:
        meta = pq.read_schema(snap, filesystem=fs).metadata or {}
    except (OSError, pa.ArrowException, ValueError):
        return False
    return meta.get(b"tlsweep.parts") == _signature(infos).encode()


def _join_parts(fs: pafs.FileSystem, infos: list, damaged: Optional[list] = None) -> pa.Table | None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = list(pool.map(lambda i: _read_one(fs, i.path, damaged), infos))
    tables = [t for t in read if t is not None and t.num_rows]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _frame(table: pa.Table | None) -> pd.DataFrame:
    return table.to_pandas() if table is not None else pd.DataFrame()


def read_table(location: PathLike, table: str) -> pd.DataFrame:
    fs, root = results_root(location)
    return _frame(_read_parts(fs, root, table))


def compact(location: PathLike, filesystem: Optional[pafs.FileSystem] = None) -> None:
    """Write one snapshot file per table next to its parts (``results/<table>.snapshot.parquet``).

    Reading 40,000 small parts takes about a minute on 2 cores; one snapshot reads in about a second.
    A snapshot records which parts it was made from and is used only while they are unchanged, so a
    resumed or still-running study is always read from its parts. The sink calls this when a study ends.
    ``filesystem``: the filesystem ``location`` is a path on (default: from the location, local or URI).
    """
    fs, root = results_root(location, filesystem)
    for table in TABLES:
        infos = _part_infos(fs, f"{root}/{table}")
        snap = _snapshot_path(root, table)
        if infos and fs.get_file_info(snap).type == pafs.FileType.File and _snapshot_matches(fs, snap, infos):
            continue  # made from these very parts already
        damaged: list[str] = []
        data = _join_parts(fs, infos, damaged) if infos else None
        if data is None:
            continue
        meta = dict(data.schema.metadata or {})
        meta[b"tlsweep.parts"] = _signature(infos).encode()
        meta[b"tlsweep.damaged"] = json.dumps(damaged).encode()  # so readers of the snapshot are warned too
        data = data.replace_schema_metadata(meta)
        if isinstance(fs, pafs.LocalFileSystem):  # atomic: temporary file + rename
            tmp = f"{root}/.{table}.snapshot.{os.getpid()}.tmp"
            pq.write_table(data, tmp)
            os.replace(tmp, snap)
        else:  # object stores replace whole objects atomically
            pq.write_table(data, snap, filesystem=fs)


def load(location: PathLike | Sequence[PathLike]) -> StudyTables:
    """All tables of one study (a folder or URI), or of several studies concatenated."""
    if isinstance(location, (list, tuple)):
        parts = [load(loc) for loc in location]
        return StudyTables(*(pd.concat([getattr(p, t) for p in parts], ignore_index=True, sort=False)
                             for t in TABLES), path=",".join(str(x) for x in location))
    fs, root = results_root(location)
    return StudyTables(*(_frame(_read_parts(fs, root, t)) for t in TABLES), path=str(location))


def study_ended(location: PathLike) -> bool:
    """Whether the study's driver ended it: the sink compacts the tables when a study ends (finished, stopped
    or interrupted), and a running or resumed study changes its parts, so the trials snapshot no longer matches.

    False when nothing was reported yet, or the driver died without ending the study.
    """
    try:
        fs, root = results_root(location)
    except StudyNotFound:
        return False
    infos = _part_infos(fs, f"{root}/trials")
    snap = _snapshot_path(root, "trials")
    return bool(infos) and fs.get_file_info(snap).type == pafs.FileType.File and _snapshot_matches(fs, snap, infos)
