"""A study's trials mirrored into an Optuna storage in its folder, for Optuna Dashboard (``tlsweep dashboard``).

Every searcher's trials (random, grid, Optuna, ...) are written, as results arrive, to ``<study>/optuna-journal.log``:
params with the distributions of the study's domains, the objective (``search.metric``) per epoch as intermediate
values, the state (RUNNING; COMPLETE with the best epoch's value; PRUNED, with its last epoch's value as Optuna's
own ``tell`` gives it, for a trial stopped early; FAIL for errored and interrupted ones) and user attributes
(trial id, architecture, strategy, seed, test metrics of the best weights, tlsweep's status).

The storage is Optuna's journal file (``JournalFileBackend``), not SQLite: it is an append-only file of JSON lines
that a reader replays from where it stopped, so the dashboard follows a running study; appends take a lock made
by ``link()``, which works on NFS and other shared folders where SQLite's ``fcntl`` locks do not (Optuna's docs).

The Parquet tables stay the truth: the callback derives each trial from the rows the sink has just written
(it runs after it), and :func:`rebuild` writes the same trials from the tables alone (``tlsweep dashboard
--rebuild``; every driver start too, so a resumed study's mirror forgets what the tables forgot).

Optuna-searched studies keep their sampler's own in-memory study: Ray saves it with the experiment snapshot and
``tlsweep resume`` relies on the two agreeing (orchestrator.resume); a persistent sampler storage would be ahead
of that snapshot after a driver is killed.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from ray.tune import Callback

from orchestrator._journal import (JOURNAL, distributions, frozen_trial, journal_path, open_storage,  # noqa: F401
                                   rebuild, rebuild_study)


class OptunaMirror(Callback):
    """Mirrors every trial into the journal storage as the Parquet sink writes it (register it after the sink).

    Args:
        study_dir: the (local) study folder; its ``results/`` holds the sink's tables.
        name, domains, metric, mode: the study's name, search domains and objective.
    """

    def __init__(self, study_dir: str | os.PathLike, name: str, domains: Sequence, metric: str, mode: str):
        self.study_dir, self.name, self.domains = str(study_dir), name, list(domains)
        self.metric, self.mode = metric, mode
        self._storage, self._held = None, {}

    def __getstate__(self) -> dict:  # Ray pickles its callbacks with the Tuner: no open storage in it
        return {**self.__dict__, "_storage": None}

    def setup(self, **info) -> None:
        self._storage, self._held = None, {}
        self._guarded(self._open)

    def _guarded(self, step, *args) -> None:
        """The mirror is a view: when it cannot be written (disk full, a damaged journal), the study goes on,
        the mirror stops with one warning, and the tables still hold everything to rebuild it."""
        if self._storage is None and step != self._open:
            return
        try:
            step(*args)
        except Exception as e:  # noqa: BLE001 - never stop a study for its view
            import warnings
            self._storage = None
            warnings.warn(f"{journal_path(self.study_dir)}: the Optuna mirror stopped updating ({type(e).__name__}: "
                          f"{e}); rebuild it from the tables with 'tlsweep dashboard {self.study_dir} --rebuild' "
                          f"once the study ends", RuntimeWarning, stacklevel=2)

    def _open(self) -> None:
        rebuild(self.study_dir, self.name, self.domains, self.metric, self.mode, resuming=True)
        self._storage = open_storage(journal_path(self.study_dir))
        self._study_id = self._storage.get_study_id_from_name(self.name)
        self._dists = distributions(self.domains)
        self._held: dict[str, Any] = {}  # tlsweep trial id -> its Optuna trial as last written
        for t in self._storage.get_all_trials(self._study_id, deepcopy=False):
            if "trial_id" in t.user_attrs:
                self._held[t.user_attrs["trial_id"]] = t

    def _sync(self, tid: str) -> None:
        self._guarded(self._write, tid)

    def _write(self, tid: str) -> None:
        """Write what changed of one trial since its last sync, from its rows in the tables."""
        from orchestrator.sink import read_part
        root = f"{self.study_dir}/results"
        rows = read_part(f"{root}/trials/{tid}.parquet")
        if not rows:
            return
        new = frozen_trial(rows[0], read_part(f"{root}/epochs/{tid}.parquet"), self.metric, self._dists)
        old, s = self._held.get(tid), self._storage
        if old is None:
            trial_id = s.create_new_trial(self._study_id, new)
        elif old.state.is_finished():
            return  # Optuna's finished trials are final; the next driver start rebuilds from the tables
        else:
            trial_id = old._trial_id
            for path, dist in new.distributions.items():
                if old.params.get(path) != new.params[path]:  # a PBT exploit changes a trial's config
                    s.set_trial_param(trial_id, path, dist.to_internal_repr(new.params[path]), dist)
            for step, value in new.intermediate_values.items():
                if old.intermediate_values.get(step) != value:
                    s.set_trial_intermediate_value(trial_id, step, value)
            for key, value in new.user_attrs.items():
                if old.user_attrs.get(key) != value:
                    s.set_trial_user_attr(trial_id, key, value)
            if new.state.is_finished():
                s.set_trial_state_values(trial_id, new.state, None if new.value is None else [new.value])
        self._held[tid] = s.get_trial(trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._sync(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get("epoch") is not None:
            self._sync(trial.trial_id)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._sync(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._sync(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._sync(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        """Trials Ray ended without a callback (``search.time_budget_s``): the sink has written their end."""
        for trial in trials:
            held = self._held.get(trial.trial_id)
            if held is not None and not held.state.is_finished() and trial.status in ("TERMINATED", "ERROR"):
                self._sync(trial.trial_id)

    def on_experiment_end(self, trials: list, **info) -> None:
        for tid, held in list(self._held.items()):
            if not held.state.is_finished():
                self._sync(tid)


def mirror_callbacks(study, store) -> list:
    """The mirror of a study in a local folder, to register right after the Parquet sink; none for a study on
    an object store (a journal file needs a POSIX folder: ``tlsweep dashboard`` rebuilds one from a copy)."""
    if not store.local:
        return []
    return [OptunaMirror(store.path, study.name, study.domains, study.search.metric, study.search.mode)]
