"""``shapes``: synthetic scenes of circles, squares and triangles with exact masks, generated offline.

``data.shapes_count`` scenes at ``data.image_size`` (default 32), ``data.num_shapes`` foreground classes plus
background (class 0), deterministic from ``data.split_seed``; ``data.val_fraction`` and ``data.test_fraction`` of
them form the val and test splits. The generator is shared with the classification variant
(:mod:`trainables.data.shapes`), whose one-shape images pretrain an encoder for this task.
"""
from __future__ import annotations

from trainables.config import DataConfig
from trainables.data.shapes import class_names, generate
from trainables.segmentation.data.base import SegData, SegSplit


def load_shapes(cfg: DataConfig, size: int) -> SegData:
    images, masks = generate(cfg.shapes_count, size, cfg.split_seed, cfg.num_shapes)
    n = len(images)
    n_val = max(1, int(round(n * cfg.val_fraction)))
    n_test = int(round(n * cfg.test_fraction))
    if n - n_val - n_test < 1:
        from trainables.errors import ConfigError
        raise ConfigError(f"data.shapes_count: {n} images leave none for training after the val/test fractions")
    splits = {"val": SegSplit(images[:n_val], masks[:n_val]),
              "train": SegSplit(images[n_val + n_test:], masks[n_val + n_test:])}
    if n_test:
        splits["test"] = SegSplit(images[n_val:n_val + n_test], masks[n_val:n_val + n_test])
    return SegData(splits, ["background"] + class_names(cfg.num_shapes), cfg.ignore_index, size, "shapes")
