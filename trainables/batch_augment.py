"""Augmentation of a whole batch at once on the device the batch is on (used on GPUs).

torchvision's presets (``trainables.transforms``) transform one image at a time on the CPU; on a GPU that is a
few small kernels per image, and images kept in GPU memory (``trainables.placement``) would have to go back to
the host. Here ``standard`` is one affine ``grid_sample`` for the whole batch (a random resized crop with scale
in [0.6, 1] and aspect ratio in [3/4, 4/3], a horizontal flip with probability 0.5, a rotation in [-10, 10]
degrees) followed by colour jitter (brightness, contrast, saturation, each a factor in [0.8, 1.2]), the same
distributions as the per-image preset. Random numbers come from the device's default generator, which a trial's
checkpoint saves, so a resumed trial draws what it would have drawn.

Example:
    >>> import torch
    >>> x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    >>> BATCH_AUGMENTATIONS.get("standard")(16)(x).shape
    torch.Size([4, 3, 16, 16])
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trainables.registry import Registry

BATCH_AUGMENTATIONS: Registry = Registry("data.augment (batched)")
GRAY = (0.299, 0.587, 0.114)


def uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def affine(scale: torch.Tensor, log_ratio: torch.Tensor, flip: torch.Tensor, degrees: torch.Tensor,
           u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """N x 2 x 3 ``affine_grid`` matrices: crop a ``scale`` share of the area with aspect ``exp(log_ratio)``,
    its centre at the fractions ``u, v`` of the room left, mirrored where ``flip``, rotated by ``degrees``."""
    ratio = log_ratio.exp()
    w = (scale * ratio).sqrt().clamp(max=1.0)   # crop width and height as fractions of the image
    h = (scale / ratio).sqrt().clamp(max=1.0)
    cx, cy = (2 * u - 1) * (1 - w), (2 * v - 1) * (1 - h)  # centre in [-1, 1] keeping the crop inside
    a = degrees * math.pi / 180
    cos, sin = a.cos(), a.sin()
    sx = torch.where(flip, -w, w)
    return torch.stack([torch.stack([sx * cos, -h * sin, cx], 1),
                        torch.stack([sx * sin, h * cos, cy], 1)], 1)


def jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
           ) -> torch.Tensor:
    """Colour jitter of float images in [0, 255] by per-image factors (1: unchanged)."""
    def k(t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1, 1)
    x = (x * k(brightness)).clamp(0, 255)
    gray = (x * torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = ((x - gray.mean((2, 3), keepdim=True)) * k(contrast) + gray.mean((2, 3), keepdim=True)).clamp(0, 255)
    gray = (x * torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((x - gray) * k(saturation) + gray).clamp(0, 255)


@BATCH_AUGMENTATIONS.register("standard")
def _standard(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(x: torch.Tensor) -> torch.Tensor:
        n, dev = len(x), x.device
        theta = affine(uniform(n, 0.6, 1.0, dev), uniform(n, math.log(3 / 4), math.log(4 / 3), dev),
                       torch.rand(n, device=dev) < 0.5, uniform(n, -10.0, 10.0, dev),
                       torch.rand(n, device=dev), torch.rand(n, device=dev))
        grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return jitter(out, uniform(n, 0.8, 1.2, dev), uniform(n, 0.8, 1.2, dev), uniform(n, 0.8, 1.2, dev))
    return apply


def batch_augment(name: str, size: int) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The batched version of augmentation ``name``, or None where there is none (``none``, ``strong``)."""
    return BATCH_AUGMENTATIONS.get(name)(size) if name in BATCH_AUGMENTATIONS else None
