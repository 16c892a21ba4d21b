"""CIFAR-10/100, MNIST and Fashion-MNIST through torchvision; downloaded only when ``data.download: true``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.base import RawData, TensorSource
from trainables.errors import ConfigError, DataError


def _open(cls, name: str, cfg: DataConfig, train: bool):
    if not cfg.root:
        raise ConfigError(f"data.root: required for data set {name!r} (a folder for its files)")
    root = Path(cfg.root).expanduser()
    try:
        return cls(str(root), train=train, download=cfg.download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        hint = "" if cfg.download else " (set data.download: true to fetch it)"
        raise DataError(f"data.root: {name} files not found under {root}{hint}: {e}") from None
    except OSError as e:  # offline download
        raise DataError(f"data.root: could not download {name} into {root}: {e}") from None


def _to_source(ds) -> TensorSource:
    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: N x H x W x C
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    else:  # MNIST-style: N x H x W tensor
        images = data.unsqueeze(1).contiguous()
    return TensorSource(images, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long))


def _loader(name: str, attr: str):
    def load(cfg: DataConfig) -> RawData:
        import torchvision.datasets as tvd
        cls = getattr(tvd, attr)
        train, test = _open(cls, name, cfg, True), _open(cls, name, cfg, False)
        return RawData({"train": _to_source(train), "test": _to_source(test)}, list(train.classes), name)
    return load


load_cifar10 = _loader("cifar10", "CIFAR10")
load_cifar100 = _loader("cifar100", "CIFAR100")
load_mnist = _loader("mnist", "MNIST")
load_fashion_mnist = _loader("fashion_mnist", "FashionMNIST")
