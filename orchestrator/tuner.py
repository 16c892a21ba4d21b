"""A validated study -> a ``ray.tune.Tuner`` (scheduler, searcher, resources, failures, checkpoints, storage) -> fit.

The only place that builds Ray Tune objects. ``run_study`` starts a sweep; ``resume_study`` continues one from
its folder with ``Tuner.restore`` (errored trials resumed, finished trials kept, no result row written twice).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import yaml
from ray import tune

from orchestrator import schedulers, space
from orchestrator.data_share import shared_data
from orchestrator.mirror import mirror_callbacks
from orchestrator.prune import PruneFinishedCheckpoints
from orchestrator.resume import forget_lost_trials, guard_tuner_state, repair_checkpoints, seed_scheduler
from orchestrator.searchers import SEARCHERS
from orchestrator.sink import ParquetSink
from orchestrator.storage import StudyStore, load_study_dir, study_location  # load_study_dir: no Ray
from orchestrator.trainable import run_trial
from orchestrator.weights_share import fetch, publish, ship
from search_spaces import Study
from trainables.errors import ConfigError

# Trials checkpoint every epoch by design; Ray's warning about frequent experiment snapshots is noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# The study's `logging:` list decides Tune's logger callbacks, not Ray's defaults.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Ray Train V2 (TorchTrainer launched inside a Tune function, resources.workers_per_trial): set before ray.init so
# that the Ray processes, the trial actors among them, inherit it.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

STUDY_FILE = "study.yaml"
PRETRAINED_FILE = "pretrained.yaml"


def study_dir(study: Study, storage: Optional[str] = None) -> Path | str:
    """``<storage>/<study name>``: a local Path, or a URI string (orchestrator.storage)."""
    return study_location(storage or study.storage, study.name)


def trial_view(study: Study, config: dict) -> tuple[dict, dict]:
    return space.resolve(study.trial, config), space.swept_values(study, config)


def trial_epochs(nested: dict) -> int:
    return int(nested.get("training", {}).get("epochs", 10))


def build_scheduler(study: Study):
    """The Ray scheduler of ``search.scheduler`` (orchestrator.schedulers), or None."""
    return schedulers.of(study).build(study)


def build_searcher(study: Study):
    """The Ray searcher of ``search.algorithm`` (orchestrator.searchers), or None for Ray's variant generator."""
    return SEARCHERS.get(study.search.algorithm).build(study, live=schedulers.of(study).live(study))


class ArchResources:
    """Per-trial resources that depend on the trial's architecture (``resources.by_arch``)."""

    def __init__(self, study: Study):
        self.study = study

    def __call__(self, config: dict) -> dict:
        arch = space.lookup(config, self.study.trial, "model.arch")
        return self.study.resources.for_arch(arch if isinstance(arch, str) else None)


def build_trainable(study: Study, pretrained: dict):
    fn = tune.with_parameters(run_trial, base=study.trial, task=study.task, pretrained=pretrained,
                              cpus_per_trial=study.resources.cpu, resources=study.resources,
                              objective=(study.search.metric, study.search.mode))
    if study.resources.workers_per_trial > 1:
        # The trial only drives a Ray Train run; its workers reserve {cpu, gpu} each (by_arch too) in the
        # placement group Train creates for them (orchestrator.ddp).
        from orchestrator.ddp import DRIVER_RESOURCES
        return tune.with_resources(fn, DRIVER_RESOURCES)
    if study.resources.by_arch:
        return tune.with_resources(fn, ArchResources(study))
    return tune.with_resources(fn, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})


def trial_requests(study: Study) -> list[tuple[str, dict]]:
    """(where, {cpu, gpu}) for every kind of trial a study can start: per worker with ``workers_per_trial``."""
    arch = next((d for d in study.domains if d.path == "model.arch" and d.kind in ("choice", "grid")), None)
    archs = list(arch.args) if arch is not None else [study.trial.get("model", {}).get("arch")]
    out = []
    for a in archs:
        where = f"resources.by_arch.{a}" if isinstance(a, str) and a in study.resources.by_arch else "resources"
        out.append((where, study.resources.for_arch(a if isinstance(a, str) else None)))
    return out


def check_fits_cluster(study: Study, strict: bool = True, log=print) -> None:
    """A trial that no node can hold would wait forever: say so before starting. ``strict=False`` (a cluster
    joined with --address, whose autoscaler may still add nodes) prints a warning instead of failing."""
    import ray
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most = {k: max((float(n.get(k.upper(), 0)) for n in nodes), default=0.0) for k in ("cpu", "gpu")}
    total = {k: sum(float(n.get(k.upper(), 0)) for n in nodes) for k in ("cpu", "gpu")}
    workers = study.resources.workers_per_trial
    for where, need in trial_requests(study):
        for kind in ("cpu", "gpu"):
            if need[kind] > most[kind] or need[kind] * workers > total[kind]:
                who = f"each of the {workers} workers of a trial" if workers > 1 else "a trial"
                msg = (f"{where}.{kind}: {who} needs {need[kind]:g} {kind.upper()}, but no node of this Ray cluster "
                       f"has more than {most[kind]:g} ({total[kind]:g} in all); lower it, or run on a cluster "
                       f"that has them (--address)")
                if strict:
                    raise ConfigError(msg)
                log(f"warning: {msg}; waiting for the autoscaler to add nodes")
                return


def logger_callbacks(study: Study) -> list:
    """Ray Tune's logger callbacks named in ``logging:`` (orchestrator.loggers); a missing package is a clear error."""
    from orchestrator.loggers import callbacks
    return callbacks(study)


