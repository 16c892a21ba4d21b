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


def modulelist_stages(model: nn.Module, head: list[str]) -> list[list[str]]:
    """Stages of a model whose blocks sit in ``nn.ModuleList`` s (transformers' encoders): everything registered
    before the first block (embeddings), one stage per block of the main list, then everything else (final norm).

    The main list is the outermost ``nn.ModuleList`` holding the most parameters; other outermost lists of the same
    length run in step with it (PVT-style ``patch_embeddings[i]``, ``block[i]``, ``norm[i]``) and join its stages.
    Without any list, the top-level children (:func:`children_stages`).
    """
    head_set = set(head)
    lists: list[tuple[str, nn.ModuleList]] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) and not any(name.startswith(f"{o}.") for o, _ in lists):
            lists.append((name, m))
    lists = [(n, m) for n, m in lists if any(True for _ in m.parameters())]
    if not lists:
        return children_stages(model, head)
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    main_len = len(max(lists, key=lambda nm: size(nm[1]))[1])
    block_of: dict[str, int] = {}
    for name, m in lists:
        if len(m) == main_len:
            for i, block in enumerate(m):
                for p, _ in block.named_parameters():
                    block_of.setdefault(f"{name}.{i}.{p}", i)
    order = [n for n, _ in model.named_parameters() if n not in head_set]
    first = min(k for k, n in enumerate(order) if n in block_of)
    before = [n for n in order[:first] if n not in block_of]
    blocks: list[list[str]] = [[] for _ in range(main_len)]
    rest = []
    for n in order[first:]:
        (blocks[block_of[n]] if n in block_of else rest).append(n)
    return [s for s in [before, *blocks, rest] if s]
