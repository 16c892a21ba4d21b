"""Segmentation models: they train on CPU at tiny sizes, freeze through the shared strategies, and take their
encoder from classification checkpoints by name."""
import time

import pytest
import torch

from trainables.classification import Trainer
from trainables.config import ModelConfig, trial_config
from trainables.checkpoint import NoCheckpoints, write_atomic
from trainables.errors import ConfigError, WeightsError
from trainables.freezing import STRATEGIES, apply_plan
from trainables.segmentation.data import load_seg_data
from trainables.segmentation.losses import build_loss
from trainables.segmentation.models import SEG_MODELS, build_seg_model
from trainables.segmentation.transforms import normalize

TINY_SEGFORMER = {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 2, 4],
                  "decoder_hidden_size": 32}


@pytest.fixture(scope="module")
def batch():
    from trainables.config import DataConfig
    data = load_seg_data(DataConfig(name="shapes", shapes_count=10), 32)
    split = data.splits["train"]
    return split.images[:4], split.masks[:4].long()


def _steps(bundle, batch, steps=5, lr=3e-3, images=4):
    torch.manual_seed(0)
    model = bundle.model
    x = normalize(batch[0][:images], bundle.mean, bundle.std, torch.device("cpu"))
    y = batch[1][:images]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss_fn = build_loss("ce", 4)
    model.train()
    losses = []
    for _ in range(steps):
        logits = model(x)
        assert logits.shape == (images, 4, 32, 32)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_tiny_segformer_trains(batch):
    bundle = SEG_MODELS.get("segformer")(ModelConfig(arch="mit_b0", decoder="segformer"), 4, "none",
                                         overrides=TINY_SEGFORMER)
    assert len(bundle.stages) == 4 and all(n.startswith("net.decode_head.") for n in bundle.head)
    losses = _steps(bundle, batch)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("arch,decoder", [("mobilenetv2_050", "mobilenetv2_decoder"), ("scratch_cnn", "unet"),
                                          ("resnet18", "fpn")])
def test_cnn_decoders_train(batch, arch, decoder):
    bundle = build_seg_model(ModelConfig(arch=arch, decoder=decoder, conv_layers=5, first_layer_filters=8,
                                         decoder_width=32), 4)
    losses = _steps(bundle, batch, steps=4, lr=1e-3, images=2)
    assert losses[-1] < losses[0], losses


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("decoder", ["unet", "segformer"])
def test_freezing_strategies_see_decoder_as_head(decoder):
    cfg = ModelConfig(arch="resnet18" if decoder == "unet" else "mit_b0", decoder=decoder, freeze_depth=0.5)
    kwargs = {"overrides": TINY_SEGFORMER} if decoder == "segformer" else {}
    bundle = SEG_MODELS.get(decoder)(cfg, 3, "none", **kwargs)
    model = bundle.model
    decoder_module = model.net.decode_head if decoder == "segformer" else model.decoder
    total = sum(p.numel() for p in model.parameters())

    apply_plan(model, STRATEGIES.get("linear_probe")(bundle, cfg, 0))
    assert _trainable(model) == sum(p.numel() for p in decoder_module.parameters())

    apply_plan(model, STRATEGIES.get("full")(bundle, cfg, 0))
    assert _trainable(model) == total

    apply_plan(model, STRATEGIES.get("partial")(bundle, cfg, 0))
    frozen = int(len(bundle.stages) * 0.5)
    params = dict(model.named_parameters())
    for i, stage in enumerate(bundle.stages):  # a prefix of stages frozen, the rest and the decoder train
        assert all(params[n].requires_grad == (i >= frozen) for n in stage), i
    assert all(params[n].requires_grad for n in bundle.head)


def test_encoder_loads_from_a_classification_checkpoint(tmp_path):
    cfg = trial_config({"data": {"name": "shapes", "image_size": 16, "shapes_count": 30},
                        "model": {"arch": "resnet18"},
                        "training": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 1}})
    trainer = Trainer(cfg)  # the orchestrator's pretrain stage does exactly this
    trainer.run(lambda m: None, NoCheckpoints())
    path = tmp_path / "pretrained.pt"
    write_atomic({"model": trainer.model.state_dict(), "config": cfg.to_dict()}, path)

    bundle = build_seg_model(ModelConfig(arch="resnet18", decoder="unet", weights=f"file:{path}"), 4)
    source = trainer.model.state_dict()
    for name, tensor in bundle.model.encoder.state_dict().items():
        assert torch.equal(tensor, source[name]), name

    with pytest.raises(WeightsError, match=r"does not fit encoder ResNet \(missing: layer1\.2\.conv1\.weight"):
        build_seg_model(ModelConfig(arch="resnet34", decoder="unet", weights=f"file:{path}"), 4)
    source["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(source, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"shape mismatch: layer1\.0\.conv1\.weight \(3, 3, 3, 3\) vs"):
        build_seg_model(ModelConfig(arch="resnet18", decoder="unet", weights=f"file:{tmp_path / 'bad.pt'}"), 4)


def test_segformer_imagenet_offline_uncached_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="not in the Hugging Face cache and the hub is offline"):
        build_seg_model(ModelConfig(arch="mit_b0", decoder="segformer", weights="imagenet"), 3)
    assert time.perf_counter() - start < 20


def test_wrong_encoder_for_a_decoder_is_a_config_error():
    with pytest.raises(ConfigError, match="segformer decoder needs a Mix Transformer encoder"):
        build_seg_model(ModelConfig(arch="resnet18", decoder="segformer"), 3)
    with pytest.raises(ConfigError, match="did you mean: unet"):
        build_seg_model(ModelConfig(arch="resnet18", decoder="unte"), 3)
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_seg_model(ModelConfig(arch="resnet_18x", decoder="unet"), 3)
