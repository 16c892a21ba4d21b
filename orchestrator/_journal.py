"""The Ray-free half of the mirror (orchestrator.mirror): a study's Parquet rows as Optuna trials in a journal
file, and the rebuild of that file from the tables; ``tlsweep dashboard`` imports only this.

Example:
    >>> from search_spaces import Domain
    >>> sorted(distributions([Domain("training.lr", "loguniform", (1e-4, 1e-2)),
    ...                       Domain("model.arch", "choice", ("resnet18", "vit_tiny"))]))
    ['model.arch', 'training.lr']
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

JOURNAL = "optuna-journal.log"
# tlsweep's statuses that are Optuna's FAIL (TERMINATED: COMPLETE, or PRUNED when it stopped early)
FAILED = ("ERROR", "INTERRUPTED")
USER_ATTRS = {"trial_id": "trial_id", "architecture": "config.model.arch", "strategy": "config.model.strategy",
              "seed": "seed", "status": "status", "stopped_early": "stopped_early", "epochs_run": "epochs_run",
              "best_epoch": "best_epoch", "error": "error"}


def journal_path(study_dir: str | os.PathLike) -> Path:
    return Path(study_dir) / JOURNAL


def open_storage(path: str | os.PathLike):
    """An Optuna storage over the journal file at ``path`` (created empty when missing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def _plain(value: Any) -> Any:
    """A JSON-able Python value: numpy and pandas scalars unboxed, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _choice(value: Any) -> Any:
    """A categorical value as the sink writes it: lists as JSON text (orchestrator.sink.flatten)."""
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def distributions(domains: Sequence) -> dict:
    """``{dotted path: Optuna distribution}`` of a study's domains (search_spaces.Domain)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    out: dict = {}
    for d in domains:
        a = d.args
        if d.kind in ("choice", "grid"):
            out[d.path] = CategoricalDistribution([_choice(v) for v in a])
        elif d.kind in ("uniform", "loguniform"):
            out[d.path] = FloatDistribution(float(a[0]), float(a[1]), log=d.kind == "loguniform")
        elif d.kind == "randint":  # Ray's high is exclusive, Optuna's inclusive
            out[d.path] = IntDistribution(int(a[0]), int(a[1]) - 1)
        elif d.kind == "quniform":  # Ray rounds to multiples of q, which may lie just outside [low, high]
            q = float(a[2])
            out[d.path] = FloatDistribution(min(float(a[0]), math.floor(a[0] / q) * q),
                                            max(float(a[1]), math.ceil(a[1] / q) * q))
    return out


def frozen_trial(row: dict, epochs: list[dict], metric: str, dists: dict, resuming: bool = False):
    """The Optuna trial of one ``trials`` row and its ``epochs`` rows (the tables are the truth).

    ``resuming``: trials ``tlsweep resume`` continues stay RUNNING (a finished Optuna trial cannot change).
    """
    from optuna.trial import FrozenTrial, TrialState
    steps = {}
    for e in epochs:
        value = _plain(e.get(metric))
        if isinstance(_plain(e.get("epoch")), (int, float)) and isinstance(value, (int, float)):
            steps[int(e["epoch"])] = float(value)
    params, used = {}, {}
    for path, dist in dists.items():
        value = _plain(row.get(f"config.{path}"))
        if value is None:
            continue  # an inactive conditional domain: no param, as in Optuna's define-by-run
        if type(dist).__name__ == "IntDistribution":
            value = int(value)
        elif type(dist).__name__ == "FloatDistribution":
            value = float(value)
        try:
            if dist._contains(dist.to_internal_repr(value)):
                params[path], used[path] = value, dist
        except ValueError:
            pass  # a value outside the study's domain (edited study.yaml): left out rather than misdrawn
    attrs = {name: _plain(row.get(col)) for name, col in USER_ATTRS.items()}
    for key, value in row.items():
        if key.startswith("best_test_") and _plain(value) is not None:
            attrs[key.removeprefix("best_")] = _plain(value)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    status = row.get("status")
    value = None
    if status == "TERMINATED" and not row.get("stopped_early"):
        best = _plain(row.get("best_epoch"))
        value = steps.get(int(best)) if isinstance(best, (int, float)) else None
        value = value if value is not None else _plain(row.get(f"best_{metric}"))
        state = TrialState.COMPLETE if isinstance(value, (int, float)) and math.isfinite(value) else TrialState.FAIL
    elif status == "TERMINATED":
        state = TrialState.PRUNED
        last = steps.get(max(steps)) if steps else None
        value = last if last is not None and math.isfinite(last) else None
    elif status in FAILED and not resuming:
        state = TrialState.FAIL
    else:
        state = TrialState.RUNNING
    if state == TrialState.FAIL:
        value = None
    start, end = (_plain(row.get(k)) for k in ("started_at", "ended_at"))
    start = datetime.fromtimestamp(start, timezone.utc) if isinstance(start, (int, float)) else None
    end = datetime.fromtimestamp(end, timezone.utc) if isinstance(end, (int, float)) else None
    return FrozenTrial(number=0, state=state, value=value, datetime_start=start or end or datetime.now(timezone.utc),
                       datetime_complete=(end or start or datetime.now(timezone.utc)) if state.is_finished() else None,
                       params=params, distributions=used, user_attrs=attrs, system_attrs={},
                       intermediate_values=steps, trial_id=0)


def create_study(storage, name: str, metric: str, mode: str) -> int:
    """The study's id in ``storage``, created with its direction and objective name when missing."""
    import warnings

    import optuna
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in Journal": not the user's news
    try:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    direction="maximize" if mode == "max" else "minimize")
        with warnings.catch_warnings():  # "set_metric_names is experimental": it has been since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])  # the dashboard names the objective axis with it
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study._study_id


def rebuild(study_dir: str | os.PathLike, name: str, domains: Sequence, metric: str, mode: str,
            resuming: bool = False) -> Path:
    """Write the mirror again from the Parquet tables alone, replacing the journal file at once; returns it."""
    from analysis.load import StudyNotFound, load
    try:
        tables = load(study_dir)
    except StudyNotFound:  # nothing reported yet
        tables = None
    path = journal_path(study_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        storage = open_storage(tmp)
        study_id = create_study(storage, name, metric, mode)
        if tables is not None and not tables.trials.empty:
            dists = distributions(domains)
            trials = tables.trials.sort_values(["started_at", "trial_id"], na_position="last")
            epochs = {tid: rows.sort_values("epoch").to_dict("records")
                      for tid, rows in tables.epochs.groupby("trial_id")} if not tables.epochs.empty else {}
            for row in trials.to_dict("records"):
                storage.create_new_trial(study_id, frozen_trial(row, epochs.get(row["trial_id"], []), metric,
                                                                dists, resuming))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.lock").unlink(missing_ok=True)
    return path


def rebuild_study(study_dir: str | os.PathLike) -> Path:
    """:func:`rebuild` for the study saved in ``study_dir`` (its ``study.yaml`` gives domains and objective)."""
    from orchestrator.storage import load_study_dir
    study, location = load_study_dir(study_dir)
    return rebuild(location, study.name, study.domains, study.search.metric, study.search.mode)
