"""``segfolder``: images and masks in parallel folders, matched by file stem.

Layout under ``data.root``: ``train/`` + ``train_masks/``, optionally ``val/`` + ``val_masks/`` and ``test/`` +
``test_masks/`` (without ``val/``, ``data.val_fraction`` of train is split off with ``data.split_seed``; without
``test/``, ``data.test_fraction`` likewise). Masks hold class indices (palette or grey PNGs); a data set whose masks
only ever hold 0 and 255 is binary, 0/255 read as 0/1. Otherwise 255 (``data.ignore_index``) is "ignore".

Classes: ``root/classes.txt`` (one name per line) if present, else ``data.num_classes``, else binary
(``background``, ``foreground``) or the largest mask value + 1. Every mask is checked once at load: its size must
equal its image's, and its values must be classes or the ignore index (errors name the file and the values).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.config import DataConfig
from trainables.data.base import require_root
from trainables.errors import DataError
from trainables.segmentation.data.base import (SegData, image_size_of, mask_dtype, materialize, pair_by_stem,
                                               random_split, read_mask)

FOLDERS = {"train": ("train", "train_masks"), "val": ("val", "val_masks"), "test": ("test", "test_masks")}


@dataclass(frozen=True)
class BinaryMap:
    """0/255 masks -> 0/1 (a class, not a lambda: lazy splits may be decoded in loader processes)."""
    high: int = 255

    def __call__(self, values: np.ndarray, path: Path) -> np.ndarray:
        return (values == self.high).astype(np.int64)


@dataclass(frozen=True)
class IdentityMap:
    def __call__(self, values: np.ndarray, path: Path) -> np.ndarray:
        return values


def _find_pairs(root: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    pairs = {}
    for split, (images, masks) in FOLDERS.items():
        if (root / images).is_dir():
            if not (root / masks).is_dir():
                raise DataError(f"{root / masks}: missing (the masks of {root / images}, matched by file stem)")
            pairs[split] = pair_by_stem(root / images, root / masks)
    if "train" not in pairs:
        raise DataError(f"{root}: no train/ folder (expected train/ + train_masks/, optionally val/ + val_masks/ "
                        f"and test/ + test_masks/)")
    return pairs


def _scan(pairs: dict[str, tuple[list[Path], list[Path]]]) -> dict[Path, np.ndarray]:
    """Each mask's distinct values; a mask whose size differs from its image's is a DataError."""
    values = {}
    for images, masks in pairs.values():
        for img, msk in zip(images, masks):
            arr = read_mask(msk)
            if (arr.shape[1], arr.shape[0]) != image_size_of(img):
                w, h = image_size_of(img)
                raise DataError(f"{msk}: mask is {arr.shape[1]}x{arr.shape[0]} but its image {img.name} is {w}x{h}")
            values[msk] = np.unique(arr)
    return values


def _classes(root: Path, cfg: DataConfig, union: set[int]) -> tuple[list[str], bool]:
    """(class names, whether masks are 0/255 binary)."""
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
    elif cfg.num_classes is not None:
        names = ["background", "foreground"] if cfg.num_classes == 2 else [str(i) for i in range(cfg.num_classes)]
    else:
        names = None
    zero_255 = union <= {0, 255} and 255 in union
    binary = zero_255 and (names is None or len(names) == 2)
    if names is None:
        top = max((v for v in union if v != cfg.ignore_index), default=0)
        names = ["background", "foreground"] if binary else [str(i) for i in range(top + 1)]
    if len(names) < 2:
        raise DataError(f"{root}: masks hold a single class ({names}); segmentation needs at least 2")
    return names, binary


def _check_values(values: dict[Path, np.ndarray], num_classes: int, ignore_index: int, binary: bool) -> None:
    for path, vals in values.items():
        ok = {0, 255} if binary else set(range(num_classes)) | {ignore_index}
        bad = sorted(int(v) for v in vals if int(v) not in ok)
        if bad:
            shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            raise DataError(f"{path}: mask values {shown} are outside the {num_classes} classes "
                            f"(0..{num_classes - 1}, ignore {ignore_index})")


def load_segfolder(cfg: DataConfig, size: int) -> SegData:
    root = require_root(cfg, "segfolder")
    pairs = _find_pairs(root)
    values = _scan(pairs)
    union = {int(v) for vals in values.values() for v in vals}
    names, binary = _classes(root, cfg, union)
    _check_values(values, len(names), cfg.ignore_index, binary)
    if "test" not in pairs and cfg.test_fraction > 0:
        pairs["train"], pairs["test"] = _split(pairs["train"], cfg.test_fraction, cfg.split_seed + 100)
    if "val" not in pairs:
        pairs["train"], pairs["val"] = _split(pairs["train"], cfg.val_fraction, cfg.split_seed)
    dtype = mask_dtype(len(names), cfg.ignore_index)
    mask_map = BinaryMap() if binary else IdentityMap()
    splits = {name: materialize(images, masks, cfg, size, mask_map, dtype) for name, (images, masks) in pairs.items()}
    return SegData(splits, names, cfg.ignore_index, size, root.name)


def _split(pair: tuple[list[Path], list[Path]], fraction: float, seed: int):
    images, masks = pair
    kept, off = random_split(len(images), fraction, seed)
    if not kept:
        raise DataError(f"{images[0].parent}: too few images ({len(images)}) to split off a validation set")
    return ([images[i] for i in kept], [masks[i] for i in kept]), ([images[i] for i in off], [masks[i] for i in off])
