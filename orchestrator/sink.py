"""A Ray Tune callback that keeps every number of a study in Parquet, as results arrive.

Layout under ``<study dir>/results/``: ``trials/``, ``epochs/``, ``per_class/``, ``confusion/`` and (segmentation:
predictions on fixed validation images, PNG-encoded) ``samples/``, one part per trial
and table (``<trial_id>.parquet``), each written whole to a temporary file and renamed, so a reader never sees a
half-written part and a study can be read while it runs. Rows are keyed by (trial, epoch): an epoch reported
again after a restore replaces the earlier row, so nothing is duplicated. Schema: docs/RESULTS.md.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.tune import Callback

from orchestrator import faults

TABLES = ("trials", "epochs", "per_class", "confusion", "samples")
PAYLOADS = ("per_class", "confusion", "samples")  # JSON payloads of a result, written to their own tables
# Ray's own result fields worth keeping next to the trainable's metrics
RAY_DROP = {"checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
            "hostname", "config", "time_since_restore", "iterations_since_restore", "experiment_tag",
            "should_checkpoint", "timesteps_total", "episodes_total", "timesteps_since_restore"}


class ResultsWriteError(OSError):
    """A results part could not be written (disk full, permissions): the study stops with this message."""


def write_part(path: str, rows: list[dict], fs: Optional[pafs.FileSystem] = None) -> None:
    """Write rows as one Parquet file atomically: temporary file + rename on a local disk; an object store
    (``s3://``, ``gs://``) replaces an object whole, so a reader never sees half of it either."""
    keys = list(dict.fromkeys(k for row in rows for k in row))  # every row's columns, not just the first's
    table = pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp)
            faults.point("sink.write")  # the reliability suite kills the driver here: mid-write
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # after a failed write (disk full): no stray temporary file
    else:
        pq.write_table(table, path, filesystem=fs)


def read_part(path: str, fs: Optional[pafs.FileSystem] = None) -> list[dict]:
    """A part's rows; none when it does not exist, or (one warning naming it) when it cannot be read: the sink
    then takes a resumed trial's earlier epochs from Tune's result.json (ParquetSink._rederive), and rewrites
    the part whole."""
    fs = fs or pafs.LocalFileSystem()
    if fs.get_file_info(path).type != pafs.FileType.File:
        return []
    try:
        return pq.read_table(path, filesystem=fs).to_pylist()
    except (OSError, pa.ArrowException) as e:
        from analysis.load import warn_damaged
        warn_damaged(path, e)
        return []


def list_parts(folder: str, fs: Optional[pafs.FileSystem] = None) -> list[str]:
    """Paths of the ``*.parquet`` parts in ``folder`` (none when it does not exist)."""
    fs = fs or pafs.LocalFileSystem()
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    return sorted(i.path for i in fs.get_file_info(pafs.FileSelector(folder))
                  if i.base_name.endswith(".parquet") and not i.base_name.startswith("."))


def stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def flatten(tree: dict, prefix: str = "config.") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
    return out


def error_message(trial) -> str:
    """The last line of a trial's error (e.g. 'FloatingPointError: loss became NaN at epoch 3, step 17')."""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
    except Exception:  # noqa: BLE001 - best effort across Ray versions
        text = ""
    if not text and getattr(trial, "error_file", None) and os.path.exists(trial.error_file):
        text = Path(trial.error_file).read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "^", "~")):
            return line[:2000]
    return lines[-1][:2000] if lines else "unknown error"


