"""Where a study lives: a local folder, a shared mount, or an object-store URI (``s3://``, ``gs://``).

A study folder ``<storage>/<study name>`` holds ``study.yaml``, ``pretrained.yaml`` and ``pretrained/`` (the
pretraining stage's checkpoints, orchestrator.weights_share), the Parquet tables under
``results/`` and Ray Tune's experiment (trial folders, checkpoints). Local folders are used as plain paths; URIs
go through ``pyarrow.fs`` (the same filesystem layer Ray Tune and :mod:`analysis.load` use), and Ray Tune gets
the filesystem object itself, so URI options such as ``?endpoint_override=...`` reach every node.

Example:
    >>> store = StudyStore("/tmp/results/quickstart")
    >>> store.local, store.join("results")
    (True, '/tmp/results/quickstart/results')
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import pyarrow.fs as pafs

from analysis.load import filesystem


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def redact(location: str | os.PathLike) -> str:
    """``location`` without credentials (``s3://KEY:SECRET@bucket`` -> ``s3://***@bucket``) for messages."""
    return re.sub(r"(://)[^/@]+@", r"\1***@", str(location))


class StudyStore:
    """One study folder on any filesystem: existence checks, small text files, removal, Ray's storage args."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)
        self.fs, self.path = filesystem(location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.path if self.local else redact(self.location)

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def is_file(self, name: str) -> bool:
        return self.fs.get_file_info(self.join(name)).type == pafs.FileType.File

    def has_content(self) -> bool:
        """True when the folder exists and is not empty."""
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return False
        return bool(self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False)))

    def remove(self) -> None:
        if self.fs.get_file_info(self.path).type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.path, recursive=True)
        if self.local:
            Path(self.join(name)).write_text(text)
            return
        with self.fs.open_output_stream(self.join(name)) as out:  # an object store replaces objects whole
            out.write(text.encode())

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(self.join(name)) as src:
            return src.read().decode()

    # ---- Ray Tune --------------------------------------------------------------------------------------
    def tune_storage(self) -> dict:
        """``storage_path`` / ``storage_filesystem`` of the folder that holds this study (Tune adds the name)."""
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        return {"storage_path": parent} if self.local else {"storage_path": parent, "storage_filesystem": self.fs}

    def tune_restore(self) -> dict:
        """Arguments of ``Tuner.restore`` / ``Tuner.can_restore`` for this study."""
        return {"path": self.path} if self.local else {"path": self.path, "storage_filesystem": self.fs}


def study_location(storage: str, name: str) -> str | Path:
    """``<storage>/<name>``: a resolved local Path, or the URI with the name added before any ``?query``."""
    if not is_uri(storage):
        return Path(storage).expanduser().resolve() / name
    base, _, query = storage.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")


def as_location(folder: Optional[str | os.PathLike]) -> str | Path:
    """A study folder given by a user: a URI stays as it is, a local path is resolved."""
    return str(folder) if is_uri(folder) else Path(folder).expanduser().resolve()


STUDY_FILE = "study.yaml"


def load_study_dir(folder: str | os.PathLike):
    """The study saved in a study folder (local path or URI) and that folder's location: ``(Study, location)``.

    Reads ``study.yaml`` only (no Ray, no torch), so reading commands such as ``tlsweep status`` stay fast.
    """
    from analysis.load import StudyUnreadable, read_study_yaml
    from search_spaces import study_from_dict
    from trainables.errors import ConfigError
    location = as_location(folder)
    store = StudyStore(location)
    if not store.is_file(STUDY_FILE):
        raise ConfigError(f"{store}: not a study folder (no {STUDY_FILE}); run a study with 'tlsweep run' first")
    try:  # not UTF-8 or not YAML: one line naming the file (exit 2), not a traceback
        spec = read_study_yaml(location)
    except StudyUnreadable as e:
        raise ConfigError(str(e)) from None
    return study_from_dict(spec, f"{store}/{STUDY_FILE}"), location


def read_objective(folder: str | os.PathLike) -> tuple[str | Path, str, str]:
    """``(location, metric, mode)`` of the study saved in a folder, from its ``study.yaml`` without validating
    the rest: a reading command shows a study whose models or data sets this machine does not know.

    Raises ConfigError (one line) when the folder holds no readable study.yaml.
    """
    from analysis.load import StudyUnreadable, read_study_yaml
    from trainables.errors import ConfigError
    location = as_location(folder)
    store = StudyStore(location)
    if not store.is_file(STUDY_FILE):
        raise ConfigError(f"{store}: not a study folder (no {STUDY_FILE}); run a study with 'tlsweep run' first")
    try:
        search = read_study_yaml(location).get("search") or {}
    except StudyUnreadable as e:
        raise ConfigError(str(e)) from None
    metric = search.get("metric", "val_acc") if isinstance(search, dict) else "val_acc"
    metric = metric if isinstance(metric, str) else "val_acc"
    natural = "min" if metric.endswith("_loss") else "max"  # as search_spaces decides it
    mode = search.get("mode", natural) if isinstance(search, dict) else natural
    return location, metric, mode if mode in ("max", "min") else natural
