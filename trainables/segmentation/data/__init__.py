"""Segmentation data sets by name (``data.name`` when ``task: segmentation``): ``segfolder``, ``ade20k``, ``shapes``.

``load_seg_data(cfg.data, image_size)`` -> :class:`SegData` (splits of uint8 images and class-index masks at
``image_size``, class names, ignore index). The classification data sets live in ``trainables.data``.
"""
from __future__ import annotations

from trainables.config import DataConfig
from trainables.registry import Registry
from trainables.segmentation.data.base import LazyPairs, SegData, SegSplit

SEG_DATASETS: Registry = Registry("data.name")


def load_seg_data(cfg: DataConfig, image_size: int) -> SegData:
    """Load segmentation data set ``cfg.name`` at ``image_size`` pixels (square).

    Example:
        >>> from trainables.config import DataConfig
        >>> data = load_seg_data(DataConfig(name="shapes", shapes_count=20), image_size=16)
        >>> data.class_names, tuple(data.splits["train"].masks.shape)
        (['background', 'circle', 'square', 'triangle'], (16, 16, 16))
    """
    return SEG_DATASETS.get(cfg.name)(cfg, image_size)


def _register() -> None:
    from trainables.segmentation.data.ade20k import load_ade20k
    from trainables.segmentation.data.segfolder import load_segfolder
    from trainables.segmentation.data.shapes import load_shapes
    SEG_DATASETS.register("segfolder")(load_segfolder)
    SEG_DATASETS.register("ade20k")(load_ade20k)
    SEG_DATASETS.register("shapes")(load_shapes)


_register()

__all__ = ["SEG_DATASETS", "LazyPairs", "SegData", "SegSplit", "load_seg_data"]
