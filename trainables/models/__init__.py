"""Models by name: any timm model, torchvision models as ``tv:<name>``, Hugging Face transformers image
classifiers as ``hf:<hub id or folder>`` (:mod:`trainables.models.hf`), and the from-scratch CNNs.

``build_model`` returns a :class:`ModelBundle`: the module plus its head and its ordered backbone stages
(lists of parameter names, input to output), which is all that freezing strategies need to know.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from trainables.config import ModelConfig
from trainables.errors import ConfigError, suggest
from trainables.models import hf, scratch, weights
from trainables.models.stages import children_stages, matcher_stages, param_names_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelBundle:
    model: nn.Module
    head: list[str]            # parameter names of the (new) classifier
    stages: list[list[str]]    # backbone parameter names by stage, input side first
    input_size: int            # the architecture's pretrained input size
    mean: tuple
    std: tuple
    arch: str


@lru_cache(maxsize=1)
def _tv_names() -> tuple[str, ...]:
    import torchvision
    return tuple(torchvision.models.list_models(module=torchvision.models))


def list_models(pattern: str = "*") -> list[str]:
    """Names ``model.arch`` accepts: local CNNs, ``tv:<name>``, timm's models matching ``pattern``, and the
    ``hf:<id>`` image classifiers already in the local Hugging Face cache. Any other ``hf:<hub id>`` (or
    ``hf:<folder with a config.json>``) is accepted too, but the hub cannot be listed offline."""
    import fnmatch

    import timm
    local = [n for n in scratch.LOCAL_MODELS if fnmatch.fnmatch(n, pattern)]
    tv = [f"tv:{n}" for n in _tv_names() if fnmatch.fnmatch(f"tv:{n}", pattern)]
    cached_hf = hf.cached_models(pattern) if fnmatch.fnmatch("hf:", pattern.split("*")[0] + "*") else []
    return local + tv + timm.list_models(pattern) + cached_hf


def check_arch(arch: str) -> None:
    """Raise ConfigError (with the closest names) unless ``arch`` names a known model."""
    import timm
    if arch in scratch.LOCAL_MODELS or timm.is_model(arch):
        return
    if arch.startswith("tv:") and arch[3:] in _tv_names():
        return
    if arch.startswith(hf.PREFIX):
        return hf.check(arch)
    choices = list(scratch.LOCAL_MODELS) + [f"tv:{n}" for n in _tv_names()] + timm.list_models()
    raise ConfigError(f"model.arch: unknown model {arch!r}{suggest(arch, choices)}")


def weights_mode(cfg: ModelConfig) -> str:
    """``none``, ``imagenet`` or ``file`` (a pretrain dict must have been resolved to ``file:`` already)."""
    w = cfg.weights
    if isinstance(w, dict):
        raise ConfigError("model.weights: a pretrain spec must be resolved by the orchestrator (tlsweep run)")
    if w in (None, "none", False):
        return "none"
    if w in ("imagenet", "pretrained", True):
        return "imagenet"
    if isinstance(w, str) and w.startswith("file:"):
        return "file"
    raise ConfigError(f"model.weights: expected none, imagenet or file:<path>, got {w!r}")


def _build_local(cfg: ModelConfig, num_classes: int, image_size: int, mode: str) -> ModelBundle:
    if mode == "imagenet":
        raise ConfigError(f"model.weights: {cfg.arch} trains from scratch; use none or file:<path>")
    model = scratch.LOCAL_MODELS[cfg.arch](cfg, num_classes)
    head = param_names_of(model, model.get_classifier())
    return ModelBundle(model, head, matcher_stages(model, head), image_size or 32, (0.5,) * 3, (0.25,) * 3, cfg.arch)


def _build_timm(cfg: ModelConfig, num_classes: int, image_size: int, mode: str) -> ModelBundle:
    import timm
    pcfg = timm.models.get_pretrained_cfg(cfg.arch)
    kwargs = {"num_classes": num_classes, "drop_rate": cfg.drop_rate}
    if image_size and pcfg is not None and pcfg.fixed_input_size:
        kwargs["img_size"] = image_size  # ViTs: position embeddings sized for the trial's images
    if mode == "imagenet":
        weights.check_timm_cache(cfg.arch)
        try:
            model = timm.create_model(cfg.arch, pretrained=True, **kwargs)
        except Exception as e:
            raise ConfigError(f"model.weights: cannot load imagenet weights for {cfg.arch}: "
                              f"{type(e).__name__}: {e}") from None
    else:
        model = timm.create_model(cfg.arch, pretrained=False, **kwargs)
    head = param_names_of(model, model.get_classifier())
    pc = model.pretrained_cfg or {}
    return ModelBundle(model, head, matcher_stages(model, head), int(pc.get("input_size", (3, 224, 224))[-1]),
                       tuple(pc.get("mean", IMAGENET_MEAN)), tuple(pc.get("std", IMAGENET_STD)), cfg.arch)


def _build_hf(cfg: ModelConfig, num_classes: int, image_size: int, mode: str) -> ModelBundle:
    parts = hf.build(cfg, num_classes, image_size, mode)
    return ModelBundle(parts["model"], parts["head"], parts["stages"], parts["input_size"],
                       parts["mean"] or IMAGENET_MEAN, parts["std"] or IMAGENET_STD, cfg.arch)


def _last_linear(model: nn.Module) -> str:
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    if name is None:
        raise ConfigError("model.arch: no linear classifier found to replace")
    return name


def _build_torchvision(cfg: ModelConfig, num_classes: int, image_size: int, mode: str) -> ModelBundle:
    import torchvision
    name = cfg.arch[3:]
    kwargs = {}
    if name in ("googlenet", "inception_v3"):
        kwargs = {"aux_logits": False, "init_weights": mode == "none"}
    if name.startswith("vit_") and image_size:
        kwargs["image_size"] = image_size
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    wenum = torchvision.models.get_model_weights(name).DEFAULT
    if mode == "imagenet":
        state = weights.fetch_torchvision_weights(wenum)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))})
    head_name = _last_linear(model)
    parent_name, _, leaf = head_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    setattr(parent, leaf, nn.Linear(old.in_features, num_classes))
    head = [f"{head_name}.{p}" for p, _ in getattr(parent, leaf).named_parameters()]
    crop = wenum.transforms().crop_size
    size = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    return ModelBundle(model, head, children_stages(model, head), size, IMAGENET_MEAN, IMAGENET_STD, cfg.arch)


def build_model(cfg: ModelConfig, num_classes: int, image_size: int | None = None) -> ModelBundle:
    """Build ``cfg.arch`` with a fresh ``num_classes`` classifier and the requested weights.

    Example:
        >>> from trainables.config import ModelConfig
        >>> b = build_model(ModelConfig(arch="resnet18"), num_classes=10)
        >>> b.head, len(b.stages)
        (['fc.weight', 'fc.bias'], 5)
    """
    check_arch(cfg.arch)
    mode = weights_mode(cfg)
    if cfg.arch in scratch.LOCAL_MODELS:
        bundle = _build_local(cfg, num_classes, image_size, mode)
    elif cfg.arch.startswith("tv:"):
        bundle = _build_torchvision(cfg, num_classes, image_size, mode)
    elif cfg.arch.startswith(hf.PREFIX):
        bundle = _build_hf(cfg, num_classes, image_size, mode)
    else:
        bundle = _build_timm(cfg, num_classes, image_size, mode)
    if mode == "file":
        path = cfg.weights[len("file:"):]
        weights.load_backbone(bundle.model, weights.read_state_dict(path), bundle.head, path)
    return bundle


__all__ = ["ModelBundle", "build_model", "check_arch", "list_models"]
