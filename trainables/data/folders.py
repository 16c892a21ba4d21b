"""Image folders: ``root/<class>/<image>`` (optionally under train/ val/ test/) and Tiny-ImageNet's layout."""
from __future__ import annotations

import torch

from trainables.config import DataConfig
from trainables.data.base import FileSource, RawData, is_image, require_root
from trainables.errors import DataError
from trainables.image_files import imagefolder_splits


def load_imagefolder(cfg: DataConfig) -> RawData:
    """``root/<class>/...``, or ``train/ val/ test/`` with the same class folders (trainables.data.layout)."""
    root = require_root(cfg, "imagefolder")
    splits, classes = imagefolder_splits(root)
    return RawData({k: FileSource(paths, torch.tensor(labels, dtype=torch.long)) for k, (paths, labels) in
                    splits.items()}, classes, root.name)


def load_tiny_imagenet(cfg: DataConfig) -> RawData:
    root = require_root(cfg, "tiny_imagenet")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: missing (expected Tiny-ImageNet's train/<wnid>/images layout)")
    wnids = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for w in wnids:
        files = sorted(p for p in (train_dir / w / "images").glob("*") if is_image(p))
        paths += files
        labels += [index[w]] * len(files)
    if not paths:
        raise DataError(f"{train_dir}: no images found")
    splits = {"train": FileSource(paths, torch.tensor(labels))}
    ann = root / "val" / "val_annotations.txt"
    if ann.is_file():
        vp, vl = [], []
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                vp.append(root / "val" / "images" / parts[0])
                vl.append(index[parts[1]])
        splits["val"] = FileSource(vp, torch.tensor(vl, dtype=torch.long))
    words = root / "words.txt"
    names = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line) if words.is_file() else {}
    return RawData(splits, [names.get(w, w).split(",")[0].strip() for w in wnids], "tiny_imagenet")