class ParquetSink(Callback):
    """Writes the ``trials``, ``epochs``, ``per_class``, ``confusion`` and ``samples`` tables of one study.

    Args:
        root: the study's results folder.
        study: the study name (a column of every table).
        trial_config: ``fn(tune_config) -> (nested trial config, swept values)`` for the ``config.*`` columns.
        max_epochs: ``fn(nested trial config) -> epochs`` the trial was configured for (to tell early stops).
        metric, mode: the study's metric, for the best-epoch columns.
        filesystem: a ``pyarrow.fs`` filesystem when ``root`` is on one (an ``s3://`` study); default local.
    """

    def __init__(self, root: str, study: str, trial_config, max_epochs, metric: str = "val_acc",
                 mode: str = "max", filesystem: Optional[pafs.FileSystem] = None):
        self.fs = filesystem or pafs.LocalFileSystem()
        self.root = str(root).rstrip("/")
        self.study = study
        self.trial_config = trial_config
        self.max_epochs = max_epochs
        self.metric, self.mode = metric, mode
        self.time_budget_s = None
        self._reset()

    def _reset(self) -> None:
        # Only trials that are running are held in memory: a study of 10,000 trials costs the driver what its
        # running trials cost (tests/faults/test_sink_faults.py measures it).
        self.epochs: dict[str, dict[int, dict]] = {}
        self.trials: dict[str, dict] = {}
        self.started: dict[str, float] = {}

    # ---- state: the files are the truth; a restored driver reads a trial's rows back when it reports ------
    def setup(self, **info) -> None:
        self._reset()
        self.time_budget_s = info.get("time_budget_s")  # Tune passes the experiment's public spec

    def path(self, table: str, trial_id: str) -> str:
        return f"{self.root}/{table}/{trial_id}.parquet"

    def _epochs(self, tid: str, trial=None) -> dict[int, dict]:
        if tid not in self.epochs:
            path = self.path("epochs", tid)
            rows = read_part(path, self.fs)
            if not rows and trial is not None and self.fs.get_file_info(path).type == pafs.FileType.File:
                rows = self._rederive(tid, trial)  # the part is damaged (a warning named it)
            self.epochs[tid] = {int(r["epoch"]): r for r in rows}
        return self.epochs[tid]

    def _rederive(self, tid: str, trial) -> list[dict]:
        """A trial's epoch rows again from Tune's own log of its results (``<trial folder>/result.json``, the
        JSON logger every study has), when its part cannot be read; none when that log is gone too."""
        path = f"{str(getattr(trial, 'path', '') or '').rstrip('/')}/result.json"
        try:
            with self.fs.open_input_stream(path) as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except (OSError, TypeError, ValueError):
            return []
        rows: dict[int, dict] = {}
        for line in lines:
            try:
                result = json.loads(line)
            except ValueError:
                continue  # a line cut short
            if isinstance(result, dict) and isinstance(result.get("epoch"), int):
                rows[result["epoch"]] = self._epoch_row(tid, result)  # a re-reported epoch: the later one
        return [rows[e] for e in sorted(rows)]

    def _epoch_row(self, tid: str, result: dict) -> dict:
        row = {"study": self.study, "trial_id": tid}
        for k, v in result.items():
            if k in RAY_DROP or (k.startswith("test_") and isinstance(v, str)) or k in PAYLOADS:
                continue
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
        return row

    def _previous(self, tid: str) -> dict:
        if tid not in self.trials:
            rows = read_part(self.path("trials", tid), self.fs)
            self.trials[tid] = rows[0] if rows else {}
        return self.trials[tid]

    def _forget(self, tid: str) -> None:
        """A trial that ended leaves memory; a resumed study reads its rows again if it runs again."""
        for held in (self.epochs, self.trials, self.started):
            held.pop(tid, None)

    def _write(self, table: str, tid: str, rows: list[dict]) -> None:
        path = self.path(table, tid)
        try:
            write_part(path, rows, self.fs)
        except OSError as e:
            raise ResultsWriteError(
                f"cannot write results to {path}: {e.strerror or e}. Parts written before are intact and "
                f"readable; fix the cause (disk space, permissions), then continue with 'tlsweep resume "
                f"{self.root.rsplit('/', 1)[0]}'") from e

    # ---- Tune callbacks --------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self._write_trial(trial, "RUNNING")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        epoch = result.get("epoch")
        if epoch is None:
            return
        tid = trial.trial_id
        rows = self._epochs(tid, trial)
        for stale in [e for e in rows if e >= epoch]:  # re-reported after a restore from an older checkpoint
            del rows[stale]
        rows[int(epoch)] = self._epoch_row(tid, result)
        self._write("epochs", tid, [rows[e] for e in sorted(rows)])
        for split, pc_key, cm_key in (("val", "per_class", "confusion"), ("test", "test_per_class", "test_confusion")):
            if isinstance(result.get(pc_key), str):
                self._write_per_class(tid, split, json.loads(result[pc_key]), json.loads(result[cm_key]),
                                      int(epoch))
        if isinstance(result.get("samples"), str):
            samples = json.loads(result["samples"])
            n = len(samples.get("sample_index", []))
            self._write("samples", tid, [{"study": self.study, "trial_id": tid, "split": "val", "epoch": int(epoch),
                                          **{k: samples[k][i] for k in samples}} for i in range(n)])
        self._write_trial(trial, "RUNNING")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._write_trial(trial, "RECOVERING", failures=+1)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._write_trial(trial, "TERMINATED")
        self._forget(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._write_trial(trial, "ERROR", error=error_message(trial), failures=+1)
        self._forget(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        """``search.time_budget_s`` ran out: Ray ends the running trials TERMINATED within the step, without
        ``on_trial_complete``; they end so here, with the epochs they reported (``ended_with_study``)."""
        if self.time_budget_s and self.trials:
            self._end_held(trials, "TERMINATED")

    def on_experiment_end(self, trials: list, **info) -> None:
        """Trials still running when the study ends otherwise (an interrupt: Ray stops them after its last
        snapshot, which ``tlsweep resume`` continues) become INTERRUPTED, so no row stays RUNNING; then one
        snapshot file per table, so a finished study reads in a second (see analysis.load.compact)."""
        from analysis.load import compact
        self._end_held(trials, "INTERRUPTED")
        self._end_unseen(trials)
        if any(list_parts(f"{self.root}/{t}", self.fs) for t in TABLES):
            compact(self.root, filesystem=self.fs)

    def _end_unseen(self, trials: list) -> None:
        """Errored trials the tables never heard of get their row: Ray fails a trial whose reused process could not
        be reset without calling ``on_trial_start`` or ``on_trial_error``, and a study must not lose a trial."""
        for trial in trials:
            if trial.status == "ERROR" and trial.trial_id not in self.trials and not self._previous(trial.trial_id):
                self._write_trial(trial, "ERROR", error=error_message(trial), failures=+1)
                self._forget(trial.trial_id)

    def _end_held(self, trials: list, stopped: str) -> None:
        """Rows still RUNNING of trials Ray has ended: ``stopped`` for those it stopped, ERROR for errored ones."""
        for trial in trials:
            held = self.trials.get(trial.trial_id)
            if held and held.get("status") in ("RUNNING", "RECOVERING") and trial.status in ("TERMINATED", "ERROR"):
                error = trial.status == "ERROR"
                self._write_trial(trial, "ERROR" if error else stopped, ended_with_study=True,
                                  error=error_message(trial) if error else None)
                self._forget(trial.trial_id)

    # ---- tables ----------------------------------------------------------------------------------------
    def _write_per_class(self, tid: str, split: str, pc: dict, confusion: list, epoch: int) -> None:
        for table, rows in (("per_class", [
                {"study": self.study, "trial_id": tid, "split": split, "epoch": epoch,
                 **{k: pc[k][i] for k in pc}} for i in range(len(pc["class_index"]))]),
                ("confusion", [
                    {"study": self.study, "trial_id": tid, "split": split, "epoch": epoch, "true": t,
                     "predicted": p, "count": int(c)}
                    for t, row in enumerate(confusion) for p, c in enumerate(row) if c])):
            kept = [r for r in read_part(self.path(table, tid), self.fs) if r["split"] != split]
            self._write(table, tid, kept + rows)

    def _best_row(self, held: dict[int, dict], rows: list[dict]) -> dict:
        """The epoch the trial reported as its best (its objective is the study's metric, decided in the trial:
        trainables.loop); rows of trials that report no ``best_epoch`` (older results) are scored here."""
        reported = rows[-1].get("best_epoch")
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) and int(reported) in held:
            return held[int(reported)]
        sign = 1 if self.mode == "max" else -1
        scored = [r for r in rows if isinstance(r.get(self.metric), (int, float)) and not math.isnan(r[self.metric])]
        return max(scored, key=lambda r: sign * r[self.metric]) if scored else rows[-1]

    def _write_trial(self, trial, status: str, error: Optional[str] = None, failures: int = 0,
                     ended_with_study: bool = False) -> None:
        tid = trial.trial_id
        nested, swept = self.trial_config(trial.config)
        prev = self._previous(tid)
        held = self._epochs(tid, trial)
        rows = [held[e] for e in sorted(held)]
        max_epochs = self.max_epochs(nested)
        now = time.time()
        row: dict[str, Any] = {"study": self.study, "trial_id": tid, "status": status,
                               "started_at": prev.get("started_at") or self.started.get(tid, now),
                               "ended_at": now if status in ("TERMINATED", "ERROR", "INTERRUPTED") else None,
                               # a trial that finishes (an errored one resumed) keeps no old error text
                               "error": error if error is not None else (
                                   None if status == "TERMINATED" else prev.get("error")),
                               "failures": int(prev.get("failures") or 0) + failures,
                               "seed": nested.get("seed", 0), "epochs_run": len(rows), "max_epochs": max_epochs}
        row["stopped_early"] = status == "TERMINATED" and len(rows) < max_epochs
        row["ended_with_study"] = ended_with_study
        flat = flatten(nested)
        for key, value in swept.items():  # inactive conditional fields are empty, not their default
            if value is None:
                flat[f"config.{key}"] = None
        row.update(flat)
        resources = getattr(trial, "placement_group_factory", None)
        req = resources.required_resources if resources is not None else {}
        wall = float(rows[-1].get("time_total_s", 0.0)) if rows else 0.0
        row.update(wall_seconds=wall, cpu_seconds=wall * float(req.get("CPU", 0)),
                   gpu_seconds=wall * float(req.get("GPU", 0)))
        if rows:
            best = self._best_row(held, rows)
            row["best_epoch"] = best["epoch"]
            for k, v in rows[-1].items():
                if k.startswith(("val_", "train_", "test_")) and isinstance(v, (int, float)):
                    row[f"last_{k}"] = v
            for k, v in best.items():  # test_*: the best weights on the test split (trainables.loop)
                if k.startswith(("val_", "train_", "test_")) and isinstance(v, (int, float)):
                    row[f"best_{k}"] = v
            if isinstance(rows[-1].get("frozen_fraction"), (int, float)):  # what the trial's last phase froze
                row["frozen_fraction"] = rows[-1]["frozen_fraction"]
        self.trials[tid] = row
        self._write("trials", tid, [row])
