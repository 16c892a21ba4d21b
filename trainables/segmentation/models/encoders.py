"""Encoders for the CNN decoders: any hierarchical timm model (``model.arch``), or the project's from-scratch CNNs.

A timm encoder is the classification model itself with its head pruned (``prune_intermediate_layers``), read
through ``forward_intermediates``: its parameter names stay those of the classifier, so a classification
checkpoint of this project (``weights: file:...`` or the orchestrator's pretrain stage) loads into it by name, and
its stages are timm's ``group_matcher`` stages, the same ones the classification freezing strategies use.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from trainables.config import ModelConfig
from trainables.errors import ConfigError, WeightsError, suggest
from trainables.models import IMAGENET_MEAN, IMAGENET_STD, scratch, weights
from trainables.models.stages import children_stages, matcher_stages


@dataclass
class Encoder:
    module: nn.Module           # has forward_intermediates(x, indices, intermediates_only=True) -> [features]
    channels: list[int]         # of each feature map, input side first
    reductions: list[int]       # stride of each feature map
    stages: list[list[str]]     # parameter names (relative to module) by stage, input side first
    input_size: int
    mean: tuple
    std: tuple


class ScratchEncoder(nn.Module):
    """The conv blocks of ``scratch_cnn`` / ``baseline_cnn`` (each halves the size) as a feature pyramid."""

    def __init__(self, blocks: nn.Sequential):
        super().__init__()
        self.blocks = blocks  # the name the classification checkpoint uses: blocks.<i>.*

    def forward_intermediates(self, x: torch.Tensor, indices: list[int],
                              intermediates_only: bool = True) -> list[torch.Tensor]:
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in indices:
                out.append(x)
        return out


def check_encoder(arch: str) -> None:
    """Raise ConfigError (with close names) unless ``arch`` is a timm model or a from-scratch CNN."""
    import timm
    if arch in scratch.LOCAL_MODELS or timm.is_model(arch):
        return
    if arch.startswith("tv:"):
        raise ConfigError(f"model.arch: torchvision models ({arch}) cannot be segmentation encoders here; "
                          f"use a timm model (e.g. {arch[3:]}) or scratch_cnn")
    choices = list(scratch.LOCAL_MODELS) + timm.list_models()
    raise ConfigError(f"model.arch: unknown encoder {arch!r}{suggest(arch, choices)}")


def _scratch_encoder(cfg: ModelConfig, mode: str) -> Encoder:
    if mode == "imagenet":
        raise ConfigError(f"model.weights: {cfg.arch} trains from scratch; use none or file:<path>")
    cnn = scratch.LOCAL_MODELS[cfg.arch](cfg, 1)
    module = ScratchEncoder(cnn.blocks)
    channels = [next(m for m in block if isinstance(m, nn.Conv2d)).out_channels for block in cnn.blocks]
    stages = [[f"blocks.{i}.{n}" for n, _ in block.named_parameters()] for i, block in enumerate(cnn.blocks)]
    return Encoder(module, channels, [2 ** (i + 1) for i in range(len(channels))], stages, 32,
                   (0.5,) * 3, (0.25,) * 3)


def _timm_encoder(cfg: ModelConfig, mode: str) -> Encoder:
    import timm
    if mode == "imagenet":
        weights.check_timm_cache(cfg.arch)
        try:
            model = timm.create_model(cfg.arch, pretrained=True)
        except Exception as e:
            raise WeightsError(f"model.weights: cannot load imagenet weights for {cfg.arch}: "
                               f"{type(e).__name__}: {e}") from None
    else:
        model = timm.create_model(cfg.arch, pretrained=False)
    info = getattr(model, "feature_info", None)
    if not info or not hasattr(model, "forward_intermediates"):
        raise ConfigError(f"model.arch: {cfg.arch} has no feature pyramid in timm (forward_intermediates); "
                          f"pick a CNN encoder such as resnet18 or mobilenetv2_100")
    indices = list(range(len(info)))
    model.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
    stages = matcher_stages(model, []) if hasattr(model, "group_matcher") else children_stages(model, [])
    pc = model.pretrained_cfg or {}
    return Encoder(model, [int(f["num_chs"]) for f in info], [int(f["reduction"]) for f in info], stages,
                   int(pc.get("input_size", (3, 224, 224))[-1]), tuple(pc.get("mean", IMAGENET_MEAN)),
                   tuple(pc.get("std", IMAGENET_STD)))


def build_encoder(cfg: ModelConfig, mode: str) -> Encoder:
    """The encoder ``cfg.arch`` with ``none`` or ``imagenet`` weights (``file:`` weights load later, by name)."""
    check_encoder(cfg.arch)
    return _scratch_encoder(cfg, mode) if cfg.arch in scratch.LOCAL_MODELS else _timm_encoder(cfg, mode)


def _prefix(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> str | None:
    """The key prefix under which ``state`` holds the most of ``own``'s keys ('' for a classification
    checkpoint, 'encoder.' for a segmentation one, 'segformer.' for a Hugging Face SegFormer...)."""
    counts: Counter = Counter()
    for key in state:
        parts = key.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in own:
                counts[".".join(parts[:i]) + ("." if i else "")] += 1
                break
    return counts.most_common(1)[0][0] if counts else None


def load_encoder(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of ``module`` from ``state`` (keys matched by name under a common prefix; the source's
    classifier and decoder are left out); missing keys and shape mismatches raise WeightsError naming them."""
    own = module.state_dict()
    prefix = _prefix(state, own)
    if prefix is None:
        theirs, ours = ", ".join(list(state)[:4]), ", ".join(list(own)[:4])
        raise WeightsError(f"model.weights: {source} holds none of this encoder's tensors (its keys: {theirs} ...; "
                           f"the encoder's: {ours} ...)")
    src = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
    missing = [k for k in own if k not in src]
    shape = [f"{k} {tuple(src[k].shape)} vs {tuple(own[k].shape)}" for k in src if src[k].shape != own[k].shape]
    if missing or shape:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                 for label, keys in (("missing", missing), ("shape mismatch", shape)) if keys]
        raise WeightsError(f"model.weights: {source} does not fit encoder {type(module).__name__} "
                           f"({'; '.join(parts)})")
    module.load_state_dict(src)
