"""Freezing strategies by name, the same for every architecture: they only see the ordered stages.

A strategy returns a :class:`Plan` for an epoch: which parameters train and their learning-rate multipliers.
``freeze_depth`` counts stages (``freeze_unit: stages``, the default) or the backbone's parameters
(``freeze_unit: params``, comparable across architectures); :func:`frozen_fraction` says what a plan freezes.
``two_phase`` changes plan at ``head_epochs``; the training loop rebuilds the optimizer when the phase changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from trainables.config import ModelConfig
from trainables.models import ModelBundle
from trainables.registry import Registry

STRATEGIES: Registry = Registry("model.strategy")


@dataclass
class Plan:
    trainable: set[str]
    lr_mult: dict[str, float] = field(default_factory=dict)  # parameter name -> multiplier (default 1.0)
    phase: int = 0


def frozen_stage_count(depth: float, n_stages: int) -> int:
    """Stages frozen at ``freeze_depth``: the first floor(depth x n), so 0.5 freezes the first half."""
    return int(math.floor(depth * n_stages + 1e-9))


def stage_sizes(bundle: ModelBundle) -> list[int]:
    """Parameters (numel) per backbone stage."""
    params = dict(bundle.model.named_parameters())
    return [sum(params[n].numel() for n in stage if n in params) for stage in bundle.stages]


def frozen_stages(bundle: ModelBundle, cfg: ModelConfig) -> int:
    """Leading stages ``partial`` freezes: by ``freeze_unit: stages`` the first floor(depth x n); by ``params`` the
    prefix whose share of the backbone's parameters is nearest ``freeze_depth`` (ties: the shorter prefix).

    Example:
        >>> from trainables.models import build_model
        >>> b = build_model(ModelConfig(arch="resnet18"), num_classes=2)
        >>> frozen_stages(b, ModelConfig(freeze_depth=0.5)), frozen_stages(b, ModelConfig(freeze_depth=0.5,
        ...                                                                          freeze_unit="params"))
        (2, 4)
    """
    if cfg.freeze_unit != "params":
        return frozen_stage_count(cfg.freeze_depth, len(bundle.stages))
    sizes = stage_sizes(bundle)
    total = sum(sizes)
    if not total:
        return frozen_stage_count(cfg.freeze_depth, len(bundle.stages))
    shares = [sum(sizes[:k]) / total for k in range(len(sizes) + 1)]
    return min(range(len(shares)), key=lambda k: (abs(shares[k] - cfg.freeze_depth), k))


def frozen_fraction(bundle: ModelBundle, plan: Plan) -> float:
    """The fraction of the backbone's parameters (the head excluded, counted by numel) that ``plan`` freezes.

    Example:
        >>> from trainables.models import build_model
        >>> b = build_model(ModelConfig(arch="resnet18"), num_classes=2)
        >>> frozen_fraction(b, linear_probe(b, ModelConfig(), 0)), frozen_fraction(b, full(b, ModelConfig(), 0))
        (1.0, 0.0)
    """
    head = set(bundle.head)
    total = frozen = 0
    for name, p in bundle.model.named_parameters():
        if name in head:
            continue
        total += p.numel()
        if name not in plan.trainable:
            frozen += p.numel()
    return frozen / total if total else 0.0


def _train_from(bundle: ModelBundle, first: int) -> set[str]:
    return set(bundle.head) | {n for stage in bundle.stages[first:] for n in stage}


@STRATEGIES.register("full")
def full(bundle: ModelBundle, cfg: ModelConfig, epoch: int) -> Plan:
    return Plan(_train_from(bundle, 0))


@STRATEGIES.register("linear_probe")
def linear_probe(bundle: ModelBundle, cfg: ModelConfig, epoch: int) -> Plan:
    return Plan(set(bundle.head))


@STRATEGIES.register("partial")
def partial(bundle: ModelBundle, cfg: ModelConfig, epoch: int) -> Plan:
    return Plan(_train_from(bundle, frozen_stages(bundle, cfg)))


@STRATEGIES.register("unfreeze_last_k")
def unfreeze_last_k(bundle: ModelBundle, cfg: ModelConfig, epoch: int) -> Plan:
    return Plan(_train_from(bundle, max(0, len(bundle.stages) - cfg.unfreeze_k)))


@STRATEGIES.register("two_phase")
def two_phase(bundle: ModelBundle, cfg: ModelConfig, epoch: int) -> Plan:
    if epoch < cfg.head_epochs:
        return Plan(set(bundle.head), phase=0)
    plan = partial(bundle, cfg, epoch)
    head = set(bundle.head)
    plan.lr_mult = {n: cfg.backbone_lr_mult for n in plan.trainable if n not in head}
    plan.phase = 1
    return plan


def apply_plan(model: nn.Module, plan: Plan) -> list[nn.Module]:
    """Set ``requires_grad`` from the plan; return the BatchNorm layers that are now frozen."""
    for name, p in model.named_parameters():
        p.requires_grad_(name in plan.trainable)
    frozen_bn = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                frozen_bn.append(m)
    return frozen_bn


def set_train_mode(model: nn.Module, frozen_bn: list[nn.Module]) -> None:
    """``model.train()`` but frozen BatchNorm layers stay in eval mode (their running stats do not move)."""
    model.train()
    for m in frozen_bn:
        m.eval()


def param_groups(model: nn.Module, plan: Plan, lr: float) -> list[dict]:
    """Optimizer groups of trainable parameters only (frozen ones get no optimizer state), one per lr."""
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if name in plan.trainable:
            groups.setdefault(plan.lr_mult.get(name, 1.0), []).append(p)
    return [{"params": ps, "lr": lr * mult, "lr_mult": mult} for mult, ps in sorted(groups.items(), reverse=True)]
