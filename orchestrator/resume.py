"""``tlsweep resume`` makes the Parquet tables the truth again: Tune's snapshot, the searcher and the scheduler
are brought in line with them before the study continues.

Tune writes its experiment snapshot (trials, searcher state) every few seconds; the sink writes the tables at
every event. A driver killed in between leaves the tables ahead of Tune. On resume:

- a trial the tables hold and Tune's snapshot does not (it started after the last snapshot) is *lost*: neither
  Tune nor the searcher counts it, so its configuration is created again (same id under the random and grid
  variant generator, which restores its counter; a new id under Optuna). Its rows are removed first
  (:func:`forget_lost_trials`), so every configuration appears once and no row is left RUNNING;
- Ray restores no scheduler state, so ASHA's rungs would start empty: :class:`TableAsha` records in them, for
  every trial Tune gives back, the metric the tables hold at each rung's epoch, and stops again at the same epoch
  a trial the tables call TERMINATED (Tune's snapshot may still hold it as RUNNING);
- the searcher's state (Optuna's study) is saved with the same snapshot as the trials, so it agrees with Tune's
  trials; the lost ones were forgotten by both and are suggested again.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional

import pyarrow.fs as pafs
from ray.tune.schedulers import AsyncHyperBandScheduler, MedianStoppingRule, TrialScheduler

from orchestrator.sink import TABLES, list_parts, read_part, stem
from orchestrator.storage import StudyStore


@dataclass
class History:
    """What the tables hold of one trial: its metric per epoch, and the epoch it ended at if it finished."""

    metrics: dict[int, float] = field(default_factory=dict)
    ended_at: Optional[int] = None   # last epoch of a TERMINATED trial


def tune_trial_ids(store: StudyStore) -> Optional[set[str]]:
    """Trial ids in Tune's newest experiment snapshot (None: no snapshot)."""
    newest = newest_snapshot(store)
    if newest is None:
        return None
    with store.fs.open_input_stream(newest) as f:
        state = json.loads(f.read())
    # each entry: [trial state as a JSON string, run metadata]; plain json leaves pickled fields undecoded
    return {json.loads(entry[0])["trial_id"] for entry in state["trial_data"]}


def table_trial_ids(store: StudyStore) -> set[str]:
    root = store.join("results")
    return {stem(p) for t in ("trials", "epochs") for p in list_parts(f"{root}/{t}", store.fs)}


def forget_lost_trials(store: StudyStore, log=print) -> list[str]:
    """Remove the parts of trials the tables hold and Tune's snapshot does not; returns their ids."""
    known = tune_trial_ids(store)
    if known is None:
        return []
    lost = sorted(table_trial_ids(store) - known)
    root = store.join("results")
    for tid in lost:
        for table in TABLES:
            path = f"{root}/{table}/{tid}.parquet"
            if store.fs.get_file_info(path).type.name == "File":
                store.fs.delete_file(path)
        # and their trial folders (checkpoints no snapshot names): the rerun writes a new one
        for info in store.fs.get_file_info(pafs.FileSelector(store.path)):
            if info.type == pafs.FileType.Directory and f"_{tid}_" in info.base_name:
                store.fs.delete_dir(info.path)
    if lost:
        log(f"resume: {len(lost)} trial(s) started after Tune's last snapshot ({', '.join(lost)}); their rows "
            f"and folders were removed and their configurations run again")
    return lost


TUNER_FILE, TUNER_BACKUP = "tuner.pkl", "tuner.pkl.good"


def guard_tuner_state(store: StudyStore, log=print) -> bool:
    """Keep a copy of Tune's ``tuner.pkl`` that reads back, and put it back when the file is damaged.

    ``Tuner.restore`` rewrites ``tuner.pkl`` in place as a resume starts; a driver killed in that moment leaves it
    empty or cut, and Ray can never restore the study again (``EOFError: Ran out of input``). Before each restore the
    file is checked: a good one is copied to ``tuner.pkl.good`` (a temporary file, then a rename), a damaged one is
    replaced by that copy (one line says so). Returns True when it was repaired."""
    import pickle
    path, backup = store.join(TUNER_FILE), store.join(TUNER_BACKUP)

    def readable(p: str) -> Optional[bytes]:
        if store.fs.get_file_info(p).type.name != "File":
            return None
        with store.fs.open_input_stream(p) as f:
            data = f.read()
        try:
            pickle.loads(data)
        except Exception:  # noqa: BLE001 - empty, cut or otherwise not a pickle Ray can read
            return None
        return data

    def write(p: str, data: bytes) -> None:
        with store.fs.open_output_stream(p + ".tmp") as f:
            f.write(data)
        store.fs.move(p + ".tmp", p)

    good = readable(path)
    if good is not None:
        write(backup, good)
        return False
    saved = readable(backup)
    if saved is None:
        return False   # nothing to put back: Ray's own error follows
    write(path, saved)
    log(f"resume: {path} was damaged (the driver was killed while Tune rewrote it); restored from {backup}")
    return True


