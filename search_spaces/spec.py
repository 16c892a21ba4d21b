"""A study file, loaded into a validated :class:`Study` before anything runs.

A study names its trial constants and search domains in ``data``, ``model``, ``training`` and ``seed``, plus
``search`` (algorithm, metric, scheduler), ``resources``, ``storage`` and ``seeds``::

    name: lr_and_freezing
    model:
      arch: resnet18
      weights: imagenet
      strategy: {grid: [full, partial]}
      freeze_depth: {choice: [0.25, 0.5, 0.75], when: {model.strategy: partial}}
    training: {epochs: 5, lr: {loguniform: [1.0e-4, 1.0e-2]}}
    search: {num_samples: 4, scheduler: {grace_period: 1}}

Every mistake raises :class:`~trainables.errors.ConfigError` with one line that starts with the key path.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union


from orchestrator.loggers import LOGGERS  # names only: importing it imports no Ray
from search_spaces.domains import FLOAT_KINDS, Domain, looks_like_domain, parse_domain, thaw
from search_spaces.sections import (DOMAINS_WHERE, PretrainSpec, ResourceSpec, SearchSpec, as_int, as_str,
                                    check_keys, mapping, no_domains, parse_pretrain, parse_resources, parse_search)
from trainables.config import (DataConfig, ModelConfig, TrainingConfig, TrialConfig, apply_overrides, read_yaml,
                               set_dotted, trial_config)
from trainables.errors import ConfigError, suggest
from trainables.tasks import OBJECTIVES

STUDY_DIR = Path(__file__).resolve().parent
TRIAL_SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig}
TOP_KEYS = ("name", "task", "description", "data", "model", "training", "seed", "search", "resources", "storage",
            "seeds", "logging")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# YAML 1.1 (PyYAML) reads 1e-3 and 1.0e3 as strings; study authors mean floats, as YAML 1.2 does.
_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass
class Study:
    """A validated study: trial constants, search domains (file order) and how to run the search."""

    name: str
    task: str
    trial: dict                         # {"data", "model", "training", "seed"}: constants only
    domains: list[Domain]
    search: SearchSpec
    resources: ResourceSpec
    storage: str
    seeds: int
    pretrain: Optional[PretrainSpec]
    description: str = ""
    logging: list = field(default_factory=lambda: ["tensorboard"])  # Ray Tune logger callbacks
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """The resolved study in its file form; ``study_from_dict(s.to_dict()) == s``.

        Example:
            >>> s = study_from_dict({"name": "x", "training": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}}})
            >>> s.to_dict()["training"]
            {'lr': {'loguniform': [0.0001, 0.01]}}
        """
        sections = copy.deepcopy(self.trial)
        if self.pretrain is not None:
            sections["model"]["weights"] = {"pretrain": copy.deepcopy(dataclasses.asdict(self.pretrain))}
        seed_domain = next((i for i, d in enumerate(self.domains) if d.path == "seed"), None)
        if seed_domain is not None and "seed" not in sections:  # keep it where it was among the sections
            before = self.domains[seed_domain - 1].path.split(".")[0] if seed_domain else None
            order = list(sections)
            order.insert(order.index(before) + 1 if before in order else 0, "seed")
            sections = {key: sections.get(key) for key in order}
        for d in self.domains:
            set_dotted(sections, d.path, d.to_yaml())
        search = dataclasses.asdict(self.search)
        if search["scheduler"] is None:
            search["scheduler"] = "none"
        out = {"name": self.name, "task": self.task}
        if self.description:
            out["description"] = self.description
        return {**out, **sections, "search": search, "resources": dataclasses.asdict(self.resources),
                "storage": self.storage, "seeds": self.seeds, "logging": list(self.logging)}

    def max_epochs(self) -> int:
        """``training.epochs``: the constant, or the largest value of its domain.

        Example:
            >>> study_from_dict({"name": "x", "training": {"epochs": {"choice": [2, 8]}}}).max_epochs()
            8
        """
        default = self.trial["training"].get("epochs", TrainingConfig().epochs)
        for d in self.domains:
            if d.path == "training.epochs":
                return max(d.candidates() + ([default] if d.when else []))
        return default


def _field_type(path: str) -> Any:
    section, _, name = path.rpartition(".")
    tp = typing.get_type_hints(TRIAL_SECTIONS.get(section, TrialConfig))[name]
    if typing.get_origin(tp) is Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _parse_trial(tree: dict) -> tuple[dict, list[Domain], Optional[PretrainSpec]]:
    """Split the trial sections into constants and domains, in file order (``when`` looks backwards)."""
    trial: dict = {}
    domains: list[Domain] = []
    earlier: dict[str, Any] = {}
    pretrain = None
    for key, raw in tree.items():
        if key == "seed":
            if looks_like_domain(raw):
                earlier["seed"] = parse_domain("seed", raw, earlier)
                domains.append(earlier["seed"])
            else:
                trial["seed"] = earlier["seed"] = raw
            continue
        if key not in TRIAL_SECTIONS:
            continue
        out = trial[key] = {}
        names = [f.name for f in dataclasses.fields(TRIAL_SECTIONS[key])]
        for name, value in mapping(key, raw).items():
            path = f"{key}.{name}"
            if name not in names:
                hint = suggest(str(name), names) or " (valid keys: " + ", ".join(names) + ")"
                raise ConfigError(f"{path}: unknown key{hint}")
            if path == "model.weights" and isinstance(value, dict) and not looks_like_domain(value):
                pretrain = parse_pretrain(path, value)
                out[name] = earlier[path] = "none"  # trials load the pretrained checkpoint the orchestrator makes
            elif isinstance(value, dict):
                earlier[path] = parse_domain(path, value, earlier)
                domains.append(earlier[path])
            else:
                out[name] = earlier[path] = value
    for key in TRIAL_SECTIONS:
        trial.setdefault(key, {})
    if "seed" not in earlier:
        trial["seed"] = 0
    return trial, domains, pretrain


def _check_types(trial: dict, domains: list[Domain], task: str) -> None:
    """Build the trial config from the constants, then once per domain value (and range end)."""
    base = {**copy.deepcopy(trial), "task": task}
    trial_config(base)
    for d in domains:
        if d.kind in FLOAT_KINDS and _field_type(d.path) is int:
            raise ConfigError(f"{d.path}: {d.kind} samples floats, but {d.path} is an int (use randint or choice)")
        for value in d.candidates():
            cfg = copy.deepcopy(base)
            set_dotted(cfg, d.path, thaw(value))
            trial_config(cfg)
        for key, allowed in d.when:
            for value in allowed:
                cfg = copy.deepcopy(base)
                set_dotted(cfg, key, thaw(value))
                try:
                    trial_config(cfg)
                except ConfigError as e:
                    raise ConfigError(f"{d.path}.when: {e}") from None


def _check_together(study: Study) -> None:
    """Checks that span sections: the search algorithm's and the scheduler's (their registry entries' ``check``:
    domains, seeds, samples, epochs), and seeds vs a seed domain."""
    from orchestrator import schedulers, searchers  # the registries: importing them imports no Ray
    for key in ("objective", "objective_mode"):
        if key in study.trial["training"] or any(d.path == f"training.{key}" for d in study.domains):
            raise ConfigError(f"training.{key}: a study's trials optimise search.metric / search.mode; set those")
    reported = OBJECTIVES.get(study.task, ())
    if study.search.metric not in reported:
        raise ConfigError(f"search.metric: {study.search.metric!r} is not reported by {study.task} trials"
                          f"{suggest(study.search.metric, reported, n=1) or ' (reported: ' + ', '.join(reported) + ')'}")
    if study.seeds > 1 and any(d.path == "seed" for d in study.domains):
        raise ConfigError("seeds: cannot repeat over seeds when seed is itself a search domain")
    searchers.SEARCHERS.get(study.search.algorithm).check(study)
    schedulers.of(study).check(study)
    from search_spaces.preselect import check_preselect
    check_preselect(study)


def study_from_dict(tree: dict, source: str = "<dict>") -> Study:
    """Validate a study given as a nested dict (a parsed study file).

    Example:
        >>> s = study_from_dict({"name": "demo", "model": {"arch": {"grid": ["resnet18", "scratch_cnn"]}}})
        >>> [(d.path, d.kind, d.args) for d in s.domains]
        [('model.arch', 'grid', ('resnet18', 'scratch_cnn'))]
    """
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(tree).__name__}")
    tree = _exp_floats(copy.deepcopy(tree))
    _finite(tree, "")
    check_keys("", tree, TOP_KEYS)
    for key in ("name", "task", "description", "storage", "seeds"):
        no_domains(key, tree.get(key), DOMAINS_WHERE)
    if tree.get("name") in (None, ""):
        raise ConfigError("name: required")
    name = as_str("name", tree["name"])
    if not _NAME.fullmatch(name):
        raise ConfigError(f"name: {name!r} names the results folder: use letters, digits, '_', '-' and '.'")
    task = as_str("task", tree.get("task", "classification"))
    trial, domains, pretrain = _parse_trial(tree)
    _check_types(trial, domains, task)
    description = tree.get("description")
    study = Study(name=name, task=task, trial=trial, domains=domains, search=parse_search(tree.get("search")),
                  resources=parse_resources(tree.get("resources")),
                  storage=as_str("storage", tree.get("storage", "./results")),
                  seeds=as_int("seeds", tree.get("seeds", 1), 1), pretrain=pretrain,
                  description=as_str("description", description) if description is not None else "",
                  logging=_parse_logging(tree.get("logging", ["tensorboard"])), source=source)
    _check_together(study)
    return study


def _parse_logging(raw: Any) -> list:
    """``logging: [tensorboard, mlflow, wandb]``: Ray Tune's logger callbacks to add (``[]``: none)."""
    no_domains("logging", raw, DOMAINS_WHERE)
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ConfigError(f"logging: expected a list of {', '.join(LOGGERS.names())}, got {raw!r}")
    for item in items:
        LOGGERS.check(item)
    return list(dict.fromkeys(items))


