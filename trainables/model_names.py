"""The names ``model.arch`` and ``model.strategy`` accept, and where each model's pretrained weights live, read
without importing torch, timm or torchvision.

The registries themselves (timm's, torchvision's, :data:`trainables.models.scratch.LOCAL_MODELS`,
:data:`trainables.freezing.STRATEGIES`) need torch, whose import alone takes seconds. So the first check builds a
small index from them and keeps it in ``$TLSWEEP_CACHE`` (``~/.cache/tlsweep``), keyed by the installed timm and
torchvision versions and the files that define the local names; later checks (``tlsweep run`` before Ray starts)
read the index in milliseconds. Nothing here is a list written by hand: a stale or unreadable index is rebuilt.

Example:
    >>> idx = index()
    >>> "resnet18" in idx["models"], "tv:resnet18" in idx["models"], "full" in idx["strategies"]
    (True, True, True)
"""
from __future__ import annotations

import importlib.metadata
import json
import os
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the files whose names the index copies (their modification times are part of its key)
SOURCES = (HERE / "models" / "scratch.py", HERE / "freezing.py")
FORMAT = 1


def cache_path() -> Path:
    """``$TLSWEEP_CACHE/model-names-<key>.json`` (default ``~/.cache/tlsweep``)."""
    return Path(os.environ.get("TLSWEEP_CACHE", Path.home() / ".cache" / "tlsweep")).expanduser() / \
        f"model-names-{_key()}.json"


def _key() -> str:
    import hashlib
    parts = [str(FORMAT)]
    for dist in ("timm", "torchvision"):
        try:
            parts.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            parts.append("-")
    parts += [str(p.stat().st_mtime_ns) if p.exists() else "-" for p in SOURCES]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]


def build() -> dict:
    """The index, from the registries themselves (imports torch, timm and torchvision: seconds)."""
    import timm
    import torchvision

    from trainables.freezing import STRATEGIES
    from trainables.models import scratch
    timm_names = timm.list_models()
    hub, pretrained = {}, []
    for name in timm_names:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            continue
        pretrained.append(name)
        if getattr(cfg, "hf_hub_id", None):
            hub[name] = cfg.hf_hub_id.split("@")[0]
    tv_weights = {}
    tv_names = torchvision.models.list_models(module=torchvision.models)
    for name in tv_names:
        try:
            tv_weights[f"tv:{name}"] = Path(torchvision.models.get_model_weights(name).DEFAULT.url).name
        except Exception:  # noqa: BLE001 - a model without weights: imagenet is refused when it is built
            pass
    return {"models": list(scratch.LOCAL_MODELS) + [f"tv:{n}" for n in tv_names] + timm_names,
            "local": list(scratch.LOCAL_MODELS), "timm_pretrained": pretrained, "timm_hub": hub,
            "tv_weights": tv_weights, "strategies": STRATEGIES.names()}


@lru_cache(maxsize=1)
def index() -> dict:
    """The index: read from the cache, else built and written there (best effort: a read-only cache is fine)."""
    path = cache_path()
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            return data
    except (OSError, ValueError):
        pass
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError:
        pass
    return data


def imagenet_weights_error(arch: str, hub_id: "str | None" = None) -> "str | None":
    """Why ``weights: imagenet`` cannot load for timm model ``arch`` offline (``HF_HUB_OFFLINE=1``), naming the
    cache looked in and how to fill it; None when they are cached, the hub is online, or ``arch`` is not timm's.
    ``hub_id``: the model's Hugging Face repository (default: from the index)."""
    idx = index()
    if arch in idx["local"] or arch.startswith(("tv:", "hf:")) or arch not in idx["models"]:
        return None
    if hub_id is None and arch not in idx["timm_pretrained"]:
        return f"model.weights: timm has no pretrained weights for {arch!r}"
    repo = (hub_id or idx["timm_hub"].get(arch) or "").split("@")[0]
    if not repo or os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        return None
    from huggingface_hub import constants, try_to_load_from_cache
    for fname in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, fname), str):
            return None
    return (f"model.weights: imagenet weights for {arch!r} are not cached and the hub is offline "
            f"(HF_HUB_OFFLINE=1): not in {constants.HF_HUB_CACHE}; fill it once with network access "
            f"(huggingface-cli download {repo}, or timm.create_model({arch!r}, pretrained=True)), "
            f"or use weights: none / file:<path>")