def newest_snapshot(store: StudyStore) -> Optional[str]:
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    return _find_newest_experiment_checkpoint(store.path, fs=store.fs)


def recorded_epochs(store: StudyStore, trial_id: str) -> set[int]:
    path = f"{store.join('results')}/epochs/{trial_id}.parquet"
    if store.fs.get_file_info(path).type.name != "File":
        return set()
    return {int(r["epoch"]) for r in read_part(path, store.fs) if r.get("epoch") is not None}


def repair_checkpoints(store: StudyStore, log=print) -> list[str]:
    """Point every trial of Tune's snapshot whose latest checkpoint is gone at its newest one on storage.

    Ray keeps ``num_to_keep`` checkpoints per running trial and deletes older ones as new ones arrive; its
    experiment snapshot is written every few seconds. When a trial wrote two checkpoints or more after the last
    snapshot (cheap epochs), the snapshot names a checkpoint Ray has deleted, and Ray's restore ends that trial
    ERROR ("Could not recover from checkpoint as it does not exist on storage anymore"). The trial then resumes
    from its newest checkpoint instead (its epochs after it run again; the sink keeps each (trial, epoch) once).
    Returns the ids of the trials repaired."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment.trial import _TrainingRunMetadata
    from orchestrator.prune import CHECKPOINT, checkpoint_folders
    path = newest_snapshot(store)
    if path is None:
        return []
    with store.fs.open_input_stream(path) as f:
        state = json.loads(f.read())
    repaired = []
    for entry in state["trial_data"]:
        meta = _TrainingRunMetadata.from_json_state(entry[1])
        manager = meta.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager is not None else None
        if latest is None or store.fs.get_file_info(latest.checkpoint.path).type.name != "NotFound":
            continue
        trial_id = json.loads(entry[0])["trial_id"]
        trial_dir = latest.checkpoint.path.rstrip("/").rsplit("/", 2)[-2]
        # a checkpoint is persisted before its epoch is reported: one whose epoch the tables hold is complete
        reported = recorded_epochs(store, trial_id)
        folders = [(int(CHECKPOINT.match(p.rsplit("/", 1)[-1]).group(1)) + 1, p)   # checkpoint_<n>: epoch n + 1
                   for p in checkpoint_folders(store.fs, store.join(trial_dir))]
        folders = [(e, p) for e, p in folders if e in reported]
        if not folders:
            continue
        epoch, newest = folders[-1]
        result = _TrainingResult(checkpoint=Checkpoint(newest, filesystem=store.fs),
                                 metrics={**latest.metrics, "training_iteration": epoch, "epoch": epoch})
        manager._latest_checkpoint_result = result
        manager._checkpoint_results = [r for r in manager._checkpoint_results
                                       if store.fs.get_file_info(r.checkpoint.path).type.name != "NotFound"]
        if result.checkpoint.path not in {r.checkpoint.path for r in manager._checkpoint_results}:
            manager._checkpoint_results.append(result)
        entry[1] = meta.get_json_state()
        repaired.append(trial_id)
    if repaired:
        with store.fs.open_output_stream(path) as f:
            f.write(json.dumps(state).encode())
        log(f"resume: {len(repaired)} trial(s) continue from their newest checkpoint on storage "
            f"({', '.join(repaired)}): the one Tune's last snapshot named had been replaced")
    return repaired


def histories(store: StudyStore, metric: str, mode: str) -> dict[str, History]:
    """Per trial id: the study metric per epoch (signed so that larger is better, as ASHA records it)."""
    root, sign = store.join("results"), 1.0 if mode == "max" else -1.0
    out: dict[str, History] = {}
    for path in list_parts(f"{root}/epochs", store.fs):
        h = History()
        for row in read_part(path, store.fs):
            v = row.get(metric)
            if isinstance(v, (int, float)) and row.get("epoch") is not None and not math.isnan(v):
                h.metrics[int(row["epoch"])] = sign * float(v)
        out[stem(path)] = h
    for path in list_parts(f"{root}/trials", store.fs):
        rows = read_part(path, store.fs)
        tid = stem(path)
        if rows and rows[0].get("status") == "TERMINATED" and tid in out and out[tid].metrics:
            out[tid].ended_at = max(out[tid].metrics)
    return out


class Seeded:
    """A scheduler that takes what the tables hold (``seed``) before Tune gives back the restored trials."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._history: dict[str, History] = {}

    def seed(self, history: dict[str, History]) -> None:
        self._history = dict(history)


