"""Image folders: ``root/<class>/<image>`` (optionally under train/ val/ test/) and Tiny-ImageNet's layout."""
from __future__ import annotations

from pathlib import Path

import torch

from trainables.config import DataConfig
from trainables.data.base import FileSource, RawData, is_image, require_root
from trainables.errors import DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _class_tree(root: Path, class_names: list[str] | None = None) -> tuple[FileSource, list[str]]:
    classes = class_names or sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    paths, labels = [], []
    for i, c in enumerate(classes):
        folder = root / c
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p)) if folder.is_dir() else []
        if not files and class_names is None:
            raise DataError(f"{folder}: class folder has no images")
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise DataError(f"{root}: no images found")
    return FileSource(paths, torch.tensor(labels, dtype=torch.long)), classes


def load_imagefolder(cfg: DataConfig) -> RawData:
    root = require_root(cfg, "imagefolder")
    subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    split_dirs = {SPLIT_NAMES[k]: v for k, v in subdirs.items() if k in SPLIT_NAMES}
    if "train" not in split_dirs:
        source, classes = _class_tree(root)
        return RawData({"train": source}, classes, root.name)
    train, classes = _class_tree(split_dirs["train"])
    splits = {"train": train}
    for name, folder in split_dirs.items():
        if name != "train":
            splits[name], _ = _class_tree(folder, classes)
    return RawData(splits, classes, root.name)


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
