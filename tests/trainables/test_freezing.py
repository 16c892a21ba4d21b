"""Freezing strategies on real architectures (weights: none): counts follow the stage structure."""
import pytest
import torch

from trainables.config import ModelConfig
from trainables.freezing import STRATEGIES, apply_plan, frozen_stage_count, param_groups, set_train_mode
from trainables.models import build_model

ARCHS = ["resnet18", "vgg11", "mobilenetv3_small_100", "vit_tiny_patch16_224", "tv:resnet18", "scratch_cnn"]


def numel(model, names):
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module", params=ARCHS)
def bundle(request):
    return build_model(ModelConfig(arch=request.param), num_classes=7, image_size=32)


def test_stages_partition_the_backbone(bundle):
    names = [n for n, _ in bundle.model.named_parameters()]
    staged = [n for s in bundle.stages for n in s]
    assert len(staged) == len(set(staged))
    assert sorted(staged + bundle.head) == sorted(names)
    assert len(bundle.stages) >= 4
    head_out = dict(bundle.model.named_parameters())[bundle.head[0]].shape[0]
    assert head_out == 7


def test_counts_per_strategy(bundle):
    m, stages, head = bundle.model, bundle.stages, bundle.head
    total = sum(p.numel() for p in m.parameters())
    head_n = numel(m, head)
    counts = {}
    for depth in (0.0, 0.25, 0.5, 1.0):
        plan = STRATEGIES.get("partial")(bundle, ModelConfig(strategy="partial", freeze_depth=depth), 0)
        apply_plan(m, plan)
        k = frozen_stage_count(depth, len(stages))
        expected = head_n + sum(numel(m, s) for s in stages[k:])
        assert trainable(m) == expected
        counts[depth] = trainable(m)
    assert counts[0.0] == total
    assert counts[1.0] == head_n
    assert counts[0.0] > counts[0.5] > counts[1.0]
    assert frozen_stage_count(0.5, len(stages)) == len(stages) // 2

    apply_plan(m, STRATEGIES.get("linear_probe")(bundle, ModelConfig(), 0))
    assert {n for n, p in m.named_parameters() if p.requires_grad} == set(head)

    apply_plan(m, STRATEGIES.get("full")(bundle, ModelConfig(), 0))
    assert trainable(m) == total

    apply_plan(m, STRATEGIES.get("unfreeze_last_k")(bundle, ModelConfig(unfreeze_k=2), 0))
    assert trainable(m) == head_n + numel(m, stages[-1]) + numel(m, stages[-2])


def test_two_phase_switches_and_uses_two_lrs(bundle):
    cfg = ModelConfig(strategy="two_phase", head_epochs=2, freeze_depth=0.5, backbone_lr_mult=0.01)
    strategy = STRATEGIES.get("two_phase")
    for epoch in (0, 1):
        plan = strategy(bundle, cfg, epoch)
        assert plan.phase == 0 and plan.trainable == set(bundle.head)
    plan = strategy(bundle, cfg, 2)
    assert plan.phase == 1
    apply_plan(bundle.model, plan)
    groups = param_groups(bundle.model, plan, lr=3e-4)
    assert [g["lr"] for g in groups] == pytest.approx([3e-4, 3e-6])
    head_ids = {id(p) for n, p in bundle.model.named_parameters() if n in bundle.head}
    assert {id(p) for p in groups[0]["params"]} == head_ids
    k = frozen_stage_count(0.5, len(bundle.stages))
    assert sum(p.numel() for p in groups[1]["params"]) == sum(numel(bundle.model, s) for s in bundle.stages[k:])


def test_frozen_batchnorm_stats_do_not_change():
    bundle = build_model(ModelConfig(arch="resnet18"), num_classes=3, image_size=32)
    m = bundle.model
    frozen_bn = apply_plan(m, STRATEGIES.get("partial")(bundle, ModelConfig(freeze_depth=0.5), 0))
    assert frozen_bn, "resnet18's first stages hold BatchNorm layers"
    before = {n: b.clone() for n, b in m.named_buffers() if "running_mean" in n}
    opt = torch.optim.SGD(param_groups(m, STRATEGIES.get("partial")(bundle, ModelConfig(freeze_depth=0.5), 0),
                                       0.1), lr=0.1)
    set_train_mode(m, frozen_bn)
    for _ in range(2):
        loss = m(torch.randn(4, 3, 32, 32)).sum()
        loss.backward()
        opt.step()
    frozen_names = {n for n, mod in m.named_modules() if mod in frozen_bn}
    changed = {n.rsplit(".", 1)[0] for n, b in m.named_buffers() if "running_mean" in n
               and not torch.equal(before[n], b)}
    assert frozen_names and not (frozen_names & changed)
    assert changed, "BatchNorm layers of trainable stages still update their statistics"


