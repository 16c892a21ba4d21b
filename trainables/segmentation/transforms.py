"""Joint augmentation of images and masks (the same crop, flip and resize for both), then normalisation.

Presets by name (``data.augment``): ``none``, ``standard`` (random resized crop of 50-100% of the area and a
horizontal flip) and ``strong`` (25-100%, plus brightness / contrast jitter of the image only). Every random
number comes from the ``torch.Generator`` passed in, so a resumed trial augments exactly as an uninterrupted one.
Images are resized bilinearly, masks with ``nearest-exact`` (pixel-centre aligned with the bilinear image
resize, so no class value is ever invented and boundaries stay where the image has them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from trainables.catalog import SEG_AUGMENTATIONS  # data.augment: the names, pointing at the presets below


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


@dataclass
class JointAugment:
    """Random resized crop + horizontal flip (+ photometric jitter) applied alike to image and mask.

    Example:
        >>> aug = JointAugment(size=8)
        >>> x, y = aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.long),
        ...            torch.Generator().manual_seed(0))
        >>> tuple(x.shape), tuple(y.shape)
        ((2, 3, 8, 8), (2, 8, 8))
    """

    size: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.0   # brightness and contrast factors drawn in [1 - jitter, 1 + jitter]

    def crop_box(self, height: int, width: int, gen: torch.Generator) -> tuple[int, int, int, int]:
        """(top, left, h, w) of a crop with an area fraction in ``scale`` and an aspect ratio in ``ratio``."""
        area = height * width
        for _ in range(10):
            target = area * _uniform(gen, *self.scale)
            aspect = math.exp(_uniform(gen, math.log(self.ratio[0]), math.log(self.ratio[1])))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=gen))
                left = int(torch.randint(0, width - w + 1, (), generator=gen))
                return top, left, h, w
        return 0, 0, height, width

    def one(self, image: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        top, left, h, w = self.crop_box(image.shape[-2], image.shape[-1], gen)
        img = image[:, top:top + h, left:left + w].unsqueeze(0).float()
        msk = mask[top:top + h, left:left + w][None, None].float()
        img = F.interpolate(img, size=(self.size, self.size), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        msk = F.interpolate(msk, size=(self.size, self.size), mode="nearest-exact")[0, 0]
        if float(torch.rand((), generator=gen)) < self.flip:
            img, msk = img.flip(-1), msk.flip(-1)
        if self.jitter:
            brightness = _uniform(gen, 1 - self.jitter, 1 + self.jitter)
            contrast = _uniform(gen, 1 - self.jitter, 1 + self.jitter)
            mean = img.mean()
            img = (img - mean) * contrast + mean * brightness
        return img.round().clamp(0, 255).to(torch.uint8), msk.to(mask.dtype)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [B, 3, H, W] and masks [B, H, W] -> the same at ``size x size``, augmented alike."""
        pairs = [self.one(images[i], masks[i], gen) for i in range(len(images))]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def no_augment(size: int) -> Optional[JointAugment]:
    return None


def standard(size: int) -> JointAugment:
    return JointAugment(size, scale=(0.5, 1.0))


def strong(size: int) -> JointAugment:
    return JointAugment(size, scale=(0.25, 1.0), jitter=0.3)


def normalize(images: torch.Tensor, mean: tuple, std: tuple, device: torch.device) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float on ``device``, ``(x / 255 - mean) / std`` (the image only; masks stay)."""
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0
    return (images.to(device, non_blocking=True).float() - m) / s
