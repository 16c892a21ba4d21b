"""Which trial settings a trial actually reads: ``model.conv_layers`` only shapes ``scratch_cnn``, ``head_epochs``
only matters under ``two_phase``, ``momentum`` only with ``sgd``...

A study's results hold every setting of the study's trial tree, including those that do not apply to a given
trial (a study that sets ``model.conv_layers: 3`` and sweeps ``model.arch`` over ``resnet18`` and ``scratch_cnn``
stores ``conv_layers`` for its ResNet trials too). The report's "re-run the winner" command keeps only the settings
that apply, so that it reads as the trial's configuration. Plain Python: importing it imports no torch.

Example:
    >>> [applies("model.conv_layers", {"model.arch": a}) for a in ("resnet18", "scratch_cnn")]
    [False, True]
    >>> sorted(applicable({"model.arch": "resnet18", "model.strategy": "full", "model.head_epochs": 2}))
    ['model.arch', 'model.strategy']
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from trainables.config import ModelConfig, TrainingConfig

# the from-scratch CNNs (trainables.models.scratch.LOCAL_MODELS; a test checks the two agree)
LOCAL_ARCHS = ("scratch_cnn", "baseline_cnn")
SCRATCH_CNN_FIELDS = ("conv_layers", "first_layer_filters", "filter_org", "kernel_size", "activation",
                      "batch_norm", "dense_units")
HF_PREFIX, TV_PREFIX = "hf:", "tv:"

Values = Mapping[str, Any]   # dotted keys -> values, e.g. {"model.arch": "resnet18", ...}


def _get(values: Values, key: str, default: Any) -> Any:
    value = values.get(key, default)
    return default if value is None else value


def _arch(values: Values) -> str:
    return str(_get(values, "model.arch", ModelConfig.arch))


def _strategy_in(*names: str) -> Callable[[Values], bool]:
    return lambda v: _get(v, "model.strategy", ModelConfig.strategy) in names


def _optimizer_in(*names: str) -> Callable[[Values], bool]:
    return lambda v: _get(v, "training.optimizer", TrainingConfig.optimizer) in names


def _schedule_in(*names: str) -> Callable[[Values], bool]:
    return lambda v: _get(v, "training.scheduler", TrainingConfig.scheduler) in names


def _segmentation(values: Values) -> bool:
    return _get(values, "task", "classification") == "segmentation"


def _timm(values: Values) -> bool:
    arch = _arch(values)
    return arch not in LOCAL_ARCHS and not arch.startswith((HF_PREFIX, TV_PREFIX))


# key -> when it applies; keys not listed apply to every trial. Reads trainables.freezing (which strategy reads
# which field), trainables.models (which builder reads which), trainables.optim (optimizers and schedules).
CONDITIONS: dict[str, Callable[[Values], bool]] = {
    **{f"model.{name}": (lambda v: _arch(v) == "scratch_cnn") for name in SCRATCH_CNN_FIELDS},
    "model.dropout": lambda v: _arch(v) in LOCAL_ARCHS,       # the from-scratch CNNs' dropout
    "model.drop_rate": _timm,                                 # timm's dropout before the classifier
    "model.freeze_depth": _strategy_in("partial", "two_phase"),
    "model.freeze_unit": _strategy_in("partial", "two_phase"),
    "model.unfreeze_k": _strategy_in("unfreeze_last_k"),
    "model.head_epochs": _strategy_in("two_phase"),
    "model.backbone_lr_mult": _strategy_in("two_phase"),
    "model.decoder": _segmentation,
    "model.decoder_width": _segmentation,
    "data.ignore_index": _segmentation,
    "data.num_classes": _segmentation,
    "data.sample_images": _segmentation,
    "training.loss": _segmentation,
    "training.momentum": _optimizer_in("sgd"),
    "training.warmup_epochs": _schedule_in("cosine"),
    "training.step_size": _schedule_in("step"),
    "training.gamma": _schedule_in("step", "plateau"),
}


def applies(key: str, values: Values) -> bool:
    """Whether the trial whose settings are ``values`` (dotted keys) reads ``key``."""
    when = CONDITIONS.get(key)
    return True if when is None else bool(when(values))


def applicable(values: Values) -> dict:
    """``values`` without the settings that do not apply to that trial (order kept)."""
    return {k: v for k, v in values.items() if applies(k, values)}
