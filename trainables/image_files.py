"""Image folders on disk, read without torch: class folders, split layouts, one image decoded to uint8 RGB.

Not in :mod:`trainables.data`, whose package imports torch. The loaders (:mod:`trainables.data.folders`,
:mod:`trainables.data.base`) and the checks ``tlsweep run`` makes before Ray starts (:mod:`orchestrator.preflight`)
read folders through these functions, so both see the same classes, files and errors: a folder that cannot be read, splits whose classes differ, a class too small to split,
an image too large to decode (a decompression bomb) or with pixels of more than 8 bits (scaled by the range of its
format, never by its own maximum).

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in ("cats", "dogs"):
    ...     (root / c).mkdir()
    ...     Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / c / "0.png")
    >>> splits, classes = imagefolder_splits(root)
    >>> classes, {k: len(v[0]) for k, v in splits.items()}
    (['cats', 'dogs'], {'train': 2})
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

from trainables.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# the largest value of a sample, per PIL mode of more than 8 bits (I: 32-bit integers, as PNG and TIFF files of
# 16 bits per sample open in some Pillow versions; their format decides the range, see _range)
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}


def require_root(cfg, name: str) -> Path:
    """``data.root`` of a data set read from files: set, and existing."""
    if not cfg.root:
        raise ConfigError(f"data.root: required for data set {name!r}")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(f"data.root: {root} does not exist (data set {name!r})")
    return root


def class_indices(class_names: list[str], classes: list, name: str) -> list[int]:
    """The indices of ``data.classes`` (names, or indices where no class is named so) in ``class_names``."""
    index_of = {c: i for i, c in enumerate(class_names)}
    wanted = []
    for c in classes:
        if isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(class_names) and str(c) not in index_of:
            wanted.append(c)
        elif str(c) in index_of:
            wanted.append(index_of[str(c)])
        else:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise ConfigError(f"data.classes: no class {c!r} in {name} (classes: {shown})")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"data.classes: repeated class in {classes}")
    return wanted


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted; a folder that cannot be listed is a DataError naming it."""
    try:
        with os.scandir(folder) as it:
            entries = [Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir()]
    except OSError as e:
        raise DataError(f"{folder}: cannot read folder ({type(e).__name__}: {e.strerror or e})") from None
    return sorted(entries, key=lambda p: p.name)


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted; an unreadable folder is a DataError naming it."""
    def fail(e: OSError) -> None:
        raise DataError(f"{e.filename or folder}: cannot read folder ({type(e).__name__}: {e.strerror or e})")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"{folder}: cannot read folder (permission denied)")
    out = []
    for dirpath, _, names in os.walk(folder, onerror=fail):
        out += [Path(dirpath) / n for n in names if is_image(Path(n))]
    return sorted(out)


def class_tree(root: Path, class_names: Optional[list[str]] = None) -> tuple[list[Path], list[int], list[str]]:
    """``(paths, labels, classes)`` of ``root/<class>/<image>``; with ``class_names`` (a val / test split), the
    classes of the training split: a class folder here that the training split lacks is a DataError, a class
    absent here a warning."""
    found = [d.name for d in subfolders(root)]
    classes = class_names or found
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    if class_names is not None:
        extra = [c for c in found if c not in class_names]
        if extra:
            raise DataError(f"{root}: class folder(s) {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} "
                            f"are not in the training split (the splits must have the same classes)")
    paths, labels, empty = [], [], []
    for i, c in enumerate(classes):
        folder = root / c
        files = image_files(folder) if folder.is_dir() else []
        if not files:
            if class_names is None:
                raise DataError(f"{folder}: class folder has no images")
            empty.append(c)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise DataError(f"{root}: no images found")
    if empty:
        warnings.warn(f"data: {root} has no images of class(es) {', '.join(empty[:5])}"
                      f"{' ...' if len(empty) > 5 else ''}", stacklevel=2)
    return paths, labels, classes


def imagefolder_splits(root: Path) -> tuple[dict[str, tuple[list[Path], list[int]]], list[str]]:
    """``{split: (paths, labels)}`` and the class names of an image folder: ``root/<class>/...``, or
    ``train/ val/ test/`` (also ``valid``, ``validation``) each holding the same class folders."""
    split_dirs = {SPLIT_NAMES[d.name.lower()]: d for d in subfolders(root) if d.name.lower() in SPLIT_NAMES}
    if "train" not in split_dirs:
        paths, labels, classes = class_tree(root)
        return {"train": (paths, labels)}, classes
    paths, labels, classes = class_tree(split_dirs["train"])
    splits = {"train": (paths, labels)}
    for name, folder in split_dirs.items():
        if name != "train":
            p, lab, _ = class_tree(folder, classes)
            splits[name] = (p, lab)
    return splits, classes


def check_splittable(counts: dict[str, int], split_off: list[str], where: str) -> None:
    """Each class of the training split keeps an image for training and gives one to each split made from it
    (``split_off``: ``val``, ``test``); fewer would leave the class out of a split without a word."""
    need = 1 + len(split_off)
    small = {c: n for c, n in counts.items() if n < need}
    if split_off and small:
        shown = ", ".join(f"{c!r} ({n})" for c, n in list(small.items())[:5]) + (" ..." if len(small) > 5 else "")
        raise DataError(f"{where}: class(es) {shown} have too few images to split off {' and '.join(split_off)} "
                        f"(each needs at least {need}); add images, give the split its own folder, or leave the "
                        f"class out with data.classes")


def _range(im) -> Optional[int]:
    """The largest sample value of an image of more than 8 bits per sample, from its format, else None."""
    if im.mode in WIDE_MODES:
        return WIDE_MODES[im.mode]
    if im.mode == "I":
        bits = None
        tags = getattr(im, "tag_v2", None)  # TIFF: BitsPerSample
        if tags is not None and 258 in tags:
            b = tags[258]
            bits = int(b[0] if isinstance(b, tuple) else b)
        if bits is None and im.format == "PNG":
            bits = 16  # PNG holds at most 16 bits per sample
        return 2 ** (bits or 32) - 1 if (bits or 32) < 32 else 2 ** 31 - 1
    return None


def decode_array(path: Path, size: Optional[int] = None):
    """One image file as a uint8 ``H x W x 3`` array (resized to ``size`` x ``size``): grey, palette, RGBA and
    CMYK converted; 16-bit samples scaled by 255 / 65535. A file PIL cannot read, a decompression bomb (more
    pixels than ``PIL.Image.MAX_IMAGE_PIXELS``) or float pixels (no fixed range) is a DataError naming it."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS  # PIL only warns between 1x and 2x this; we refuse (threads: no filters)
            if limit and im.size[0] * im.size[1] > limit:
                raise Image.DecompressionBombError(f"{im.size[0]}x{im.size[1]} pixels, more than "
                                                   f"PIL.Image.MAX_IMAGE_PIXELS {limit}")
            im.load()
            if im.mode == "F":
                raise DataError(f"{path}: 32-bit float pixels have no fixed range; save the image with 8 or 16 "
                                f"bits per channel")
            top = _range(im)
            if top is not None:
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8))
            im = im.convert("RGB")
            if size:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large to decode safely, a possible decompression bomb ({e}); raise "
                        f"PIL.Image.MAX_IMAGE_PIXELS only if you trust the file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
