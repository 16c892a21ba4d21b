"""Trial schedulers by name (``search.scheduler``): one registration each, read by validation, the tuner and
``tlsweep list``.

A study names one as ``scheduler: asha`` or ``scheduler: {type: asha, grace_period: 2}`` (``none``: every trial
runs all its epochs). Each entry parses its options into a small dataclass (``study.search.scheduler``; None for
``none``), checks them against the rest of the study and builds the Ray scheduler; Ray is imported only in
``build``, so a study validates without it. All of them count time in epochs (``training_iteration``).

Example:
    >>> SCHEDULERS.names()
    ['asha', 'hyperband', 'median', 'none', 'pbt']
    >>> SCHEDULERS.get("pbt").parse("search.scheduler", {"type": "pbt", "quantile": 0.5})
    PbtSpec(type='pbt', perturbation_interval=1, quantile=0.5, resample_probability=0.25)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.searchers import CONTINUOUS, SEARCHERS
from search_spaces.sections import SchedulerSpec, as_int, as_number, check_keys
from trainables.errors import ConfigError
from trainables.registry import Registry

SCHEDULERS: Registry = Registry("search.scheduler")
# Trial fields PBT may change when a trial continues from another's checkpoint: none of them shapes the model, the
# data or the number of steps, so the donor's weights and optimizer state still fit.
PBT_KNOBS = ("training.lr", "training.weight_decay", "training.momentum", "training.label_smoothing",
             "training.grad_clip", "model.dropout")


@dataclass
class HyperBandSpec:
    type: str = "hyperband"
    max_t: Optional[int] = None         # None: training.epochs (the largest, when it is searched)
    reduction_factor: float = 3.0


@dataclass
class MedianSpec:
    type: str = "median"
    grace_period: int = 1               # epochs before a trial can be stopped
    min_samples_required: int = 3       # other trials needed at that epoch to take a median


@dataclass
class PbtSpec:
    type: str = "pbt"
    perturbation_interval: int = 1      # epochs between exploit / explore steps of a trial
    quantile: float = 0.25              # the bottom fraction copies the top fraction
    resample_probability: float = 0.25  # explore: resample a value instead of perturbing it (x0.8 / x1.2)


class Scheduler:
    """Defaults: no options, nothing paused, no extra checkpoints."""

    name = ""
    description = ""
    options: Optional[type] = None      # the options dataclass (its first field is ``type``); None: no scheduler
    pauses_trials = False               # paused trials wait for others: they must all be live at once
    min_checkpoints = 0                 # checkpoints per trial Ray keeps at least

    def parse(self, path: str, tree: dict) -> Any:
        """The options of ``tree`` (a study's ``search.scheduler`` mapping) checked, or ConfigError."""
        check_keys(path, tree, [f.name for f in dataclasses.fields(self.options)] if self.options else ["type"])
        return self.options() if self.options else None

    def check(self, study) -> None:
        """Cross-section rules (ConfigError naming the key)."""

    def live(self, study) -> Optional[int]:
        """How many trials must be able to be live (running or paused) at once; None: any number."""
        return None

    def check_concurrency(self, study, why: str) -> None:
        need, cap = self.live(study), study.search.max_concurrent
        if need is not None and cap is not None and cap < need:
            raise ConfigError(f"search.max_concurrent: {cap} is below the {need} trials {self.name} needs live at "
                              f"once ({why}; paused trials count); leave it unset or set it to {need} or more")

    def build(self, study):
        return None


class NoScheduler(Scheduler):
    """No early stopping: every trial runs all its epochs."""


class Asha(Scheduler):
    """Asynchronous successive halving: stops the weakest trials at each rung (grace_period x reduction_factor^k)."""

    options = SchedulerSpec

    def parse(self, path: str, tree: dict) -> SchedulerSpec:
        super().parse(path, tree)
        spec = SchedulerSpec(
            grace_period=as_int(f"{path}.grace_period", tree.get("grace_period", 1), 1),
            reduction_factor=as_number(f"{path}.reduction_factor", tree.get("reduction_factor", 2), 1, strict=True),
            max_t=as_int(f"{path}.max_t", tree.get("max_t"), 1, optional=True),
            brackets=as_int(f"{path}.brackets", tree.get("brackets", 1), 1))
        if spec.max_t is not None and spec.grace_period > spec.max_t:
            raise ConfigError(f"{path}.grace_period: {spec.grace_period} is larger than max_t {spec.max_t}")
        return spec

    def check(self, study) -> None:
        s = study.search.scheduler
        if s.max_t is None and s.grace_period > study.max_epochs():
            raise ConfigError(f"search.scheduler.grace_period: {s.grace_period} is larger than max_t "
                              f"{study.max_epochs()} (training.epochs)")

    def build(self, study):
        from orchestrator.resume import TableAsha  # ASHA whose rungs a resume refills from the tables
        s = study.search.scheduler
        return TableAsha(time_attr="training_iteration", max_t=s.max_t or study.max_epochs(),
                             grace_period=s.grace_period, reduction_factor=s.reduction_factor, brackets=s.brackets)


def bracket_sizes(max_t: int, eta: float) -> list[int]:
    """Trials per HyperBand bracket, as Ray's HyperBandScheduler fills them.

    Example:
        >>> bracket_sizes(3, 3)
        [2, 3]
    """
    s_max_1 = int(round(math.log(max_t) / math.log(eta))) + 1
    return [math.ceil(s_max_1 / (s + 1) * eta ** s) for s in range(s_max_1) if int(max_t * eta ** -s) > 0]


class HyperBand(Scheduler):
    """Synchronous HyperBand: brackets of trials paused at each rung until all reach it, then the best continue."""

    options = HyperBandSpec
    pauses_trials = True

    def parse(self, path: str, tree: dict) -> HyperBandSpec:
        super().parse(path, tree)
        return HyperBandSpec(
            max_t=as_int(f"{path}.max_t", tree.get("max_t"), 1, optional=True),
            reduction_factor=as_number(f"{path}.reduction_factor", tree.get("reduction_factor", 3), 1, strict=True))

    def max_t(self, study) -> int:
        return study.search.scheduler.max_t or study.max_epochs()

    def live(self, study) -> int:
        return max(bracket_sizes(self.max_t(study), study.search.scheduler.reduction_factor))

    def check(self, study) -> None:
        self.check_concurrency(study, "its largest bracket")

    def build(self, study):
        s = study.search.scheduler
        return finishing_hyperband()(time_attr="training_iteration", max_t=self.max_t(study),
                                     reduction_factor=s.reduction_factor)


def finishing_hyperband():
    """Ray's HyperBandScheduler, except that a trial is never paused at its last epoch.

    A function trainable can report a rung's epoch and go on to its last one before the driver decides; Ray's
    HyperBand then pauses a trial whose function has already returned, and the study hangs with the trial
    RUNNING and no process (the "overstepped trial" case of ray-project/ray#39157). A trial at ``max_t`` is let
    finish instead: Tune then calls ``on_trial_complete``, which takes it out of its bracket and processes it.
    """
    from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

    class FinishingHyperBand(HyperBandScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.PAUSE and result.get(self._time_attr, 0) >= self._max_t_attr:
                return TrialScheduler.CONTINUE
            return action

    return FinishingHyperBand


class Median(Scheduler):
    """Median stopping rule: stops a trial whose best result is below the median of the others' running means."""

    options = MedianSpec

    def parse(self, path: str, tree: dict) -> MedianSpec:
        super().parse(path, tree)
        return MedianSpec(
            grace_period=as_int(f"{path}.grace_period", tree.get("grace_period", 1), 1),
            min_samples_required=as_int(f"{path}.min_samples_required", tree.get("min_samples_required", 3), 1))

    def check(self, study) -> None:
        s = study.search.scheduler
        if s.grace_period > study.max_epochs():
            raise ConfigError(f"search.scheduler.grace_period: {s.grace_period} is larger than training.epochs "
                              f"{study.max_epochs()}")

    def build(self, study):
        from orchestrator.resume import TableMedian  # the median rule whose results a resume refills
        s = study.search.scheduler
        return TableMedian(time_attr="training_iteration", grace_period=s.grace_period,
                           min_samples_required=s.min_samples_required)


class KeepInDomain:
    """PBT's ``custom_explore_fn``: a value perturbed (x0.8 / x1.2) is put back inside its domain's range.

    A module-level class, not a closure, so the scheduler's state can be pickled for ``tlsweep resume``.

    Example:
        >>> KeepInDomain({"training.lr": ("loguniform", (1e-4, 1e-2))})({"training.lr": 0.02})
        {'training.lr': 0.01}
    """

    def __init__(self, ranges: dict):
        self.ranges = ranges  # dotted key -> (kind, args) of the continuous domains PBT mutates

    def __call__(self, config: dict) -> dict:
        for key, (kind, args) in self.ranges.items():
            value = config.get(key)
            if not isinstance(value, (int, float)):
                continue
            low, high = args[0], (args[1] - 1 if kind == "randint" else args[1])
            value = min(max(value, low), high)
            if kind == "quniform":
                value = min(max(round(value / args[2]) * args[2], low), high)
            config[key] = int(round(value)) if kind == "randint" else value
        return config


class Pbt(Scheduler):
    """Population based training: the weakest trials continue from the best ones' checkpoints, with perturbed
    learning rate and other numeric knobs."""

    options = PbtSpec
    pauses_trials = True
    min_checkpoints = 4  # the donor's checkpoint must still exist when the exploiting trial restarts from it

    def parse(self, path: str, tree: dict) -> PbtSpec:
        super().parse(path, tree)
        spec = PbtSpec(
            perturbation_interval=as_int(f"{path}.perturbation_interval", tree.get("perturbation_interval", 1), 1),
            quantile=as_number(f"{path}.quantile", tree.get("quantile", 0.25), 0, strict=True),
            resample_probability=as_number(f"{path}.resample_probability", tree.get("resample_probability", 0.25),
                                           0))
        if spec.quantile > 0.5:
            raise ConfigError(f"{path}.quantile: must be <= 0.5 (the bottom and top fractions cannot overlap), "
                              f"got {spec.quantile:g}")
        if spec.resample_probability > 1:
            raise ConfigError(f"{path}.resample_probability: must be <= 1, got {spec.resample_probability:g}")
        return spec

    def mutated(self, study) -> list:
        """The domains PBT mutates: numeric, unconditional, sampled (not grid axes), in ``PBT_KNOBS``."""
        axes = SEARCHERS.get(study.search.algorithm).grid_kinds
        return [d for d in study.domains if d.path in PBT_KNOBS and not d.when and d.kind not in axes and (
            d.kind in CONTINUOUS or (d.kind == "choice" and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.args)))]

    def live(self, study) -> int:
        from orchestrator.grid import trials
        return trials(study)

    def check(self, study) -> None:
        from orchestrator.grid import trials
        path, s = "search.scheduler", study.search.scheduler
        if SEARCHERS.get(study.search.algorithm).define_by_run:
            raise ConfigError(f"{path}: pbt chooses the configurations itself and cannot follow search.algorithm "
                              f"{study.search.algorithm}; use random")
        if not self.mutated(study):
            raise ConfigError(f"{path}: pbt needs a numeric search domain to mutate (uniform, loguniform, quniform, "
                              f"randint or a numeric choice, without when, sampled rather than a grid axis) in one "
                              f"of {', '.join(PBT_KNOBS)}")
        if trials(study) < 2:
            raise ConfigError(f"{path}: pbt needs a population of at least 2 trials (search.num_samples x grid x "
                              f"seeds), got 1")
        if s.perturbation_interval >= study.max_epochs():
            raise ConfigError(f"{path}.perturbation_interval: {s.perturbation_interval} epochs is not below "
                              f"training.epochs {study.max_epochs()}: pbt would never exploit")
        every = study.trial["training"].get("checkpoint_every", 1)
        if isinstance(every, int) and s.perturbation_interval % every:
            raise ConfigError(f"{path}.perturbation_interval: {s.perturbation_interval} is not a multiple of "
                              f"training.checkpoint_every {every} (pbt continues from the last checkpoint)")
        if study.resources.workers_per_trial > 1:
            raise ConfigError(f"{path}: pbt restarts trials from Tune checkpoints, which data-parallel trials "
                              f"(resources.workers_per_trial: {study.resources.workers_per_trial}) keep in Ray Train; "
                              f"use asha, hyperband or median")
        self.check_concurrency(study, "its whole population")

    def build(self, study):
        from orchestrator._pbt import PopulationBasedTrainingOnce
        from orchestrator.space import tune_domain
        s = study.search.scheduler
        domains = self.mutated(study)
        mutations = {d.path: tune_domain(d) if d.kind in CONTINUOUS else sorted(d.args) for d in domains}
        return PopulationBasedTrainingOnce(
            time_attr="training_iteration", perturbation_interval=s.perturbation_interval,
            hyperparam_mutations=mutations, quantile_fraction=s.quantile,
            resample_probability=s.resample_probability, log_config=False,
            custom_explore_fn=KeepInDomain({d.path: (d.kind, d.args) for d in domains if d.kind in CONTINUOUS}))


def of(study) -> Scheduler:
    """The registry entry of the study's scheduler (``none`` when it has none)."""
    s = study.search.scheduler
    return SCHEDULERS.get(s.type if s is not None else "none")


for _name, _cls in (("none", NoScheduler), ("asha", Asha), ("hyperband", HyperBand), ("median", Median),
                    ("pbt", Pbt)):
    _entry = _cls()
    _entry.name, _entry.description = _name, " ".join((_cls.__doc__ or "").split("\n\n")[0].split())
    SCHEDULERS.register(_name, _entry.description)(_entry)
