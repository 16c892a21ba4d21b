"""From-scratch baselines: the iNaturalist study's configurable CNN and the Dogs-vs-Cats baseline CNN.

Both expose timm's ``group_matcher`` / ``get_classifier`` so freezing treats them like any timm model.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.catalog import ACTIVATIONS  # model.activation: name -> torch.nn class
from trainables.config import ModelConfig


def conv_block(cin: int, cout: int, k: int, act: type, bn: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers += [act(), nn.MaxPool2d(2, ceil_mode=True)]
    return nn.Sequential(*layers)


class StagedCNN(nn.Module):
    """Conv blocks -> global average pool -> dense -> dropout -> linear head."""

    def __init__(self, widths: list[int], num_classes: int, kernel_size: int = 3, activation: str = "relu",
                 batch_norm: bool = True, dropout: float = 0.0, dense_units: int = 128):
        super().__init__()
        act = ACTIVATIONS[activation]
        chans = [3] + widths
        self.blocks = nn.Sequential(*[conv_block(chans[i], chans[i + 1], kernel_size, act, batch_norm)
                                      for i in range(len(widths))])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1], dense_units), act(), nn.Dropout(dropout))
        self.head = nn.Linear(dense_units, num_classes)
        self.num_features = dense_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(self.pool(self.blocks(x))))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^blocks\.0\.", "blocks": r"^blocks\.(\d+)"}

    def get_classifier(self) -> nn.Module:
        return self.head


def scratch_cnn(cfg: ModelConfig, num_classes: int) -> StagedCNN:
    widths = [max(4, min(1024, int(round(cfg.first_layer_filters * cfg.filter_org ** i))))
              for i in range(cfg.conv_layers)]
    return StagedCNN(widths, num_classes, cfg.kernel_size, cfg.activation, cfg.batch_norm, cfg.dropout,
                     cfg.dense_units)


def baseline_cnn(cfg: ModelConfig, num_classes: int) -> StagedCNN:
    return StagedCNN([32, 64, 128], num_classes, 3, "relu", True, cfg.dropout or 0.5, 128)


LOCAL_MODELS = {"scratch_cnn": scratch_cnn, "baseline_cnn": baseline_cnn}
