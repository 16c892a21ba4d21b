"""The trial config: small typed dataclasses with defaults, built from a nested dict.

Unknown keys and wrong types fail loudly with the key path (``training.lr: expected float, got 'abc'``).
A trial config has four parts: ``data``, ``model``, ``training`` and ``seed``.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from trainables.errors import ConfigError, suggest

# Closed sets. The open ones (data sets, augmentations, optimizers, schedules, ...) are registries:
# trainables.catalog and trainables.tasks, read by check_names.
ON_BAD_IMAGE = ("error", "skip")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataConfig:
    name: str = "digits"
    root: Optional[str] = None          # where torchvision / folder data sets live
    download: bool = False              # torchvision data sets: fetch when absent
    classes: Optional[list] = None      # a subset (names or indices), relabelled 0..k-1
    samples_per_class: Optional[int] = None  # label budget for the training split
    image_size: Optional[int] = None    # default: the model's pretrained input size
    val_fraction: float = 0.2           # used when the data set has no validation split
    test_fraction: float = 0.0          # digits / image folders without a test split
    split_seed: int = 0                 # splits do not change with the trial seed
    augment: str = "none"               # tlsweep list augmentations (per task)
    num_workers: int = 0                # loader processes for data decoded lazily
    memory_limit_mb: int = 2048         # image folders decoded into memory up to this size
    on_bad_image: str = "error"         # ON_BAD_IMAGE: an unreadable image file stops the trial or is left out
    share: bool = True                  # under Ray: decode once per node, trials read it from the object store
    decoded_cache: bool = True          # image folders: keep decoded pixels on disk for later trials and studies
    ignore_index: int = 255             # segmentation: mask value left out of the loss and the metrics
    num_classes: Optional[int] = None   # segfolder: mask classes (default: classes.txt, or largest value + 1)
    sample_images: int = 4              # segmentation: first val images whose predictions are reported as PNGs
    shapes_count: int = 400             # shapes (segmentation and classification): images generated
    num_shapes: int = 3                 # shapes: foreground classes (3 kinds; 4-9: kind x colour)


@dataclass
class ModelConfig:
    arch: str = "scratch_cnn"
    weights: Any = "none"               # none | imagenet | file:<path> (dict form: the orchestrator's pretrain)
    strategy: str = "full"              # full | linear_probe | partial | unfreeze_last_k | two_phase
    freeze_depth: float = 0.5           # partial / two_phase: fraction of backbone stages (or parameters) frozen
    freeze_unit: str = "stages"         # stages | params: freeze_depth counts stages, or backbone parameters
                                        # (params: the prefix ends at the stage boundary nearest that fraction)
    unfreeze_k: int = 1                 # unfreeze_last_k: how many of the last stages train
    head_epochs: int = 1                # two_phase: epochs with only the head training
    backbone_lr_mult: float = 0.1       # two_phase: backbone lr = lr x this in phase 2
    drop_rate: float = 0.0              # timm models: dropout before the classifier
    decoder: str = "unet"               # segmentation (arch = encoder): tlsweep list decoders
    decoder_width: int = 64             # segmentation: channels of the unet / fpn decoder
    # scratch_cnn (the iNaturalist study's configurable CNN)
    conv_layers: int = 5
    first_layer_filters: int = 32
    filter_org: float = 1.0             # filter multiplier per layer: 0.5, 1, 2
    kernel_size: int = 3
    activation: str = "relu"            # tlsweep list activations
    batch_norm: bool = True
    dropout: float = 0.2
    dense_units: int = 128


@dataclass
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"            # tlsweep list optimizers
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9               # sgd
    scheduler: str = "cosine"           # the learning-rate schedule: tlsweep list lr-schedules
    warmup_epochs: float = 0.0          # cosine: linear warm-up
    step_size: int = 10                 # step
    gamma: float = 0.1                  # step / plateau factor
    label_smoothing: float = 0.0
    precision: str = "auto"             # PRECISIONS: auto is bf16 on CUDA, fp32 on CPU
    grad_accum: int = 1
    grad_clip: Optional[float] = None
    early_stop_patience: Optional[int] = None  # stop after N epochs without improvement of the objective
    objective: Optional[str] = None     # the metric that decides the best epoch (None: the task's, val_acc / val_miou;
                                        # a study sets it from search.metric)
    objective_mode: Optional[str] = None  # max | min (None: min for *_loss, else max)
    checkpoint_every: int = 1
    device: str = "auto"                # DEVICES: auto is cuda when visible
    threads: Optional[int] = None       # torch intra-op threads (None: leave as is)
    max_steps_per_epoch: Optional[int] = None  # cap for quick runs and tests
    feature_cache: bool = True          # frozen backbone, no augmentation: train on its cached outputs
    prefix_cache_mb: int = 512          # partial freezing: cache the frozen prefix's output up to this size (0: off)
    data_on_gpu_mb: int = 4096          # CUDA: keep in-memory images on the GPU up to this size (else pinned; 0: never)
    loss: str = "ce"                    # segmentation: tlsweep list losses


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seed: int = 0
    task: str = "classification"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(path: str, value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` (int -> float only), or raise ConfigError naming ``path``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(path, value, inner[0])
    if origin is list or tp is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{path}: expected a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")


def build_section(cls: type, values: dict, path: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in names:
            hint = suggest(str(key), names) or f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"{sub}: unknown key{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_section(tp, value, sub)
        else:
            kwargs[key] = _check_type(sub, value, tp)
    return cls(**kwargs)


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a YAML scalar (never as code): '3' -> 3, '1e-3' -> 0.001, 'true' -> True."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:  # e.g. a '!!python/...' tag: kept as the text it is, which no field accepts
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads '1e-3' as a string; users mean a float
            return float(value) if value.lower() not in ("nan", "inf", "-inf") else value
        except ValueError:
            return value
    return value


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``dotted='a.b'``, creating mappings on the way."""
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: is not a mapping, cannot set {dotted}")
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` strings (``--set``) to a nested dict in place and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        key, text = item.split("=", 1)
        set_dotted(tree, key.strip(), parse_value(text))
    return tree


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *defaults' then overriding a key is how YAML merges are meant to be used
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: the constructor below reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def _safe_load_unique(text: str):
    """``yaml.safe_load`` (the same SafeLoader, so data only), refusing duplicate keys."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path) -> dict:
    """A YAML mapping from a file (``yaml.safe_load`` only); a syntax error names the line."""
    from pathlib import Path
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        data = _safe_load_unique(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def trial_config(values: dict | TrialConfig | None = None) -> TrialConfig:
    """Build and validate a TrialConfig from a nested dict (or pass one through).

    Example:
        >>> cfg = trial_config({"model": {"arch": "resnet18"}, "training": {"epochs": 2}})
        >>> cfg.training.epochs
        2
    """
    if isinstance(values, TrialConfig):
        return values
    cfg = build_section(TrialConfig, dict(values or {}), "")
    validate(cfg)
    return cfg


def validate(cfg: TrialConfig) -> None:
    """Range checks that types alone cannot express."""
    m, t, d = cfg.model, cfg.training, cfg.data
    if not 0.0 <= m.freeze_depth <= 1.0:
        raise ConfigError(f"model.freeze_depth: must be in [0, 1], got {m.freeze_depth}")
    if m.unfreeze_k < 0:
        raise ConfigError(f"model.unfreeze_k: must be >= 0, got {m.unfreeze_k}")
    if m.head_epochs < 0:
        raise ConfigError(f"model.head_epochs: must be >= 0, got {m.head_epochs}")
    if m.backbone_lr_mult <= 0:
        raise ConfigError(f"model.backbone_lr_mult: must be > 0, got {m.backbone_lr_mult}")
    for key, val, lo in (("training.epochs", t.epochs, 1), ("training.batch_size", t.batch_size, 1),
                         ("training.grad_accum", t.grad_accum, 1), ("training.checkpoint_every", t.checkpoint_every, 1)):
        if val < lo:
            raise ConfigError(f"{key}: must be >= {lo}, got {val}")
    if t.lr <= 0:
        raise ConfigError(f"training.lr: must be > 0, got {t.lr}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ConfigError(f"training.label_smoothing: must be in [0, 1), got {t.label_smoothing}")
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
    if not 0.0 <= d.test_fraction < 1.0 - d.val_fraction:
        raise ConfigError(f"data.test_fraction: must be in [0, 1 - val_fraction), got {d.test_fraction}")
    if d.samples_per_class is not None and d.samples_per_class < 1:
        raise ConfigError(f"data.samples_per_class: must be >= 1, got {d.samples_per_class}")
    if d.image_size is not None and d.image_size < 8:
        raise ConfigError(f"data.image_size: must be >= 8, got {d.image_size}")
    choices = {"data.on_bad_image": (d.on_bad_image, ON_BAD_IMAGE),
               "training.precision": (t.precision, PRECISIONS),
               "training.device": (t.device, DEVICES),
               "model.freeze_unit": (m.freeze_unit, ("stages", "params"))}
    for key, (val, allowed) in choices.items():
        if val not in allowed:
            raise ConfigError(f"{key}: {val!r} is not one of {', '.join(allowed)}{suggest(str(val), allowed)}")
    check_names(cfg)


def check_names(cfg: TrialConfig) -> None:
    """The task, and each name its trials read (data set, augmentation, optimizer, schedule, ...), is registered.

    Names only (``trainables.catalog``, ``trainables.tasks``): nothing imports torch. Models and freezing
    strategies are checked by the task's preflight.

    Example:
        >>> check_names(TrialConfig(training=TrainingConfig(optimizer="adamm")))
        Traceback (most recent call last):
        ...
        trainables.errors.ConfigError: training.optimizer: unknown name 'adamm' (did you mean: adam, adamw?)
    """
    from trainables.catalog import TRIAL_NAMES, for_task  # here, not at the top: a task module may import this one
    from trainables.tasks import TASKS
    TASKS.check(cfg.task)
    for registry in for_task(cfg.task):
        section, _, name = registry.key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if value not in registry:
            other = [r.task for r in TRIAL_NAMES if r.key == registry.key and r.task != registry.task and value in r]
            where = f"; {value!r} is a {other[0]} {registry.key} (task: {other[0]})" if other else ""
            raise ConfigError(f"{registry.unknown(value)}{where}")
