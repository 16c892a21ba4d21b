"""Data sets by name: ``load_data(cfg.data, image_size)`` -> :class:`ImageData` (see ``base.prepare``)."""
from __future__ import annotations

from trainables.catalog import DATASETS  # the names; each loader's module is imported when it is asked for
from trainables.config import DataConfig
from trainables.data.base import ImageData, RawData, Split, prepare, select_classes


def load_data(cfg: DataConfig, image_size: int) -> ImageData:
    """Load data set ``cfg.name`` and prepare it at ``image_size`` pixels.

    Example:
        >>> from trainables.config import DataConfig
        >>> data = load_data(DataConfig(name="digits"), image_size=16)
        >>> data.num_classes, tuple(data.splits["train"].images.shape[1:])
        (10, (3, 16, 16))
    """
    return prepare(load_raw(cfg), cfg, image_size)


def load_raw(cfg: DataConfig) -> RawData:
    """The data set's splits and class names, restricted to ``cfg.classes``, not yet decoded or resized."""
    return select_classes(DATASETS.get(cfg.name)(cfg), cfg.classes)


__all__ = ["DATASETS", "ImageData", "Split", "load_data", "load_raw", "prepare"]
