"""Model registry and weights: names, suggestions, file: checkpoints, offline errors."""
import pytest
import torch

from trainables.config import ModelConfig
from trainables.errors import ConfigError, WeightsError
from trainables.models import build_model, check_arch, list_models


def test_names_resolve_and_unknown_names_suggest():
    for arch in ("resnet50", "vgg16", "efficientnetv2_rw_s", "inception_v3", "tv:googlenet", "scratch_cnn",
                 "baseline_cnn"):
        check_arch(arch)
    with pytest.raises(ConfigError, match=r"model.arch: unknown model 'resnet5O'.*resnet50"):
        check_arch("resnet5O")
    assert "tv:googlenet" in list_models("tv:*")
    assert "resnet18" in list_models("resnet1*")


def test_input_size_and_normalisation_come_from_the_model():
    b = build_model(ModelConfig(arch="tv:inception_v3"), num_classes=4)
    assert b.input_size == 299
    b = build_model(ModelConfig(arch="resnet18"), num_classes=4)
    assert b.input_size == 224 and b.mean == pytest.approx((0.485, 0.456, 0.406))


def test_scratch_cnn_is_configurable():
    cfg = ModelConfig(arch="scratch_cnn", conv_layers=4, first_layer_filters=16, filter_org=2.0, activation="mish",
                      batch_norm=False, dense_units=64)
    b = build_model(cfg, num_classes=5, image_size=32)
    convs = [m for m in b.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in b.model.modules())
    assert any(isinstance(m, torch.nn.Mish) for m in b.model.modules())
    assert b.model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_file_weights_load_backbone_and_replace_head(tmp_path):
    src = build_model(ModelConfig(arch="resnet18"), num_classes=5)
    path = tmp_path / "src.pt"
    torch.save({"model": src.model.state_dict(), "epoch": 3}, path)
    dst = build_model(ModelConfig(arch="resnet18", weights=f"file:{path}"), num_classes=2)
    assert torch.equal(dst.model.conv1.weight, src.model.conv1.weight)
    assert dst.model.fc.out_features == 2

    from safetensors.torch import save_file
    st = tmp_path / "src.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(st))
    dst = build_model(ModelConfig(arch="resnet18", weights=f"file:{st}"), num_classes=2)
    assert torch.equal(dst.model.layer4[0].conv1.weight, src.model.layer4[0].conv1.weight)


def test_scratch_models_reject_imagenet_weights():
    with pytest.raises(ConfigError, match="trains from scratch"):
        build_model(ModelConfig(arch="scratch_cnn", weights="imagenet"), 2)
