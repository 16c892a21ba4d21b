"""SegFormer (``model.decoder: segformer``) from transformers, with a Mix Transformer encoder ``model.arch``
``mit_b0`` .. ``mit_b5``.

``weights: imagenet`` loads the ImageNet-pretrained encoder ``nvidia/mit-b<n>`` from the Hugging Face cache (the
all-MLP decode head starts fresh). The cache is checked first: offline and not cached is a WeightsError at once,
never a hub lookup. ``weights: none`` builds the same architecture from a ``SegformerConfig``, offline.
Stages: the four encoder blocks (patch embedding, transformer blocks, norm); head: ``decode_head``.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError, WeightsError, suggest
from trainables.models import IMAGENET_MEAN, IMAGENET_STD

# hidden sizes, depths, decoder width (the SegFormer paper's Table 1 / the nvidia/mit-b* configs)
VARIANTS = {
    "mit_b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256),
    "mit_b1": ([64, 128, 320, 512], [2, 2, 2, 2], 256),
    "mit_b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768),
    "mit_b3": ([64, 128, 320, 512], [3, 4, 18, 3], 768),
    "mit_b4": ([64, 128, 320, 512], [3, 8, 27, 3], 768),
    "mit_b5": ([64, 128, 320, 512], [3, 6, 40, 3], 768),
}
INPUT_SIZE = 512
_STAGE = re.compile(r"(?:^|\.)(?:stages|block|patch_embeddings|layer_norm)\.(\d+)\.")


class SegformerNet(nn.Module):
    """``SegformerForSemanticSegmentation`` returning logits [B, C, H, W] upsampled to the input size."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def check_variant(arch: str) -> None:
    if arch not in VARIANTS:
        raise ConfigError(f"model.arch: the segformer decoder needs a Mix Transformer encoder "
                          f"({', '.join(VARIANTS)}), got {arch!r}{suggest(arch, VARIANTS)}")


def hub_id(arch: str) -> str:
    return "nvidia/" + arch.replace("_", "-")


def _offline() -> bool:
    return any(os.environ.get(k, "0").lower() in ("1", "true", "yes")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached(repo: str) -> bool:
    """Whether the config and a weights file of ``repo`` are in the Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache
    has = lambda f: isinstance(try_to_load_from_cache(repo, f), str)  # noqa: E731
    return has("config.json") and (has("model.safetensors") or has("pytorch_model.bin"))


def segformer_config(arch: str, num_classes: int, overrides: Optional[dict] = None):
    from transformers import SegformerConfig
    hidden, depths, decoder = VARIANTS[arch]
    kwargs = {"hidden_sizes": hidden, "depths": depths, "decoder_hidden_size": decoder, "num_labels": num_classes,
              "semantic_loss_ignore_index": 255}
    kwargs.update(overrides or {})
    return SegformerConfig(**kwargs)


def build_segformer_net(arch: str, num_classes: int, mode: str, overrides: Optional[dict] = None) -> SegformerNet:
    """The network with ``none`` or ``imagenet`` weights; ``overrides`` change ``SegformerConfig`` fields (tests
    build tiny ones: ``{"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1], ...}``)."""
    from transformers import SegformerForSemanticSegmentation
    check_variant(arch)
    if mode != "imagenet":
        return SegformerNet(SegformerForSemanticSegmentation(segformer_config(arch, num_classes, overrides)))
    repo = hub_id(arch)
    local = cached(repo)
    if not local and _offline():
        raise WeightsError(f"model.weights: imagenet weights of {arch} ({repo}) are not in the Hugging Face cache and "
                           f"the hub is offline (HF_HUB_OFFLINE=1); download them once with network access "
                           f"(SegformerForSemanticSegmentation.from_pretrained({repo!r})) or use weights: none")
    try:
        net = SegformerForSemanticSegmentation.from_pretrained(repo, num_labels=num_classes, local_files_only=local,
                                                               **(overrides or {}))
    except Exception as e:
        raise WeightsError(f"model.weights: cannot load {repo}: {type(e).__name__}: {e}") from None
    return SegformerNet(net)


def segformer_parts(model: SegformerNet) -> tuple[list[str], list[list[str]]]:
    """(head parameter names, encoder parameter names by stage) of a :class:`SegformerNet`."""
    head, stages = [], {}
    for name, _ in model.named_parameters():
        if name.startswith("net.decode_head."):
            head.append(name)
            continue
        m = _STAGE.search(name)
        stages.setdefault(int(m.group(1)) if m else -1, []).append(name)
    return head, [stages[k] for k in sorted(stages)]


def encoder_of(model: SegformerNet) -> nn.Module:
    return model.net.segformer


__all__ = ["INPUT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "SegformerNet", "VARIANTS", "build_segformer_net",
           "check_variant", "encoder_of", "segformer_parts"]