class TableAsha(Seeded, AsyncHyperBandScheduler):
    """Ray's ASHA, counted in epochs (the ``epoch`` the trial reports), whose rungs can be refilled from the tables.

    ``seed(histories)`` before the restored trials are added; each trial added gets its recorded rung entries
    back: at every rung it passed (an epoch after the rung in the tables: it was kept) and, for a finished
    trial, at the rung it ended on. A trial whose last recorded epoch is a rung and that had not finished is
    decided there again, against the other trials' entries.

    Example:
        >>> s = TableAsha(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2,
        ...               metric="val_acc", mode="max")
        >>> s.seed({"a": History({1: 0.9, 2: 0.9}, ended_at=2)})
        >>> class T: trial_id = "a"
        >>> s.on_trial_add(None, T())
        >>> [sorted(r) for _, r in s._brackets[0]._rungs]
        [[], ['a'], ['a']]
    """

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        h = self._history.get(trial.trial_id)
        if h is None or not h.metrics:
            return
        last = max(h.metrics)
        for milestone, recorded in self._trial_info[trial.trial_id]._rungs:
            at = math.ceil(milestone)  # ASHA records a rung at the first epoch at or after it
            if at in h.metrics and (at < last or h.ended_at is not None):
                recorded[trial.trial_id] = h.metrics[at]

    def _in_epochs(self, result: dict) -> dict:
        if isinstance(result, dict) and result.get("epoch") is not None:
            return {**result, self._time_attr: result["epoch"]}
        return result

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        result = self._in_epochs(result)
        h = self._history.get(trial.trial_id)
        if h is not None and h.ended_at is not None and result.get(self._time_attr, 0) >= h.ended_at:
            # the tables say it finished here (Tune's snapshot was older): the same decision again
            self._num_stopped += 1
            return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, self._in_epochs(result))


class TableMedian(Seeded, MedianStoppingRule):
    """Ray's median stopping rule, counted in epochs, whose trials' results can be refilled from the tables.

    Ray restores it empty, so after a resume the median would be taken over the epochs reported since. Each trial
    added gets the metric the tables hold at each of its epochs back (a finished trial's running mean counts
    again); a resumed trial's epochs that run again replace their recorded values.

    Example:
        >>> s = TableMedian(time_attr="training_iteration", grace_period=1, min_samples_required=1,
        ...                 metric="val_acc", mode="max")
        >>> s.seed({"a": History({1: 0.9, 2: 0.9}, ended_at=2)})
        >>> class T: trial_id = "a"
        >>> s.on_trial_add(None, T())
        >>> [(r["training_iteration"], r["val_acc"]) for r in s._results[next(iter(s._results))]]
        [(1, 0.9), (2, 0.9)]
    """

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        h = self._history.get(trial.trial_id)
        if h is not None and h.metrics:
            sign = 1.0 if self._mode == "max" else -1.0   # histories are signed so that larger is better
            self._results[trial] = [{self._time_attr: e, self._metric: sign * v} for e, v in sorted(h.metrics.items())]

    def _in_epochs(self, trial, result: dict) -> dict:
        if isinstance(result, dict) and result.get("epoch") is not None:
            result = {**result, self._time_attr: result["epoch"]}
            if trial in self._results:   # an epoch reported again replaces the recorded one (and those after it)
                kept = [r for r in self._results[trial] if r[self._time_attr] < result[self._time_attr]]
                if kept:
                    self._results[trial] = kept
                else:
                    del self._results[trial]
        return result

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return super().on_trial_result(tune_controller, trial, self._in_epochs(trial, result))

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result:
            super().on_trial_complete(tune_controller, trial, self._in_epochs(trial, result))


def seed_scheduler(scheduler, store: StudyStore, metric: str, mode: str) -> None:
    """Give a restored scheduler the state the tables hold (ASHA's rungs, the median rule's results); HyperBand
    and PBT start as Ray restores them."""
    if isinstance(scheduler, Seeded):
        scheduler.seed(histories(store, metric, mode))
