"""Hugging Face transformers image classifiers as ``hf:<model id>``: a hub id or a local folder with a config.json.

``weights: none`` builds the model from its config (``AutoModelForImageClassification.from_config``);
``weights: imagenet`` loads the pretrained weights with a fresh ``num_labels`` classifier; ``file:<path>`` builds
from the config and loads the backbone from a tlsweep checkpoint. Everything is read from the local Hugging Face
cache (``local_files_only``): a trial never downloads, so an id that is not cached fails at once, naming the
cache and how to fill it. The module is wrapped so that it maps images to logits like every other model.

Stages come from the model's structure, not from a table of architectures: the embeddings (everything before the
first block), one stage per block of the encoder's main ``nn.ModuleList`` (ViT layers, ConvNeXt / ResNet / Swin
stages), then the rest (final norm); the head is everything outside the base model (``classifier``).

Example:
    >>> import tempfile
    >>> from transformers import ViTConfig
    >>> from trainables.config import ModelConfig
    >>> folder = tempfile.mkdtemp()
    >>> ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...           intermediate_size=64).save_pretrained(folder)
    >>> b = build(ModelConfig(arch=f"hf:{folder}"), num_classes=3, image_size=None, mode="none")
    >>> len(b["stages"]), b["head"]
    (4, ['hf.classifier.weight', 'hf.classifier.bias'])
"""
from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from trainables.config import ModelConfig
from trainables.errors import ConfigError, WeightsError
from trainables.models.stages import modulelist_stages

PREFIX = "hf:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
NO_PREFIX_CACHE = ("hf: models run their own forward (not a chain of modules); only the head-input cache "
                   "(linear_probe) applies")


class HFClassifier(nn.Module):
    """A transformers ``*ForImageClassification`` model as images -> logits."""

    no_prefix_cache = NO_PREFIX_CACHE  # read by trainables.prefix_cache

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf
        size = getattr(hf.config, "image_size", None)
        self._size = tuple(size) if isinstance(size, (list, tuple)) else (size, size) if size else None
        self._interpolate = "interpolate_pos_encoding" in inspect.signature(hf.forward).parameters
        text = json.dumps(hf.config.to_dict(), sort_keys=True, default=str)
        import transformers
        # what the frozen-feature cache keys on besides the weights: the config decides the computation
        self.cache_key = f"transformers {transformers.__version__} {hashlib.sha256(text.encode()).hexdigest()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        if self._interpolate and self._size and tuple(x.shape[-2:]) != self._size:
            kwargs["interpolate_pos_encoding"] = True  # pretrained position embeddings at another image size
        return self.hf(pixel_values=x, **kwargs).logits


def model_id(arch: str) -> str:
    return arch[len(PREFIX):]


def local_folder(mid: str) -> Optional[Path]:
    p = Path(mid).expanduser()
    return p if mid and p.is_dir() else None


def check(arch: str) -> None:
    """A syntax check (no hub look-up): a folder holding config.json, or something shaped like a hub id."""
    mid = model_id(arch)
    folder = local_folder(mid)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model.arch: {arch}: folder {folder} has no config.json (save_pretrained writes one)")
        return
    if not HUB_ID.match(mid):
        where = f"; no folder {Path(mid).expanduser()}" if mid else ""
        raise ConfigError(f"model.arch: {arch!r}: expected hf:<hub id> (e.g. hf:google/vit-base-patch16-224) "
                          f"or hf:<folder with a config.json>{where}")


