"""scikit-learn's bundled 8x8 handwritten digits: real data that ships offline."""
from __future__ import annotations

import torch

from trainables.config import DataConfig
from trainables.data.base import RawData, TensorSource


def load_digits(cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits as sk_digits
    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).float()  # N x 8 x 8, values 0..16
    images = (images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    return RawData({"train": TensorSource(images, labels)}, [str(i) for i in range(10)], "digits")
