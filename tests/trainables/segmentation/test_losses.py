"""Segmentation losses: the registry, the binary convention, the ignore index."""
import pytest
import torch
import torch.nn.functional as F

from trainables.errors import ConfigError
from trainables.segmentation.losses import build_loss


def test_unknown_loss_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean: bce_dice"):
        build_loss("bce_dic", 2)


def test_bce_needs_two_classes():
    with pytest.raises(ConfigError, match="training.loss: bce is for binary tasks"):
        build_loss("bce", 4)


def test_bce_on_the_logit_difference_equals_two_class_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 5, 5, generator=g)
    target = torch.randint(0, 2, (2, 5, 5), generator=g)
    target[0, 0, :] = 255
    bce = build_loss("bce", 2)(logits, target)
    assert bce == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "bce", "dice", "bce_dice", "ce_dice"])
def test_ignored_pixels_change_nothing(name):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 4, 4, generator=g)
    target = torch.randint(0, 2, (1, 4, 4), generator=g)
    ignored = target.clone()
    ignored[0, 0] = 255
    other = logits.clone()
    other[0, :, 0] = 50.0  # wild logits where the target is ignored
    loss = build_loss(name, 2)
    assert loss(logits, ignored) == pytest.approx(loss(other, ignored).item(), rel=1e-5)


def test_dice_is_near_zero_for_a_perfect_prediction():
    target = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 30
    assert build_loss("dice", 3)(logits, target).item() < 1e-3
    assert build_loss("dice", 3)(-logits, target).item() > 0.5