def cache_hint(mid: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE
    return (f"{mid} is not in the local Hugging Face cache ({HF_HUB_CACHE}); trials never download. Fill it on a "
            f"machine with internet: `huggingface-cli download {mid}` (or `hf download {mid}`), then copy the "
            f"cache here or point HF_HUB_CACHE / HF_HOME at it")


def _config(arch: str, num_classes: int, key: str):
    from transformers import AutoConfig
    mid = model_id(arch)
    try:
        config = AutoConfig.from_pretrained(mid, local_files_only=True)
    except OSError as e:
        if local_folder(mid) is not None:
            raise ConfigError(f"model.arch: {arch}: cannot read its config ({type(e).__name__}: {e})") from None
        raise ConfigError(f"{key}: {arch}: {cache_hint(mid)}") from None
    except ValueError as e:  # an unknown model_type
        raise ConfigError(f"model.arch: {arch}: {e}") from None
    config.num_labels = num_classes
    return config


def _preprocessing(mid: str) -> tuple[Optional[tuple], Optional[tuple]]:
    """(mean, std) from the model's preprocessor_config.json when a local copy exists, else (None, None)."""
    folder = local_folder(mid)
    if folder is not None:
        path = folder / "preprocessor_config.json"
        path = str(path) if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(mid, "preprocessor_config.json")
        path = found if isinstance(found, str) else None
    if path is None:
        return None, None
    try:
        pc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None, None
    mean, std = pc.get("image_mean"), pc.get("image_std")
    ok = lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(a, (int, float)) for a in v)  # noqa: E731
    return (tuple(mean), tuple(std)) if ok(mean) and ok(std) else (None, None)


def head_names(model: HFClassifier) -> list[str]:
    """Parameters outside the base model (the classifier); the last nn.Linear when the model has no base."""
    hf = model.hf
    base = getattr(hf, "base_model", hf)
    if base is not hf:
        inside = {id(p) for p in base.parameters()}
        head = [n for n, p in model.named_parameters() if id(p) not in inside]
        if head:
            return head
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"model.arch: no classifier found in {type(hf).__name__}")
    return [f"{linears[-1]}.{p}" for p, _ in model.get_submodule(linears[-1]).named_parameters()]


def build(cfg: ModelConfig, num_classes: int, image_size: Optional[int], mode: str) -> dict:
    """The parts of a ModelBundle for ``cfg.arch = 'hf:<id>'`` (``trainables.models`` assembles it)."""
    from transformers import AutoModelForImageClassification
    if cfg.drop_rate:
        raise ConfigError("model.drop_rate: applies to timm models; for hf: models set the dropout in the config")
    mid = model_id(cfg.arch)
    config = _config(cfg.arch, num_classes, "model.weights" if mode == "imagenet" else "model.arch")
    size = getattr(config, "image_size", None)
    input_size = int(size[-1] if isinstance(size, (list, tuple)) else size or 224)
    if mode == "imagenet":
        try:
            # config: the cached one with num_labels = the data's classes (a new classifier when that differs)
            hf = AutoModelForImageClassification.from_pretrained(mid, config=config, ignore_mismatched_sizes=True,
                                                                 local_files_only=True)
        except OSError as e:
            if local_folder(mid) is not None:
                raise WeightsError(f"model.weights: imagenet: no readable weights in {local_folder(mid)} "
                                   f"({type(e).__name__}: {e}); use weights: none or file:<path>") from None
            raise ConfigError(f"model.weights: imagenet weights of {cfg.arch}: {cache_hint(mid)}; "
                              f"or use weights: none / file:<path>") from None
        hf = hf.float()  # checkpoints stored in half precision load as such
    else:
        if image_size and size is not None:
            config.image_size = image_size  # position embeddings sized for the trial's images (as timm's img_size)
        try:
            hf = AutoModelForImageClassification.from_config(config)
        except ValueError as e:  # not an image classifier
            raise ConfigError(f"model.arch: {cfg.arch}: {e}") from None
    model = HFClassifier(hf)
    head = head_names(model)
    mean, std = _preprocessing(mid)
    return {"model": model, "head": head, "stages": modulelist_stages(model, head), "input_size": input_size,
            "mean": mean, "std": std}


def cached_models(pattern: str = "*") -> list[str]:
    """``hf:<id>`` for the image classifiers in the local Hugging Face cache (the hub itself is not listed)."""
    try:
        from huggingface_hub import scan_cache_dir
        repos = scan_cache_dir().repos
    except Exception:  # noqa: BLE001 - no cache folder yet, or an unreadable one: nothing cached
        return []
    names = []
    for repo in repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            config = next((f.file_path for f in rev.files if f.file_name == "config.json"), None)
            try:
                archs = json.loads(Path(config).read_text()).get("architectures") or [] if config else []
            except (OSError, ValueError):
                archs = []
            if any(str(a).endswith("ForImageClassification") for a in archs):
                names.append(f"{PREFIX}{repo.repo_id}")
                break
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))
