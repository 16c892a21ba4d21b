"""Where pretrained weights come from: library caches (offline-safe checks) and ``file:`` checkpoints.

Weights are never unpickled as arbitrary objects: ``torch.load(weights_only=True)`` or safetensors.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from trainables.errors import WeightsError


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def check_timm_cache(arch: str) -> None:
    """Fail fast (no minute of retries) when timm weights are not cached and the hub is offline."""
    import timm
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        raise WeightsError(f"model.weights: timm has no pretrained weights for {arch!r}")
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id and hf_offline():
        from trainables.model_names import imagenet_weights_error
        why = imagenet_weights_error(arch, hub_id)
        if why:
            raise WeightsError(why)


def fetch_torchvision_weights(weights) -> dict:
    """Load torchvision weights from torch hub's cache, downloading on first use; a clear error offline."""
    fname = Path(weights.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # URLError, OSError, ... when offline and not cached
        raise WeightsError(f"model.weights: cannot load torchvision weights {fname} (not in {cached.parent} "
                           f"and download failed: {type(e).__name__}: {e})") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a plain state dict or a tlsweep checkpoint (its full ``model`` weights)."""
    p = Path(path).expanduser()
    if not p.is_file():  # on a cluster: read where the trial runs, so the path must exist on every node
        raise WeightsError(f"model.weights: file {p} does not exist on {socket.gethostname()} (on a cluster, put "
                           f"file: weights on a folder every node mounts at the same path: docs/CLUSTER.md)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"model.weights: {p} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        from trainables.checkpoint_delta import checkpoint_weights  # a delta checkpoint: over its rebuilt base
        try:
            state = checkpoint_weights(state, str(p))
        except (ValueError, OSError) as e:
            raise WeightsError(f"model.weights: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"model.weights: {p} does not hold a state dict of tensors")
    return state


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], head: list[str], source: str) -> None:
    """Load every non-head tensor of ``state`` into ``model``; mismatches name the keys."""
    own = model.state_dict()
    head_set = set(head)
    is_head = lambda k: k in head_set  # noqa: E731
    src = {k: v for k, v in state.items() if not is_head(k)}
    missing = [k for k in own if not is_head(k) and k not in src]
    unexpected = [k for k in src if k not in own]
    shape = [k for k in src if k in own and own[k].shape != src[k].shape]
    if missing or unexpected or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})")
        raise WeightsError(f"model.weights: {source} does not fit this architecture ({'; '.join(parts)})")
    model.load_state_dict(src, strict=False)
