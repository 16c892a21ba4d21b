"""Which layer to explain, found from the model bundle's ordered stages (no per-model ``if`` chains).

Grad-CAM wants the last activations that still have a spatial layout. One forward pass with hooks on every
module that lies wholly inside a stage records what each one outputs; walking the stages from the output
side, the first module (the one that finished last) whose output is:

- ``N x C x H x W`` with H x W > 1 is used as is (``layer4`` of a ResNet, ``blocks.5`` of a MobileNetV3 whose
  ``conv_head`` runs after pooling, the tail ``bn2`` of an EfficientNet);
- ``N x H x W x C`` (Swin-style channels-last stages) is viewed as ``N x C x H x W``;
- ``N x T x C`` tokens: the input of the last transformer block (a module repeating the class of the sibling
  before it) is viewed as the patch grid, prefix tokens (class, registers) left out. Its input, not its
  output: a class-token head reads nothing else from the last block's output, so gradients there are zero.

The view goes through a :class:`GridView` identity module that captum's ``LayerGradCam`` hooks.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn

from trainables.errors import ConfigError


class GridView(nn.Module):
    """Identity on an N x C x h x w view of some activations; captum hooks this module's output."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


@dataclass
class Target:
    name: str                    # the module's dotted name
    layout: str                  # nchw | nhwc | tokens
    module: nn.Module
    prefix: int = 0              # tokens: class / register tokens before the patches


def _candidates(model: nn.Module, stages: list[list[str]]) -> list[tuple[int, str, nn.Module]]:
    """(stage index, name, module) for every module whose parameters all lie in one stage."""
    stage_of = {p: i for i, names in enumerate(stages) for p in names}
    out = []
    for name, module in model.named_modules():
        if not name:
            continue
        params = [f"{name}.{p}" for p, _ in module.named_parameters()]
        owners = {stage_of.get(p) for p in params}
        if params and len(owners) == 1 and None not in owners:
            out.append((owners.pop(), name, module))
    return out


def _trace(model: nn.Module, modules: dict[str, nn.Module], size: int, device) -> dict[str, tuple[int, tuple]]:
    """name -> (order in which its forward finished, output shape) for one forward of a blank image."""
    seen: dict[str, tuple[int, tuple]] = {}
    counter = [0]

    def hook(name):
        def fn(_m, _inp, out):
            if isinstance(out, torch.Tensor):
                counter[0] += 1
                seen[name] = (counter[0], tuple(out.shape))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    return seen


def _repeated_block(model: nn.Module, name: str) -> bool:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    names = [n for n, _ in parent.named_children()]
    i = names.index(leaf)
    return i > 0 and type(getattr(parent, names[i - 1])) is type(getattr(parent, leaf))


def gradcam_target(model: nn.Module, stages: list[list[str]], size: int, device=None) -> Target:
    """The layer Grad-CAM explains (see the module docstring)."""
    cands = _candidates(model, stages)
    seen = _trace(model, {n: m for _, n, m in cands}, size, device or next(model.parameters()).device)
    ranked = sorted(((s, seen[n][0], n, m) for s, n, m in cands if n in seen), reverse=True)
    for _, _, name, module in ranked:
        shape = seen[name][1]
        if len(shape) == 4 and shape[1] == shape[2] and shape[3] != shape[1] and shape[1] > 1:
            return Target(name, "nhwc", module)
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            return Target(name, "nchw", module)
        if len(shape) == 3 and _repeated_block(model, name):
            tokens = shape[1]
            prefix = getattr(model, "num_prefix_tokens", None)
            if prefix is None:
                prefix = tokens - math.isqrt(tokens) ** 2
            if math.isqrt(tokens - prefix) ** 2 == tokens - prefix and tokens - prefix > 1:
                return Target(name, "tokens", module, int(prefix))
    raise ConfigError(f"gradcam: no layer with a spatial map in {type(model).__name__} at {size} px "
                      f"(every stage's output is pooled at this image size)")


@contextmanager
def gradcam_layer(model: nn.Module, target: Target) -> Iterator[nn.Module]:
    """The module to give ``LayerGradCam``: the target itself (NCHW) or a GridView spliced in by hooks."""
    if target.layout == "nchw":
        yield target.module
        return
    view = GridView()
    if target.layout == "nhwc":
        def on_output(_m, _inp, out):
            return view(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        handle = target.module.register_forward_hook(on_output)
    else:
        def on_input(_m, args):
            x, p = args[0], target.prefix
            n, t, c = x.shape
            side = math.isqrt(t - p)
            grid = view(x[:, p:].transpose(1, 2).reshape(n, c, side, side))
            return (torch.cat([x[:, :p], grid.flatten(2).transpose(1, 2)], 1),) + tuple(args[1:])
        handle = target.module.register_forward_pre_hook(on_input)
    try:
        yield view
    finally:
        handle.remove()


def first_conv(model: nn.Module, size: int, device=None) -> Optional[tuple[str, nn.Conv2d]]:
    """The first convolution the input meets (by execution, not by registration order), or None."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        return None
    seen = _trace(model, convs, size, device or next(model.parameters()).device)
    if not seen:
        return None
    name = min(seen, key=lambda n: seen[n][0])
    return name, convs[name]
