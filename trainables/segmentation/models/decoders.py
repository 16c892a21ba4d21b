"""Decoders on an encoder's feature pyramid, and the model that joins them (logits at the input size).

* ``unet``: from the deepest feature up, upsample x2, concatenate the skip feature, two 3x3 conv-BN-ReLU;
  ``model.decoder_width`` channels at the deepest level, halved per level up (at least 16).
* ``fpn``: 1x1 lateral convs to ``decoder_width`` channels, top-down sums, a 3x3 conv per level, all upsampled to
  the finest level (stride 4, or 2 when the encoder has nothing finer) and summed.
* ``mobilenetv2_decoder``: the earlier project's decoder on the deepest (stride 32) feature only: five blocks of a
  3x3 conv and a stride-2 transposed conv (widths 512, 512, 256, 128, 64 from the encoder side, i.e. 64-128-256-
  512-512 read from the output), ReLU, Xavier-initialised, back to full resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError

DECONV_WIDTHS = (512, 512, 256, 128, 64)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    def __init__(self, channels: list[int], num_classes: int, width: int = 64):
        super().__init__()
        widths = [max(16, width // 2 ** i) for i in range(len(channels) - 1)]  # deepest level first
        blocks, cin = [], channels[-1]
        for skip, w in zip(reversed(channels[:-1]), widths):
            blocks.append(nn.Sequential(conv_bn_relu(cin + skip, w), conv_bn_relu(w, w)))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


class FPNDecoder(nn.Module):
    def __init__(self, channels: list[int], reductions: list[int], num_classes: int, width: int = 64):
        super().__init__()
        used = [i for i, r in enumerate(reductions) if r >= 4] or list(range(len(reductions)))
        self.levels = used
        self.lateral = nn.ModuleList([nn.Conv2d(channels[i], width, 1) for i in used])
        self.smooth = nn.ModuleList([conv_bn_relu(width, width // 2) for _ in used])
        self.head = nn.Sequential(conv_bn_relu(width // 2, width // 2), nn.Conv2d(width // 2, num_classes, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = [features[i] for i in self.levels]
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down pathway
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        size = laterals[0].shape[-2:]
        fused = sum(F.interpolate(s(p), size=size, mode="bilinear", align_corners=False)
                    for s, p in zip(self.smooth, laterals))
        return self.head(fused)


class DeconvDecoder(nn.Module):
    def __init__(self, channels: list[int], reductions: list[int], num_classes: int):
        super().__init__()
        if reductions[-1] != 2 ** len(DECONV_WIDTHS):
            raise ConfigError(f"model.decoder: mobilenetv2_decoder upsamples x{2 ** len(DECONV_WIDTHS)} from the "
                              f"deepest feature, whose stride is {reductions[-1]} for this encoder")
        layers, cin = [], channels[-1]
        for w in DECONV_WIDTHS:
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(inplace=True),
                       nn.ConvTranspose2d(w, w, 2, stride=2), nn.ReLU(inplace=True)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self.body(features[-1]))


class SegModel(nn.Module):
    """``encoder`` (a feature pyramid) + ``decoder``; ``forward`` returns logits [B, C, H, W] at the input size."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, indices: list[int]):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.indices = indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        logits = self.decoder(features)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits
