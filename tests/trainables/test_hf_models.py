"""hf:<model id> models (transformers AutoModelForImageClassification): tiny configs in a folder, offline."""
import logging
import math
import time

import pytest
import torch

from trainables.checkpoint import DirCheckpoints
from trainables.checkpoint_delta import checkpoint_weights
from trainables.classification import train
from trainables.config import ModelConfig
from trainables.errors import ConfigError
from trainables.freezing import STRATEGIES, frozen_fraction
from trainables.models import build_model, check_arch
from trainables.models.hf import NO_PREFIX_CACHE

transformers = pytest.importorskip("transformers")


def _vit():
    return transformers.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)


def _convnext():
    return transformers.ConvNextConfig(patch_size=2, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])


CONFIGS = {"vit": (_vit, 4, "hf.vit.embeddings.", "hf.vit.layernorm."),
           "convnext": (_convnext, 6, "hf.convnext.embeddings.", "hf.convnext.layernorm.")}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    CONFIGS[request.param][0]().save_pretrained(path)
    return request.param, path


def test_bundle_has_logits_head_and_ordered_stages(folder):
    kind, path = folder
    _, n_stages, first, last = CONFIGS[kind]
    check_arch(f"hf:{path}")
    b = build_model(ModelConfig(arch=f"hf:{path}"), num_classes=5, image_size=16)
    assert b.model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert b.head == ["hf.classifier.weight", "hf.classifier.bias"]
    names = [n for n, _ in b.model.named_parameters()]
    staged = [n for s in b.stages for n in s]
    assert sorted(staged + b.head) == sorted(names) and len(staged) == len(set(staged))
    assert len(b.stages) == n_stages  # embeddings, each layer / stage, final norm
    assert all(n.startswith(first) for n in b.stages[0]) and all(n.startswith(last) for n in b.stages[-1])
    assert b.mean == pytest.approx((0.485, 0.456, 0.406))
    cfg = ModelConfig(freeze_depth=0.5, unfreeze_k=1, head_epochs=1)
    fractions = {s: frozen_fraction(b, STRATEGIES.get(s)(b, cfg, 0)) for s in
                 ("full", "linear_probe", "partial", "unfreeze_last_k", "two_phase")}
    assert fractions["full"] == 0 and fractions["linear_probe"] == fractions["two_phase"] == 1
    assert 0 < fractions["partial"] < fractions["unfreeze_last_k"] < 1


def _trained(path, tmp_path, strategy: str, tiny):
    """Train 1 epoch from a saved backbone; (rows, source state, trained state, plan)."""
    arch = f"hf:{path}"
    src = build_model(ModelConfig(arch=arch), num_classes=10, image_size=16)
    weights = tmp_path / "src.pt"
    torch.save(src.model.state_dict(), weights)
    model_cfg = {"arch": arch, "weights": f"file:{weights}", "strategy": strategy, "freeze_depth": 0.5}
    rows = []
    train(tiny(model=model_cfg, training={"epochs": 1, "max_steps_per_epoch": 4, "lr": 1e-2}), rows.append,
          DirCheckpoints(tmp_path / "ckpt"))
    state = checkpoint_weights(DirCheckpoints(tmp_path / "ckpt").latest())  # full weights of a delta checkpoint
    plan = STRATEGIES.get(strategy)(src, ModelConfig(strategy=strategy, freeze_depth=0.5), 0)
    return rows, src, state, plan


@pytest.mark.parametrize("strategy", ["linear_probe", "partial"])
def test_trains_offline_and_freezes_the_right_parameters(folder, strategy, tiny, tmp_path, caplog):
    _, path = folder
    caplog.set_level(logging.INFO)
    rows, src, state, plan = _trained(path, tmp_path, strategy, tiny)
    assert len(rows) == 1
    for key in ("train_loss", "val_loss", "val_acc", "val_macro_f1"):
        assert math.isfinite(rows[0][key]), key
    before = src.model.state_dict()
    params = dict(src.model.named_parameters())
    frozen = [n for n in params if n not in plan.trainable]
    trained = [n for n in params if n in plan.trainable and n not in src.head]
    assert frozen and all(torch.equal(state[n], before[n]) for n in frozen)
    assert not torch.equal(state["hf.classifier.weight"], before["hf.classifier.weight"])
    assert rows[0]["trainable_params"] == sum(params[n].numel() for n in plan.trainable)
    if strategy == "linear_probe":
        assert not trained and rows[0]["feature_cache"] == 1  # the head's input is cached
    else:
        assert trained and any(not torch.equal(state[n], before[n]) for n in trained)
        assert rows[0]["prefix_cache"] == 0
        assert NO_PREFIX_CACHE in caplog.text  # left out of the prefix cache, with the reason logged


def test_imagenet_weights_not_cached_fail_at_once():
    from huggingface_hub.constants import HF_HUB_CACHE
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache") as err:
        build_model(ModelConfig(arch="hf:tlsweep-tests/no-such-model", weights="imagenet"), num_classes=3)
    assert time.perf_counter() - start < 5
    assert HF_HUB_CACHE in str(err.value) and "huggingface-cli download tlsweep-tests/no-such-model" in str(err.value)
    assert str(err.value).startswith("model.weights:")


def test_pretrained_folder_loads_backbone_with_a_new_head(tmp_path):
    cfg = _vit()
    cfg.num_labels = 7
    src = transformers.ViTForImageClassification(cfg)
    src.save_pretrained(tmp_path)
    b = build_model(ModelConfig(arch=f"hf:{tmp_path}", weights="imagenet"), num_classes=3)
    got = b.model.hf
    assert got.classifier.out_features == 3
    assert torch.equal(got.vit.embeddings.cls_token, src.vit.embeddings.cls_token)
    # another image size: position embeddings interpolated, not re-initialised
    assert b.input_size == 16 and b.model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_bad_hf_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        check_arch(f"hf:{tmp_path}")
    with pytest.raises(ConfigError, match="expected hf:<hub id>"):
        check_arch("hf:")
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        build_model(ModelConfig(arch="hf:tlsweep-tests/no-such-model"), num_classes=3)


def test_feature_cache_keys_on_the_config(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _vit().save_pretrained(a)
    cfg = _vit()
    cfg.hidden_act = "relu"  # same parameters, another computation
    cfg.save_pretrained(b)
    ka = build_model(ModelConfig(arch=f"hf:{a}"), num_classes=3).model.cache_key
    kb = build_model(ModelConfig(arch=f"hf:{b}"), num_classes=3).model.cache_key
    assert ka != kb
