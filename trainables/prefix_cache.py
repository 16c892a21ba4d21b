"""Prefix cache: for ``partial`` freezing, store the output of the frozen leading modules and run only the rest.

The split is generic but checked, never assumed. A model's *chain* is its top-level children in order, with
plain ``nn.Sequential`` children opened up into theirs (``layer1`` -> ``layer1.0``, ``layer1.1``; the same order
``trainables.models.stages.children_stages`` uses). The prefix is the longest run of chain modules with no
trainable parameter, no dropout and no BatchNorm in training mode. On a probe batch the model's own forward must
call them exactly as a chain (the first on the model's input, each on the previous one's output, each once),
running the prefix in training mode must give what it gives in eval mode, and the model with the prefix modules
replaced by ``nn.Identity`` must, fed the prefix's output, give the model's output. Otherwise, or when the cached
outputs of all splits exceed ``training.prefix_cache_mb``, the trial trains on images as before.

Models it holds for, with results equal to training on images: tlsweep's scratch CNNs, timm ResNets and
MobileNetV3, torchvision ResNets and MobileNetV3 (tests/trainables/test_feature_cache.py); also convnext_atto,
efficientnet_b0, regnetx_002, tv:vgg11, tv:densenet121, tv:googlenet (checked once by hand). Every other model
passes or fails the checks when its phase starts. ViTs split only after the patch embedding (position embeddings
are added outside any module), which saves little. ``hf:`` models are left out (their forward is not a chain).

Example:
    >>> from torch import nn
    >>> [name for name, _ in chain(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Flatten())))]
    ['0', '1.0', '1.1']
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data.base import Split
from trainables.feature_cache import (CachedInputs, Unsafe, close, impurity, key_parts, load_or_compute,
                                      probe_batch, state_digest, training_mode)
from trainables.models import ModelBundle
from trainables.transforms import Preprocess


def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level children in order, plain ``nn.Sequential`` ones (whose forward chains them) opened up."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, nn.Sequential) and type(child).forward is nn.Sequential.forward and len(child):
                walk(full + ".", child)
            else:
                out.append((full, child))
    walk("", model)
    return out


def frozen_length(links: list[tuple[str, nn.Module]], frozen_bn: list[nn.Module]) -> int:
    """How many leading chain modules are frozen and pure in training mode."""
    for i, (name, m) in enumerate(links):
        if any(p.requires_grad for p in m.parameters()) or impurity(m.named_modules(prefix=name), frozen_bn):
            return i
    return len(links)


def called_as_chain(model: nn.Module, links: list[tuple[str, nn.Module]], n: int, x: torch.Tensor) -> int:
    """The longest prefix (<= n) of ``links`` that the model's forward runs as a chain on ``x``."""
    calls: list[tuple[int, tuple, object]] = []
    handles = [m.register_forward_hook(lambda _m, args, out, i=i: calls.append((i, args, out)))
               for i, (_, m) in enumerate(links[:n])]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    expected = x
    for i in range(n):
        at = [k for k, c in enumerate(calls) if c[0] == i]
        if at != [i] or len(calls[i][1]) != 1 or calls[i][1][0] is not expected:
            return i
        expected = calls[i][2]
    return n


def run_prefix(mods: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for m in mods:
        x = m(x)
    return x


@contextlib.contextmanager
def bypassed(model: nn.Module, names: list[str]):
    """The model with the named submodules replaced by ``nn.Identity`` (put back on exit)."""
    swapped = []
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        swapped.append((parent, leaf, parent._modules[leaf]))
        parent._modules[leaf] = nn.Identity()
    try:
        yield model
    finally:
        for parent, leaf, original in reversed(swapped):
            parent._modules[leaf] = original


def frozen_prefix(cfg: TrialConfig, bundle: ModelBundle, frozen_bn: list[nn.Module], splits: dict[str, Split],
                  pre: Preprocess, autocast, amp: Optional[torch.dtype]) -> CachedInputs:
    """Cached outputs of the frozen leading modules, with the rest of the model as ``forward``; or ``Unsafe``."""
    model = bundle.model
    if getattr(model, "no_prefix_cache", None):  # e.g. hf: models (trainables.models.hf)
        raise Unsafe(model.no_prefix_cache)
    links = chain(model)
    n = frozen_length(links, frozen_bn)
    x = probe_batch(splits, pre)
    model.eval()
    with torch.no_grad(), autocast():
        n = called_as_chain(model, links, n, x) if n else 0
        if not any(p.numel() for _, m in links[:n] for p in m.parameters()):
            raise Unsafe("no frozen leading module runs as a chain")
        names, mods = [nm for nm, _ in links[:n]], [m for _, m in links[:n]]
        try:
            ref = model(x)
            feats = run_prefix(mods, x)
            with bypassed(model, names):
                out = model(feats.clone())
        except Exception as e:  # noqa: BLE001 - any failure of the split means: do not split
            raise Unsafe(f"the model does not run from {names[-1]}'s output ({type(e).__name__}: {e})") from None
        if not close(out, ref):
            raise Unsafe(f"the model fed {names[-1]}'s output differs from the model")
        with training_mode(model, frozen_bn, pre.device):
            again = run_prefix(mods, x)
    if not close(again, feats):
        raise Unsafe(f"the frozen modules up to {names[-1]} compute something else in training mode")
    mb = feats[0].numel() * feats.element_size() * sum(len(s) for s in splits.values()) / 2**20
    if mb > cfg.training.prefix_cache_mb:
        raise Unsafe(f"the output of {names[-1]} for all splits is {mb:.0f} MB > training.prefix_cache_mb "
                     f"{cfg.training.prefix_cache_mb}")

    def forward(f: torch.Tensor) -> torch.Tensor:
        with bypassed(model, names):
            return model(f)
    prefixes = tuple(nm + "." for nm in names)
    common = dict(key_parts(cfg, model, pre, amp), kind="prefix", prefix=names,
                  weights=state_digest(model, lambda k: k.startswith(prefixes)))
    return load_or_compute("prefix", names[-1], common, lambda images: run_prefix(mods, images), forward, splits, pre,
                           autocast, cfg)
