"""Bad weights: a missing file, a file that is not a checkpoint, pickled code, a checkpoint of another
architecture (the mismatched keys are named), ImageNet weights offline and uncached (fails fast, no hub retries)."""
import pytest
import torch

from trainables.config import ModelConfig
from trainables.errors import WeightsError
from trainables.models import build_model


def test_file_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(ModelConfig(arch="resnet18", weights=f"file:{tmp_path}/missing.pt"), 2)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        build_model(ModelConfig(arch="resnet18", weights=f"file:{junk}"), 2)
    other = tmp_path / "other.pt"
    torch.save(build_model(ModelConfig(arch="vgg11"), 2).model.state_dict(), other)
    with pytest.raises(WeightsError, match=r"does not fit this architecture \(missing: conv1.weight.*"
                                           r"unexpected: features.0.weight"):
        build_model(ModelConfig(arch="resnet18", weights=f"file:{other}"), 2)
    tensors = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], tensors)
    with pytest.raises(WeightsError, match="does not hold a state dict of tensors"):
        build_model(ModelConfig(arch="resnet18", weights=f"file:{tensors}"), 2)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        build_model(ModelConfig(arch="resnet18", weights=f"file:{path}"), 2)


def test_imagenet_weights_offline_uncached_fail_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match="not cached and the hub is offline"):
        build_model(ModelConfig(arch="resnet18", weights="imagenet"), 2)


def test_torchvision_weights_offline_uncached(monkeypatch, tmp_path):
    torch.hub.set_dir(str(tmp_path))
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    try:
        with pytest.raises(WeightsError, match="cannot load torchvision weights"):
            build_model(ModelConfig(arch="tv:resnet18", weights="imagenet"), 2)
    finally:
        torch.hub.set_dir(str(tmp_path / "x"))
