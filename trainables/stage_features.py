"""Globally average-pooled features at every backbone stage boundary ``model.freeze_depth`` can select, as a hint
for how deep to freeze (``tlsweep rank --stages``).

The stages are the model's freezing stages (:class:`trainables.models.ModelBundle` ``stages``, lists of parameter
names). Stage k's output is the output of the last module of stage k the forward calls (the outermost modules whose
parameters all belong to stage k, hooked); it is pooled over the spatial positions (N x C x H x W) or the tokens
(N x L x C; N x H x W x C for timm modules whose ``output_fmt`` says so). ``freeze_depth`` is the depth that freezes exactly the first k stages under the trial's
``model.freeze_unit``: k / n by stages, the first k stages' share of the backbone's parameters by ``params``.
Depth 0 (nothing frozen) has no row. Eval mode, no grad, the target's training split, the same model, weights and
preprocessing as :func:`trainables.transfer_features.frozen_features`; nothing is cached.

Example:
    >>> fs = stage_features({"data": {"name": "digits", "image_size": 16, "samples_per_class": 5},
    ...                      "model": {"arch": "scratch_cnn", "conv_layers": 2, "dense_units": 16}})
    >>> [(f.stage, f.freeze_depth, f.features.shape) for f in fs][:2]
    [(1, 0.3333333333333333, (50, 32)), (2, 0.6666666666666666, (50, 32))]
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from trainables.config import trial_config
from trainables.feature_cache import run_over
from trainables.freezing import stage_sizes


@dataclass
class StageFeatures:
    stage: int              # stages frozen at this depth (1..n)
    freeze_depth: float     # the model.freeze_depth that freezes exactly those stages
    module: str             # the module whose output was taken
    features: np.ndarray    # n x C, float32
    labels: np.ndarray      # n


def stage_modules(model: nn.Module, stages: list[list[str]]) -> list[list[tuple[str, nn.Module]]]:
    """Per stage, the outermost modules whose (non-empty) parameters all belong to it."""
    owner = {name: k for k, stage in enumerate(stages) for name in stage}
    out: list[list[tuple[str, nn.Module]]] = [[] for _ in stages]
    taken: list[str] = []
    for name, m in model.named_modules():
        if not name or any(name.startswith(f"{t}.") for t in taken):
            continue
        params = [f"{name}.{p}" for p, _ in m.named_parameters()]
        ks = {owner.get(p) for p in params}
        if params and len(ks) == 1 and None not in ks:
            out[ks.pop()].append((name, m))
            taken.append(name)
    return out


def pooled(out: object, channels_last: bool = False) -> torch.Tensor:
    """One tensor of an output, averaged over its positions: N x C (``channels_last``: N x H x W x C)."""
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    out = getattr(out, "last_hidden_state", out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"a stage returned {type(out).__name__}, not a tensor")
    out = out.float()
    if out.dim() == 4:
        return out.mean((1, 2)) if channels_last else out.mean((2, 3))
    return out.mean(1) if out.dim() == 3 else out.flatten(1)


def _nhwc(m: nn.Module) -> bool:
    """timm modules that say they return N x H x W x C (``output_fmt``, e.g. a ViT's dynamic-size patch embedding)."""
    return str(getattr(m, "output_fmt", "")).upper().endswith("NHWC")


def depths(sizes: list[int], unit: str) -> list[float]:
    """The freeze_depth freezing exactly the first k stages, k = 1..n (``sizes``: parameters per stage)."""
    n, total = len(sizes), sum(sizes)
    if unit == "params" and total:
        return [sum(sizes[:k]) / total for k in range(1, n + 1)]
    return [k / n for k in range(1, n + 1)]


def stage_features(trial: dict, split: str = "train", log: Callable[[str], None] = lambda line: None
                   ) -> list[StageFeatures]:
    """Pooled features of ``split`` at each stage boundary (stages the forward never reaches are left out)."""
    from trainables.classification import Trainer
    cfg = trial_config(copy.deepcopy(trial))
    trainer = Trainer(cfg)
    bundle, model, pre = trainer.bundle, trainer.model, trainer.task.pre
    model.eval()
    mods = stage_modules(model, bundle.stages)
    last: dict[int, tuple[str, torch.Tensor]] = {}

    def hook(k: int, name: str, nhwc: bool):
        return lambda _m, _args, out: last.__setitem__(k, (name, pooled(out, nhwc)))
    hooks = [m.register_forward_hook(hook(k, name, _nhwc(m))) for k, group in enumerate(mods) for name, m in group]
    seen: dict[int, str] = {}

    def run(x: torch.Tensor) -> torch.Tensor:
        last.clear()
        model(x)
        seen.update({k: name for k, (name, _) in last.items()})
        return torch.cat([last[k][1] for k in sorted(last)], 1)
    data = trainer.data.splits[split]
    log(f"rank {cfg.model.arch}: stage features of the {split} split ({len(data)} images, {len(mods)} stages)")
    try:
        feats = run_over(run, data, pre, trainer._autocast, cfg.data.num_workers, "stage features")
    finally:
        for h in hooks:
            h.remove()
    labels = data.labels.cpu().numpy()
    at = depths(stage_sizes(bundle), cfg.model.freeze_unit)
    out, start = [], 0
    for k in sorted(seen):
        width = int(last[k][1].shape[1])
        out.append(StageFeatures(k + 1, at[k], seen[k], feats[:, start:start + width].numpy(), labels))
        start += width
    return out


__all__ = ["StageFeatures", "depths", "pooled", "stage_features", "stage_modules"]
