"""``ade20k``: the ADEChallengeData2016 (SceneParsing) layout, 150 classes.

``data.root`` is the ``ADEChallengeData2016`` folder (or its parent): ``images/training/*.jpg`` with
``annotations/training/*.png``, and ``images/validation`` with ``annotations/validation`` (the val split; there is
no labelled test split). Label 0 ("other objects") becomes the ignore index and 1..150 shift to 0..149, as SegFormer
and MMSegmentation (``reduce_zero_label``) train on it. 20k training images do not fit in memory at 512 px, so
splits larger than ``data.memory_limit_mb`` are decoded per batch (``data.num_workers`` loader processes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.config import DataConfig
from trainables.data.base import require_root
from trainables.errors import DataError
from trainables.segmentation.data.base import SegData, mask_dtype, materialize, pair_by_stem

# objectInfo150.txt order (the CSAIL scene-parsing benchmark), i.e. the labels 1..150 shifted to 0..149
CLASS_NAMES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
SPLITS = {"train": "training", "val": "validation"}


@dataclass(frozen=True)
class ReduceZeroLabel:
    """0 -> ignore, v -> v - 1; a value above 150 is a DataError naming the file."""
    ignore_index: int = 255
    num_classes: int = len(CLASS_NAMES)

    def __call__(self, values: np.ndarray, path: Path) -> np.ndarray:
        if values.size and (values.max() > self.num_classes or values.min() < 0):
            bad = sorted(int(v) for v in np.unique(values) if v > self.num_classes or v < 0)
            raise DataError(f"{path}: mask values {bad[:8]} are outside ADE20k's labels 0..{self.num_classes}")
        return np.where(values == 0, self.ignore_index, values - 1)


def ade_root(root: Path) -> Path:
    """The folder holding ``images/`` and ``annotations/`` (``root`` itself or ``root/ADEChallengeData2016``)."""
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images" / "training").is_dir() and (candidate / "annotations" / "training").is_dir():
            return candidate
    raise DataError(f"{root}: not the ADEChallengeData2016 layout (expected images/training and "
                    f"annotations/training, images/validation and annotations/validation)")


def load_ade20k(cfg: DataConfig, size: int) -> SegData:
    root = ade_root(require_root(cfg, "ade20k"))
    mask_map = ReduceZeroLabel(cfg.ignore_index)
    dtype = mask_dtype(len(CLASS_NAMES), cfg.ignore_index)
    splits = {}
    for split, folder in SPLITS.items():
        if (root / "images" / folder).is_dir():
            images, masks = pair_by_stem(root / "images" / folder, root / "annotations" / folder)
            splits[split] = materialize(images, masks, cfg, size, mask_map, dtype)
    if "val" not in splits:
        raise DataError(f"{root / 'images' / 'validation'}: missing (ADE20k's validation split)")
    return SegData(splits, list(CLASS_NAMES), cfg.ignore_index, size, "ade20k")