def _finite(node: Any, path: str) -> None:
    """A NaN or infinity anywhere in a study (``.nan``, ``.inf``, ``1e999``) is an error naming its key: no
    sampler, scheduler or comparison means anything with one."""
    if isinstance(node, dict):
        for k, v in node.items():
            _finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _finite(v, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path}: expected a finite number, got {node!r}")


def _exp_floats(node: Any) -> Any:
    """``"1e-3"`` -> ``0.001`` throughout a tree: PyYAML (YAML 1.1) reads such numbers as strings."""
    if isinstance(node, dict):
        return {k: _exp_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_exp_floats(v) for v in node]
    if isinstance(node, str) and _EXP_FLOAT.fullmatch(node):
        return float(node)
    return node


def read_study_yaml(path: Path) -> dict:
    """A study file's mapping; a syntax error names the line."""
    return read_yaml(path)


def load_study(path: Union[str, Path], overrides: Sequence[str] = ()) -> Study:
    """Read a study file (or a shipped study by name), apply ``--set key=value`` overrides and validate it.

    Example:
        >>> s = load_study("cifar10_frozen_backbones", ["training.epochs=3"])
        >>> s.trial["training"]["epochs"]
        3
    """
    p = find_study(str(path))
    tree = apply_overrides(read_study_yaml(p), list(overrides))
    return study_from_dict(tree, source=str(p))


def list_studies(pattern: str = "*") -> list[str]:
    """Names of the studies shipped in ``search_spaces/``.

    Example:
        >>> "inaturalist_freezing" in list_studies("inat*")
        True
    """
    return sorted(p.stem for p in STUDY_DIR.glob("*.yaml") if fnmatch.fnmatch(p.stem, pattern))


def find_study(name_or_path: str) -> Path:
    """An existing study file, or the shipped study of that name (``quickstart`` -> ``.../quickstart.yaml``).

    Example:
        >>> find_study("inaturalist_freezing").name
        'inaturalist_freezing.yaml'
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    shipped = STUDY_DIR / f"{stem}.yaml"
    if len(Path(name_or_path).parts) == 1 and shipped.is_file():
        return shipped
    names = list_studies()
    hint = suggest(stem, names) or " (shipped studies: " + ", ".join(names) + ")"
    raise ConfigError(f"{name_or_path}: no such study file or shipped study{hint}")
