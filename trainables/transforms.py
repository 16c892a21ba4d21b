"""Batch preprocessing: per-sample augmentation presets on uint8 images, then normalisation on the device."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torchvision.transforms import v2

from trainables.catalog import AUGMENTATIONS  # data.augment: the names, pointing at these presets


def no_augment(size: int) -> Optional[Callable]:
    return None


def standard(size: int) -> Callable:
    return v2.Compose([v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                       v2.RandomRotation(10), v2.ColorJitter(0.2, 0.2, 0.2)])


def strong(size: int) -> Callable:
    return v2.Compose([v2.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                       v2.TrivialAugmentWide(), v2.ColorJitter(0.4, 0.4, 0.4, 0.1)])


class Preprocess:
    """uint8 N x 3 x H x W batch -> augmented (training only), normalised float batch on ``device``.

    ``batch_augment`` (``trainables.batch_augment``; the trainer passes it on CUDA) augments the whole batch on
    the device instead of ``augment`` image by image on the host.
    """

    def __init__(self, mean, std, device: torch.device, augment: Optional[Callable] = None,
                 channels_last: bool = False, batch_augment: Optional[Callable] = None):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0
        self.device = device
        self.augment = augment
        self.batch_augment = batch_augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.batch_augment is not None:
            x = self.batch_augment(x.to(self.device, non_blocking=True))
        elif train and self.augment is not None:
            x = torch.stack([self.augment(img) for img in x])
        x = x.to(self.device, non_blocking=True).float()
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)
