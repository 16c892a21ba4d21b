"""Ordered backbone stages (lists of parameter names), the unit every freezing strategy works on."""
from __future__ import annotations

from torch import nn


def param_names_of(model: nn.Module, sub: nn.Module) -> list[str]:
    ids = {id(p) for p in sub.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def matcher_stages(model: nn.Module, head: list[str]) -> list[list[str]]:
    """Stages from timm's coarse ``group_matcher`` (stem, blocks..., then the unmatched tail), head removed."""
    from timm.models import group_parameters
    groups = group_parameters(model, model.group_matcher(coarse=True))
    head_set = set(head)
    stages = [[n for n in names if n not in head_set] for _, names in sorted(groups.items())]
    return [s for s in stages if s]


def children_stages(model: nn.Module, head: list[str]) -> list[list[str]]:
    """Stages for models without a group matcher (torchvision): the top-level children in order,
    with ``nn.Sequential`` children (``features``, ``layer1``...) split into their own children."""
    head_set = set(head)
    stages: list[list[str]] = []
    for name, child in model.named_children():
        parts = child.named_children() if isinstance(child, nn.Sequential) else [("", child)]
        for sub_name, sub in parts:
            prefix = f"{name}.{sub_name}" if sub_name else name
            names = [f"{prefix}.{n}" for n, _ in sub.named_parameters()]
            names = [n for n in names if n not in head_set]
            if names:
                stages.append(names)
    covered = {n for s in stages for n in s} | head_set
    rest = [n for n, _ in model.named_parameters() if n not in covered]  # direct parameters (e.g. cls tokens)
    return ([rest] if rest else []) + stages
