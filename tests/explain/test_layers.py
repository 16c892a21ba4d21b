"""The Grad-CAM layer and the first convolution come from the stages of any architecture (timm, torchvision and
local CNNs, ViT tokens), and gradients reach the Grad-CAM layer of each."""
from pathlib import Path

import pytest
import torch

from explain.attributions import gradcam
from explain.layers import first_conv, gradcam_target
from explain.loading import TrialModel
from trainables.config import trial_config
from trainables.models import build_model

CASES = [  # arch, image size, Grad-CAM layer, layout, first convolution
    ("scratch_cnn", 32, "blocks.2", "nchw", "blocks.0.0"),
    ("resnet18", 32, "layer3", "nchw", "conv1"),                     # layer4 is 1 x 1 at 32 px: the stage before
    ("mobilenetv3_small_100", 64, "blocks.5", "nchw", "conv_stem"),  # conv_head runs after pooling
    ("tv:resnet18", 64, "layer4.1", "nchw", "conv1"),                # torchvision: top-level children as stages
    ("vit_tiny_patch16_224", 64, "blocks.11", "tokens", "patch_embed.proj"),  # the last block's input tokens
]


def trial_model(arch: str, size: int) -> TrialModel:
    cfg = trial_config({"model": {"arch": arch, "conv_layers": 3, "first_layer_filters": 8},
                        "data": {"image_size": size}})
    torch.manual_seed(0)
    bundle = build_model(cfg.model, 3, size)
    return TrialModel(bundle.model.eval(), bundle, cfg, ["a", "b", "c"], size, bundle.mean, bundle.std,
                      Path("none"), 0, label=arch)


@pytest.mark.parametrize("arch, size, layer, layout, conv", CASES)
def test_gradcam_layer_and_first_conv_from_stages(arch, size, layer, layout, conv):
    tm = trial_model(arch, size)
    target = gradcam_target(tm.model, tm.bundle.stages, size)
    assert (target.name, target.layout) == (layer, layout)
    if layout == "tokens":
        assert target.prefix == 1  # the class token is not a place in the image
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    signed, _ = gradcam(tm, images, [0, None], relu=False)  # an untrained model's evidence may be all negative
    assert signed.shape == (2, size, size) and torch.isfinite(signed).all()
    assert signed.abs().sum() > 0, "no gradient reached the layer"
    name, module = first_conv(tm.model, size)
    assert name == conv and module.in_channels == 3