def test_frozen_params_get_no_optimizer_state(tiny):
    from trainables.classification import Trainer
    from trainables.config import trial_config
    tr = Trainer(trial_config(tiny(model={"strategy": "linear_probe"}, training={"epochs": 1})))
    tr.ensure_phase(0)
    tr.train_epoch(0)
    with_state = {id(p) for p in tr.opt.state}
    head = {id(p) for n, p in tr.model.named_parameters() if n in tr.bundle.head}
    assert with_state == head


def test_frozen_fraction_per_strategy(bundle):
    from trainables.freezing import frozen_fraction
    m, stages = bundle.model, bundle.stages
    total = sum(numel(m, s) for s in stages)
    k = frozen_stage_count(0.5, len(stages))
    expected = {"full": 0.0, "linear_probe": 1.0, "partial": sum(numel(m, s) for s in stages[:k]) / total,
                "unfreeze_last_k": 1 - (numel(m, stages[-1]) + numel(m, stages[-2])) / total}
    cfg = ModelConfig(freeze_depth=0.5, unfreeze_k=2, head_epochs=1)
    for name, value in expected.items():
        plan = STRATEGIES.get(name)(bundle, cfg, 0)
        assert frozen_fraction(bundle, plan) == pytest.approx(value), name
        apply_plan(m, plan)  # the same number from requires_grad
        backbone = [p for n, p in m.named_parameters() if n not in set(bundle.head)]
        assert sum(p.numel() for p in backbone if not p.requires_grad) / total == pytest.approx(value), name
    two = STRATEGIES.get("two_phase")
    assert frozen_fraction(bundle, two(bundle, cfg, 0)) == 1.0
    assert frozen_fraction(bundle, two(bundle, cfg, 1)) == pytest.approx(expected["partial"])


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_freeze_unit_params_ends_at_the_nearest_boundary(arch):
    from trainables.freezing import frozen_fraction, frozen_stages, stage_sizes
    b = build_model(ModelConfig(arch=arch), num_classes=7, image_size=32)
    sizes = stage_sizes(b)
    shares = [sum(sizes[:k]) / sum(sizes) for k in range(len(sizes) + 1)]
    by_stages = frozen_fraction(b, STRATEGIES.get("partial")(b, ModelConfig(freeze_depth=0.5), 0))
    cfg = ModelConfig(freeze_depth=0.5, freeze_unit="params")
    got = frozen_fraction(b, STRATEGIES.get("partial")(b, cfg, 0))
    assert got == pytest.approx(shares[frozen_stages(b, cfg)])
    assert abs(got - 0.5) == pytest.approx(min(abs(s - 0.5) for s in shares))
    assert abs(got - 0.5) < abs(by_stages - 0.5)
    # resnet18's stages: 1.4% frozen by stages, 25% by parameters (layer4 alone holds 75%); ViT-tiny: 43% vs 51%
    assert got == pytest.approx({"resnet18": 0.249, "vit_tiny_patch16_224": 0.514}[arch], abs=0.01)
    two = STRATEGIES.get("two_phase")(b, ModelConfig(freeze_depth=0.5, freeze_unit="params", head_epochs=0), 0)
    assert frozen_fraction(b, two) == pytest.approx(got)
    for depth, k in ((0.0, 0), (1.0, len(sizes))):
        assert frozen_stages(b, ModelConfig(freeze_depth=depth, freeze_unit="params")) == k


def test_unknown_freeze_unit_suggests():
    from trainables.config import trial_config
    from trainables.errors import ConfigError
    with pytest.raises(ConfigError, match=r"model.freeze_unit: 'param' is not one of stages, params.*params"):
        trial_config({"model": {"freeze_unit": "param"}})
