"""Images to explain or classify: user files (with a clear channel policy) and validation probes.

Channel policy: the models take 3 channels. Image files go through Pillow like an image folder in training
(grayscale, grayscale + alpha, palette, RGBA, CMYK and 16-bit images are converted to RGB); a file Pillow
cannot decode is an error naming it. A ``.npy`` array must be H x W, H x W x C or C x H x W with C = 1
(repeated to RGB) or 3; any other channel count (2, 4, ...) is an error naming the file, since there is no
single right way to turn it into RGB. Float arrays are read as 0..1, integer arrays as 0..255.

A :class:`Probes` set holds images once and hands them out at each model's image size, so every
configuration of a comparison explains exactly the same pictures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from trainables.config import TrialConfig
from trainables.data import load_raw, prepare
from trainables.data.base import decode_image, resize_uint8
from trainables.errors import DataError


def _array_to_uint8(path: Path, arr: np.ndarray) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
            arr = np.moveaxis(arr, -1, 0)
        elif arr.shape[0] not in (1, 3):
            channels = arr.shape[-1] if arr.shape[-1] < arr.shape[0] else arr.shape[0]
            raise DataError(f"{path}: {channels} channels; expected 1 (grayscale) or 3 (RGB), "
                            f"as H x W, H x W x C or C x H x W")
    else:
        raise DataError(f"{path}: array of shape {tuple(arr.shape)}; expected H x W, H x W x C or C x H x W")
    if arr.dtype.kind == "f":
        arr = np.clip(np.nan_to_num(arr) * 255.0, 0, 255)
    elif arr.dtype.kind in "iu":
        arr = np.clip(arr, 0, 255)
    else:
        raise DataError(f"{path}: array of type {arr.dtype}; expected numbers")
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.uint8))
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """One image file (or ``.npy`` array) as uint8 3 x size x size; problems raise DataError naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: cannot read array ({type(e).__name__}: {e})") from None
        return resize_uint8(_array_to_uint8(p, arr)[None], size)[0]
    return decode_image(p, size)


@dataclass
class Probes:
    """The same images for every model: from files (decoded at each size) or uint8 tensors (resized)."""
    names: list[str]
    labels: list[Optional[str]]              # true class names, None where unknown
    paths: list[Path] = field(default_factory=list)
    images: Optional[torch.Tensor] = None    # uint8 N x 3 x S x S when not from files
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def at(self, size: int) -> torch.Tensor:
        if size not in self._cache:
            if self.images is not None:
                self._cache[size] = resize_uint8(self.images, size)
            else:
                self._cache[size] = torch.stack([read_image(p, size) for p in self.paths])
        return self._cache[size]

    def targets(self, class_names: list[str]) -> list[Optional[int]]:
        """Each probe's true class as an index into ``class_names`` (None when unknown to that model)."""
        index = {c: i for i, c in enumerate(class_names)}
        return [index.get(label) if label is not None else None for label in self.labels]


def from_files(paths: list[str | Path], class_names: list[str], size: int) -> Probes:
    """Probes from files; a file under a folder named like a class (``root/<class>/x.png``) has that label."""
    files = [Path(p).expanduser() for p in paths]
    known = set(class_names)
    probes = Probes([p.name for p in files], [p.parent.name if p.parent.name in known else None for p in files],
                    paths=files)
    probes.at(size)  # read every file now: a bad one fails before any work
    return probes


def balanced_order(labels: torch.Tensor) -> list[int]:
    """Indices taking each class in turn (first of each class, then second...), so a few probes cover them."""
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in torch.unique(labels).tolist()]
    order = []
    for i in range(max((len(x) for x in per_class), default=0)):
        order += [x[i] for x in per_class if i < len(x)]
    return order


def from_validation(cfg: TrialConfig, size: int, n: int) -> Probes:
    """``n`` validation images of the trial's own data config (the val split training used), classes mixed."""
    data = prepare(load_raw(cfg.data), cfg.data, size)
    split = data.splits["val"]
    idx = balanced_order(split.labels)[:n]
    if isinstance(split.images, torch.Tensor):
        images = split.images[idx]
    else:
        images = torch.stack([split.images[i][0] for i in idx])
    labels = [data.class_names[int(split.labels[i])] for i in idx]
    return Probes([f"val[{i}]" for i in idx], labels, images=images)
