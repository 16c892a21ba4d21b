"""Data-set plumbing shared by every source: class subsets, splits, label budgets, decoding, resizing.

A source module returns a :class:`RawData` (splits of in-memory uint8 images or of image files);
:func:`prepare` turns it into an :class:`ImageData` whose splits hold uint8 ``N x 3 x H x W`` tensors at the
trial's image size (decoded once, not per epoch), or a lazy file list when the set is too large for memory.
Image files are decoded on the trial's CPUs and kept on disk for later trials and studies
(:mod:`trainables.decoded_cache`, ``data.decoded_cache``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F

from trainables.config import DataConfig
from trainables.errors import DataError
from trainables.image_files import (IMAGE_EXTENSIONS, check_splittable, class_indices, decode_array,  # noqa: F401
                                    is_image, require_root)
from trainables.progress import Progress


@dataclass
class TensorSource:
    images: torch.Tensor  # uint8, N x C x H x W (C = 1 or 3), any size
    labels: torch.Tensor  # int64, N


@dataclass
class FileSource:
    paths: list[Path]
    labels: torch.Tensor


Source = Union[TensorSource, FileSource]


@dataclass
class RawData:
    splits: dict[str, Source]
    class_names: list[str]
    name: str = ""


@dataclass
class LazyImages(torch.utils.data.Dataset):
    """Image files decoded on access (sets larger than ``data.memory_limit_mb``)."""
    paths: list[Path]
    labels: torch.Tensor
    size: int

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return decode_image(self.paths[i], self.size), self.labels[i]


@dataclass
class Split:
    images: Union[torch.Tensor, LazyImages]  # uint8 N x 3 x S x S in memory, or lazy
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageData:
    splits: dict[str, Split]
    class_names: list[str]
    image_size: int
    name: str = ""
    dropped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # unreadable files left out (data.on_bad_image: skip)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def source_len(src: Source) -> int:
    return len(src.labels)


def take(src: Source, idx: torch.Tensor) -> Source:
    if isinstance(src, TensorSource):
        return TensorSource(src.images[idx], src.labels[idx])
    return FileSource([src.paths[i] for i in idx.tolist()], src.labels[idx])


def select_classes(raw: RawData, classes: Optional[list]) -> RawData:
    """Keep only ``classes`` (names or indices) and relabel them 0..k-1 in the given order."""
    if not classes:
        return raw
    wanted = class_indices(raw.class_names, classes, raw.name)
    remap = torch.full((len(raw.class_names),), -1, dtype=torch.long)
    remap[torch.tensor(wanted)] = torch.arange(len(wanted))
    splits = {}
    for name, src in raw.splits.items():
        new = remap[src.labels]
        keep = torch.nonzero(new >= 0).flatten()
        sub = take(src, keep)
        sub.labels = new[keep]
        splits[name] = sub
    return RawData(splits, [raw.class_names[i] for i in wanted], raw.name)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, split_off) with ``fraction`` of each class split off (at least one when it has 2+)."""
    g = torch.Generator().manual_seed(seed)
    kept, off = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n = int(round(len(idx) * fraction))
        n = max(n, 1) if len(idx) > 1 else 0
        off.append(idx[:n])
        kept.append(idx[n:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(off)).values


def per_class_budget(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of at most ``n`` samples of each class, chosen with ``seed``."""
    g = torch.Generator().manual_seed(seed + 1)
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.sort(torch.cat(out)).values


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 N x C x H x W to N x 3 x size x size (grey expanded to RGB), in chunks."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = torch.empty((images.shape[0], 3, size, size), dtype=torch.uint8)
    for s in range(0, images.shape[0], chunk):
        x = images[s:s + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s:s + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def decode_image(path: Path, size: int) -> torch.Tensor:
    """Decode one image file to uint8 3 x size x size (:func:`trainables.data.layout.decode_array`: grey, RGBA
    and 16-bit images converted, 16-bit scaled by their format's range; bombs and unreadable files refused)."""
    return torch.from_numpy(decode_array(path, size)).permute(2, 0, 1).contiguous()


def decode_files(paths: list[Path], size: int, workers: Optional[int] = None, what: str = "images",
                 cache: bool = True) -> torch.Tensor:
    """Decode every file to uint8 N x 3 x size x size on ``workers`` CPUs (default: the trial's, as many as
    torch's threads; ``trainables.decode_pool``), or read them from the decoded cache (``trainables.decoded_cache``;
    ``cache=False``: not). A file that cannot be decoded is a DataError naming it (the first one, in order)."""
    got = _decoded(paths, size, what, cache, workers)
    if got.errors:
        raise DataError(next(iter(got.errors.values())))
    return torch.from_numpy(got.images)


def _decoded(paths: list[Path], size: int, what: str, cache: bool, workers: Optional[int] = None):
    from trainables import decode_pool, decoded_cache
    workers = workers or min(torch.get_num_threads(), decode_pool.cpus())  # a Ray trial: its resources.cpu
    with Progress(f"decoding {what}", len(paths), "images") as progress:
        return decoded_cache.load(paths, size, cache=cache, workers=workers, done=progress.add)


def readable(path: Path) -> bool:
    """Whether PIL can identify and verify ``path`` (header and structure; no full decode)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means: not an image we can use
        return False


def decode_or_skip(src: FileSource, size: int, what: str = "images", cache: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Decode every file of ``src``; unreadable ones are left out and returned (``data.on_bad_image: skip``)."""
    got = _decoded(src.paths, size, what, cache)
    ok = torch.ones(len(src.paths), dtype=torch.bool)
    ok[list(got.errors)] = False
    images = torch.from_numpy(got.images)
    bad = [src.paths[i] for i in got.errors]
    return (images[ok] if bad else images), src.labels[ok], bad


def _decode_split(src: FileSource, cfg: DataConfig, image_size: int, what: str = "images") -> tuple[Split, list[Path]]:
    mb = len(src.paths) * 3 * image_size * image_size / 2**20
    lazy = mb > cfg.memory_limit_mb
    if cfg.on_bad_image != "skip":
        return Split(LazyImages(src.paths, src.labels, image_size) if lazy
                     else decode_files(src.paths, image_size, what=what, cache=cfg.decoded_cache), src.labels), []
    if not lazy:
        images, labels, bad = decode_or_skip(src, image_size, what, cache=cfg.decoded_cache)
        return Split(images, labels), bad
    # lazily decoded sets are checked up front (headers and structure); a file that breaks later still errors
    good = [readable(p) for p in src.paths]
    keep = torch.tensor(good, dtype=torch.bool)
    paths = [p for p, g in zip(src.paths, good) if g]
    return Split(LazyImages(paths, src.labels[keep], image_size), src.labels[keep]), \
        [p for p, g in zip(src.paths, good) if not g]


def prepare(raw: RawData, cfg: DataConfig, image_size: int) -> ImageData:
    """Add missing val/test splits, apply the label budget, decode and resize once (classes already chosen)."""
    splits = dict(raw.splits)
    if "train" not in splits or source_len(splits["train"]) == 0:
        raise DataError(f"{raw.name}: the training split is empty")
    split_off = [k for k, off in (("val", "val" not in splits),
                                  ("test", "test" not in splits and cfg.test_fraction > 0)) if off]
    if split_off:
        counts = torch.bincount(splits["train"].labels, minlength=len(raw.class_names)).tolist()
        check_splittable(dict(zip(raw.class_names, counts)), split_off, f"data ({raw.name})")
    if "test" not in splits and cfg.test_fraction > 0:
        rest, test_idx = stratified_split(splits["train"].labels, cfg.test_fraction, cfg.split_seed + 100)
        splits["test"] = take(splits["train"], test_idx)
        splits["train"] = take(splits["train"], rest)
    if "val" not in splits:
        frac = cfg.val_fraction / (1.0 - (cfg.test_fraction if "test" in splits and cfg.test_fraction else 0.0))
        rest, val_idx = stratified_split(splits["train"].labels, min(frac, 0.9), cfg.split_seed)
        splits["val"] = take(splits["train"], val_idx)
        splits["train"] = take(splits["train"], rest)
    if cfg.samples_per_class:
        splits["train"] = take(splits["train"], per_class_budget(splits["train"].labels, cfg.samples_per_class,
                                                                 cfg.split_seed))
    out, skipped = {}, []
    for name, src in splits.items():
        if isinstance(src, TensorSource):
            out[name] = Split(resize_uint8(src.images, image_size), src.labels)
        else:
            out[name], bad = _decode_split(src, cfg, image_size, f"the {name} split of {raw.name}")
            skipped += [str(p) for p in bad]
            if bad and len(out[name]) == 0:
                raise DataError(f"{raw.name}: every image of the {name} split is unreadable")
    if skipped:
        listed = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"data: skipped {len(skipped)} unreadable image(s) (data.on_bad_image: skip): {listed}",
                      stacklevel=2)
    return ImageData(out, raw.class_names, image_size, raw.name, skipped=skipped)


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