def build_sink(study: Study, store: StudyStore) -> ParquetSink:
    return ParquetSink(store.join("results"), study.name, functools.partial(trial_view, study), trial_epochs,
                       study.search.metric, study.search.mode, filesystem=store.fs)


def run_config(study: Study, store: StudyStore) -> tune.RunConfig:
    return tune.RunConfig(
        name=study.name, **store.tune_storage(),
        callbacks=[build_sink(study, store), *mirror_callbacks(study, store), *logger_callbacks(study),
                   # resources.keep, without optimizer state, once the trials have ended (orchestrator.prune)
                   PruneFinishedCheckpoints(study.resources.keep,
                                            wait_for_all=schedulers.of(study).min_checkpoints > 0)],
        failure_config=tune.FailureConfig(max_failures=study.resources.max_failures),
        # At least 2: with 1, Ray deletes a trial's previous checkpoint before the experiment snapshot that
        # still names it is replaced, and a driver killed in between cannot resume that trial.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=max(2, study.resources.keep, schedulers.of(study).min_checkpoints)),
        verbose=1)


def tune_config(study: Study) -> tune.TuneConfig:
    searcher = build_searcher(study)
    return tune.TuneConfig(
        metric=study.search.metric, mode=study.search.mode, scheduler=build_scheduler(study),
        search_alg=searcher, num_samples=study.search.num_samples,
        max_concurrent_trials=None if searcher else study.search.max_concurrent,
        time_budget_s=study.search.time_budget_s,
        # A new actor per trial costs ~1.5 s on 2 cores (bench/orchestration_overhead.py); trials share nothing
        # across runs (the trainable reseeds and rebuilds everything), so reusing processes is safe.
        reuse_actors=True)


def prepare_folder(study: Study, store: StudyStore, overwrite: bool) -> None:
    """Refuse to clobber an earlier run of the same study; write the resolved study next to its results."""
    if store.has_content():
        if not overwrite:
            raise ConfigError(f"{store}: results of study {study.name!r} already exist; continue them with "
                              f"'tlsweep resume {store}' or start over with --overwrite")
        store.remove()
    store.write_text(STUDY_FILE, yaml.safe_dump(study.to_dict(), sort_keys=False))


def absolute_data_roots(study: Study) -> None:
    """Make relative ``data.root`` paths absolute from the driver's folder: Ray runs each trial in its own
    working directory, where ``./data/...`` would point nowhere."""
    sections = [study.trial.get("data", {})] + ([study.pretrain.data] if study.pretrain else [])
    for data in sections:
        root = data.get("root")
        if isinstance(root, str) and "://" not in root and not os.path.isabs(os.path.expanduser(root)):
            data["root"] = str(Path(root).resolve())


def run_study(study: Study, storage: Optional[str] = None, overwrite: bool = False, log=print,
              strict_resources: bool = True):
    """Run a study to completion; returns (study folder, ``ResultGrid``).

    ``strict_resources``: a trial larger than any node is an error (False: a warning, for autoscaling clusters).
    """
    from orchestrator.pretrain import pretrain_all
    absolute_data_roots(study)
    check_fits_cluster(study, strict_resources, log)
    folder = study_dir(study, storage)
    store = StudyStore(folder)
    logger_callbacks(study)  # a missing logger package fails before anything is written
    prepare_folder(study, store, overwrite)
    pretrained = pretrain_all(study, log=log)  # on the driver; trials get them through orchestrator.weights_share
    store.write_text(PRETRAINED_FILE, yaml.safe_dump(publish(store, pretrained)))
    if study.search.preselect is not None:  # rank first, sweep the kept architectures (orchestrator.rank)
        from orchestrator.rank import preselect
        study = preselect(study, pretrained, folder, log)
    param_space = SEARCHERS.get(study.search.algorithm).param_space(study)
    tuner = tune.Tuner(build_trainable(study, ship(pretrained)), param_space=param_space,
                       tune_config=tune_config(study), run_config=run_config(study, store))
    with shared_data(log):  # data decoded once per node; its object store copies are freed when the study ends
        return folder, tuner.fit()


def resume_study(folder: str | os.PathLike):
    """Continue an interrupted study: unfinished and errored trials resume from their last checkpoints."""
    study, location = load_study_dir(folder)
    store = StudyStore(location)
    if not tune.Tuner.can_restore(**store.tune_restore()):
        raise ConfigError(f"{store}: no Ray Tune experiment state to resume (the study stopped before Tune's first "
                          f"snapshot, or never started): start it again with 'tlsweep run STUDY --overwrite'")
    pretrained = yaml.safe_load(store.read_text(PRETRAINED_FILE)) if store.is_file(PRETRAINED_FILE) else {}
    guard_tuner_state(store)   # a tuner.pkl cut by a kill during an earlier resume comes back from its copy
    forget_lost_trials(store)  # the tables are the truth: trials Tune's snapshot lost run again, once
    repair_checkpoints(store)   # and trials whose snapshot checkpoint Ray replaced continue from their newest
    trainable = build_trainable(study, fetch(store, pretrained or {}))  # the study folder's copies, any machine
    tuner = tune.Tuner.restore(**store.tune_restore(), trainable=trainable,
                               resume_unfinished=True, resume_errored=True)
    restored_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    if restored_config is not None:
        # Ray restores the scheduler as it was pickled at the start (empty): a fresh one, refilled from the tables
        restored_config.scheduler = build_scheduler(study)
        seed_scheduler(restored_config.scheduler, store, study.search.metric, study.search.mode)
    with shared_data(print):
        return location, tuner.fit()
