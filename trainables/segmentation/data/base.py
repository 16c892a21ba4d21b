"""Segmentation data plumbing: splits of image + mask pairs, decoded once into memory or lazily from files.

A loader returns a :class:`SegData`: splits of uint8 images ``[N, 3, S, S]`` and masks ``[N, S, S]`` (uint8 when
every class and the ignore index fit in a byte, else int64) at the trial's image size ``S``, the class names and
the ignore index. Masks are resized with nearest neighbour, images bilinearly. Sets larger than
``data.memory_limit_mb`` stay files (:class:`LazyPairs`), decoded per access.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.base import decode_image, is_image
from trainables.errors import DataError
from trainables.progress import Progress

MaskMap = Callable[[np.ndarray, Path], np.ndarray]  # raw mask values (and its file, for errors) -> class indices


def mask_dtype(num_classes: int, ignore_index: int) -> torch.dtype:
    return torch.uint8 if max(num_classes - 1, ignore_index) <= 255 and ignore_index >= 0 else torch.int64


def read_mask(path: Path) -> np.ndarray:
    """A mask file's values as a 2-D integer array (palette PNGs give their indices, RGB masks the first band)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read mask ({type(e).__name__}: {e})") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.int64)


def resize_mask(values: np.ndarray, size: int) -> torch.Tensor:
    """Nearest-neighbour resize of a class-index array to ``size x size`` (never invents a class)."""
    from PIL import Image
    if values.shape == (size, size):
        return torch.from_numpy(values.astype(np.int64))
    im = Image.fromarray(values.astype(np.int32), mode="I").resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(im).astype(np.int64))


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


@dataclass
class LazyPairs(torch.utils.data.Dataset):
    """Image + mask files decoded on access (sets larger than ``data.memory_limit_mb``)."""
    images: list[Path]
    masks: list[Path]
    size: int
    mask_map: MaskMap
    dtype: torch.dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.mask_map(read_mask(self.masks[i]), self.masks[i])
        return decode_image(self.images[i], self.size), resize_mask(values, self.size).to(self.dtype)


@dataclass
class SegSplit:
    images: Union[torch.Tensor, LazyPairs]  # uint8 [N, 3, S, S] in memory, or lazy pairs
    masks: Optional[torch.Tensor] = None    # [N, S, S] in memory (None when lazy)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.images, torch.Tensor)

    def take(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and masks at ``idx`` (decoded when lazy)."""
        if self.in_memory:
            t = torch.as_tensor(idx, dtype=torch.long)
            return self.images[t], self.masks[t]
        pairs = [self.images[i] for i in idx]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@dataclass
class SegData:
    splits: dict[str, SegSplit]
    class_names: list[str]
    ignore_index: int
    image_size: int
    name: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def pair_by_stem(image_dir: Path, mask_dir: Path) -> tuple[list[Path], list[Path]]:
    """Image and mask files matched by file stem; unmatched files on either side are a DataError by name."""
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.is_file() and is_image(p)}
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.is_file() and is_image(p)}
    lonely_images = sorted(images[s].name for s in images.keys() - masks.keys())
    lonely_masks = sorted(masks[s].name for s in masks.keys() - images.keys())
    problems = []
    for what, names, where in (("images without a mask", lonely_images, mask_dir),
                               ("masks without an image", lonely_masks, image_dir)):
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            problems.append(f"{len(names)} {what} (none of that stem in {where}): {shown}")
    if problems:
        raise DataError(f"{image_dir}: " + "; ".join(problems))
    stems = sorted(images)
    if not stems:
        raise DataError(f"{image_dir}: no images found")
    return [images[s] for s in stems], [masks[s] for s in stems]


def random_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, split off) with ``fraction`` of ``n`` (at least one when n > 1) split off with ``seed``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(round(n * fraction))) if n > 1 else 0
    return sorted(order[k:]), sorted(order[:k])


def materialize(images: list[Path], masks: list[Path], cfg: DataConfig, size: int, mask_map: MaskMap,
                dtype: torch.dtype, threads: int = 4) -> SegSplit:
    """Decode the pairs into memory at ``size`` when they fit in ``data.memory_limit_mb``, else keep them lazy."""
    lazy = LazyPairs(images, masks, size, mask_map, dtype)
    mb = len(images) * 4 * size * size / 2**20
    if mb > cfg.memory_limit_mb:
        return SegSplit(lazy)
    out_images = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    out_masks = torch.empty((len(images), size, size), dtype=dtype)

    def one(i: int) -> None:
        out_images[i], out_masks[i] = lazy[i]
        progress.add()

    with Progress("decoding image/mask pairs", len(images), "pairs") as progress, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(len(images))))
    return SegSplit(out_images, out_masks)
