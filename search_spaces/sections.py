"""The parts of a study that are not trial fields: ``search``, ``search.scheduler``, ``resources`` and the
source-task pretraining in ``model.weights: {pretrain: ...}``. Each is a small dataclass with defaults.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from search_spaces.domains import looks_like_domain
from trainables.config import trial_config
from trainables.errors import ConfigError, suggest
from trainables.tasks import OBJECTIVES

# What trainables.classification reports each epoch that a searcher or scheduler can optimise.
# What the tasks' epochs report that a searcher or scheduler can optimise (trainables.tasks.OBJECTIVES, per task).
KNOWN_METRICS = tuple(dict.fromkeys(m for metrics in OBJECTIVES.values() for m in metrics))
GRID_ORDERS = ("auto", "listed", "shuffled")
DOMAINS_WHERE = "search domains are only allowed in data, model, training and seed"


@dataclass
class SchedulerSpec:
    """ASHA's options; the other schedulers' are in orchestrator.schedulers (the registry of the names)."""
    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: Optional[int] = None         # None: training.epochs (the largest, when it is searched)
    brackets: int = 1


@dataclass
class SearchSpec:
    algorithm: str = "random"           # a name in orchestrator.searchers.SEARCHERS
    num_samples: int = 1
    metric: str = "val_acc"
    mode: str = "max"
    max_concurrent: Optional[int] = None
    time_budget_s: Optional[float] = None
    scheduler: Optional[Any] = field(default_factory=SchedulerSpec)  # options of a SCHEDULERS entry; None: none
    grid_order: str = "auto"            # auto (shuffled under a scheduler, else listed) | listed | shuffled
    preselect: Optional[Any] = None     # search_spaces.preselect.PreselectSpec: rank architectures first


@dataclass
class ResourceSpec:
    cpu: float = 1.0
    gpu: float = 0.0                    # fractions share a GPU between trials
    max_failures: int = 2
    keep: int = 2                       # checkpoints kept per trial
    by_arch: dict = field(default_factory=dict)  # arch -> {cpu, gpu}: overrides per architecture
    workers_per_trial: int = 1          # > 1: data-parallel workers per trial, each with {cpu, gpu} above

    def for_arch(self, arch: Optional[str]) -> dict:
        """``{"cpu": ..., "gpu": ...}`` for one trial of architecture ``arch``."""
        return {"cpu": self.cpu, "gpu": self.gpu, **self.by_arch.get(arch, {})}


@dataclass
class PretrainSpec:
    data: dict                          # DataConfig fields of the source task
    epochs: int = 3
    training: dict = field(default_factory=dict)
    skip: list = field(default_factory=lambda: ["scratch_cnn", "baseline_cnn"])  # archs trained without it


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def mapping(path: str, value: Any) -> dict:
    """``value`` as a mapping (``None`` -> ``{}``), or ConfigError naming ``path``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping, got {value!r}")
    return value


def check_keys(path: str, tree: dict, allowed: Iterable[str]) -> None:
    """Raise ConfigError for the first key of ``tree`` not in ``allowed``, with the closest names."""
    allowed = list(allowed)
    for key in tree:
        if key not in allowed:
            sub = f"{path}.{key}" if path else str(key)
            hint = suggest(str(key), allowed) or " (valid keys: " + ", ".join(allowed) + ")"
            raise ConfigError(f"{sub}: unknown key{hint}")


def no_domains(path: str, value: Any, why: str = DOMAINS_WHERE) -> None:
    """Raise ConfigError if a search domain hides anywhere in ``value``."""
    if looks_like_domain(value):
        raise ConfigError(f"{path}: {why}")
    if isinstance(value, dict):
        for key, sub in value.items():
            no_domains(f"{path}.{key}", sub, why)


