"""Segmentation data sets by name (``data.name`` when ``task: segmentation``): ``segfolder``, ``ade20k``, ``shapes``.

``load_seg_data(cfg.data, image_size)`` -> :class:`SegData` (splits of uint8 images and class-index masks at
``image_size``, class names, ignore index). The classification data sets live in ``trainables.data``.
"""
from __future__ import annotations

from trainables.catalog import SEG_DATASETS  # the names; each loader's module is imported when it is asked for
from trainables.config import DataConfig
from trainables.segmentation.data.base import LazyPairs, SegData, SegSplit


def load_seg_data(cfg: DataConfig, image_size: int) -> SegData:
    """Load segmentation data set ``cfg.name`` at ``image_size`` pixels (square).

    Example:
        >>> from trainables.config import DataConfig
        >>> data = load_seg_data(DataConfig(name="shapes", shapes_count=20), image_size=16)
        >>> data.class_names, tuple(data.splits["train"].masks.shape)
        (['background', 'circle', 'square', 'triangle'], (16, 16, 16))
    """
    return SEG_DATASETS.get(cfg.name)(cfg, image_size)


__all__ = ["SEG_DATASETS", "LazyPairs", "SegData", "SegSplit", "load_seg_data"]