def as_int(path: str, value: Any, low: Optional[int] = None, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{path}: expected int, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{path}: must be >= {low}, got {value}")
    return value


def as_number(path: str, value: Any, low: float, strict: bool = False, optional: bool = False) -> Optional[float]:
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{path}: must be {'>' if strict else '>='} {low}, got {value}")
    return float(value)


def as_str(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected str, got {value!r}")
    return value


def one_of(path: str, value: Any, allowed: tuple) -> str:
    if value not in allowed:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(allowed)}{suggest(str(value), allowed)}")
    return value


def parse_scheduler(raw: Any) -> Any:
    """``none`` (or null, or ``{type: none}``) -> None; a name -> its defaults; a mapping -> its fields checked
    by the scheduler's registry entry (orchestrator.schedulers; ``type`` defaults to asha)."""
    from orchestrator.schedulers import SCHEDULERS  # imports no Ray
    path = "search.scheduler"
    if raw is None:
        return None
    tree = {"type": raw} if isinstance(raw, str) else dict(mapping(path, raw))
    name = as_str(f"{path}.type", tree.setdefault("type", "asha"))
    SCHEDULERS.check(name)
    return SCHEDULERS.get(name).parse(path, tree)


def parse_search(raw: Any) -> SearchSpec:
    """The ``search`` section. ``mode`` defaults to min for ``*_loss`` metrics and max otherwise."""
    tree = mapping("search", raw)
    no_domains("search", tree)
    check_keys("search", tree, _names(SearchSpec))
    metric = tree.get("metric", "val_acc")
    if metric not in KNOWN_METRICS:
        hint = suggest(str(metric), KNOWN_METRICS, n=1) or " (reported: " + ", ".join(KNOWN_METRICS) + ")"
        raise ConfigError(f"search.metric: {metric!r} is not reported by trials{hint}")
    natural = "min" if metric.endswith("_loss") else "max"
    mode = one_of("search.mode", tree.get("mode", natural), ("max", "min"))
    if mode != natural:
        raise ConfigError(f"search.mode: {mode} would select the worst trials by {metric}; use {natural}")
    return SearchSpec(
        algorithm=_algorithm(tree.get("algorithm", "random")),
        num_samples=as_int("search.num_samples", tree.get("num_samples", 1), 1),
        metric=metric, mode=mode,
        max_concurrent=as_int("search.max_concurrent", tree.get("max_concurrent"), 1, optional=True),
        time_budget_s=as_number("search.time_budget_s", tree.get("time_budget_s"), 0, strict=True, optional=True),
        scheduler=parse_scheduler(tree["scheduler"]) if "scheduler" in tree else SchedulerSpec(),
        grid_order=one_of("search.grid_order", tree.get("grid_order", "auto"), GRID_ORDERS),
        preselect=_preselect(tree.get("preselect")))


def _preselect(raw: Any):
    from search_spaces.preselect import parse_preselect
    return parse_preselect(raw)


def _algorithm(name: Any) -> str:
    from orchestrator.searchers import SEARCHERS  # imports no Ray
    SEARCHERS.check(as_str("search.algorithm", name))
    return name


def parse_resources(raw: Any) -> ResourceSpec:
    """The ``resources`` section: per-trial CPUs and GPUs (fractions allowed), retries, checkpoints kept,
    data-parallel workers per trial (``cpu`` / ``gpu`` are then per worker)."""
    tree = mapping("resources", raw)
    no_domains("resources", tree)
    check_keys("resources", tree, _names(ResourceSpec))
    by_arch = {}
    for arch, res in mapping("resources.by_arch", tree.get("by_arch", {})).items():
        res = mapping(f"resources.by_arch.{arch}", res)
        check_keys(f"resources.by_arch.{arch}", res, ("cpu", "gpu"))
        by_arch[str(arch)] = {k: as_number(f"resources.by_arch.{arch}.{k}", v, 0, strict=(k == "cpu"))
                              for k, v in res.items()}
    spec = ResourceSpec(
        cpu=as_number("resources.cpu", tree.get("cpu", 1), 0, strict=True),
        gpu=as_number("resources.gpu", tree.get("gpu", 0), 0),
        max_failures=as_int("resources.max_failures", tree.get("max_failures", 2), 0),
        keep=as_int("resources.keep", tree.get("keep", 2), 1), by_arch=by_arch,
        workers_per_trial=as_int("resources.workers_per_trial", tree.get("workers_per_trial", 1), 1))
    if spec.workers_per_trial > 1:
        gpus = [("resources.gpu", spec.gpu)] + [(f"resources.by_arch.{a}.gpu", r["gpu"]) for a, r in by_arch.items()
                                                if "gpu" in r]
        for where, gpu in gpus:
            if gpu % 1:
                raise ConfigError(f"{where}: {gpu:g} GPU per worker; data-parallel workers (workers_per_trial: "
                                  f"{spec.workers_per_trial}) need whole GPUs (NCCL cannot run two ranks on one GPU)")
    return spec


def parse_pretrain(path: str, raw: dict) -> PretrainSpec:
    """``model.weights: {pretrain: {data: {...}, epochs: 3, training: {...}, skip: [...]}}``."""
    check_keys(path, raw, ("pretrain",))
    path = f"{path}.pretrain"
    tree = mapping(path, raw["pretrain"])
    no_domains(path, tree, "search domains are not allowed in source-task pretraining")
    check_keys(path, tree, _names(PretrainSpec))
    if "data" not in tree:
        raise ConfigError(f"{path}.data: required (the source data set)")
    data = copy.deepcopy(mapping(f"{path}.data", tree["data"]))
    training = copy.deepcopy(mapping(f"{path}.training", tree.get("training")))
    if "epochs" in training:
        raise ConfigError(f"{path}.training.epochs: set {path}.epochs instead")
    epochs = as_int(f"{path}.epochs", tree.get("epochs", 3), 1)
    skip = tree.get("skip", PretrainSpec({}).skip)
    if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
        raise ConfigError(f"{path}.skip: expected a list of architecture names, got {skip!r}")
    try:
        trial_config({"data": data, "training": {**training, "epochs": epochs}})
    except ConfigError as e:
        raise ConfigError(f"{path}.{e}") from None
    return PretrainSpec(data, epochs, training, list(skip))
