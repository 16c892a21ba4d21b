"""Batched augmentation (the GPU path), checked on the CPU: neutral parameters change nothing, each part does
what it says, the draws follow the seed, and only training batches are augmented."""
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.batch_augment import affine, batch_augment, jitter
from trainables.classification import Trainer
from trainables.config import trial_config
from trainables.transforms import Preprocess

N, S = 3, 16


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(0, 256, (N, 3, S, S), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def warp(x: torch.Tensor, scale=1.0, log_ratio=0.0, flip=False, degrees=0.0, u=0.5, v=0.5) -> torch.Tensor:
    def full(value):
        return torch.full((len(x),), value)
    theta = affine(full(scale), full(log_ratio), full(flip), full(degrees), full(u), full(v))
    grid = F.affine_grid(theta, [len(x), 3, S, S], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_neutral_parameters_return_the_images(images):
    assert torch.allclose(warp(images), images.float(), atol=1e-3)
    ones = torch.ones(N)
    assert torch.allclose(jitter(images.float(), ones, ones, ones), images.float(), atol=1e-3)


def test_flip_mirrors_and_a_quarter_turn_rotates(images):
    assert torch.allclose(warp(images, flip=True), images.flip(-1).float(), atol=1e-3)
    turned = warp(images, degrees=90.0)
    assert any(torch.allclose(turned, images.rot90(k, (2, 3)).float(), atol=1e-2) for k in (1, 3))


def test_a_crop_of_the_top_left_quarter_samples_only_there():
    x = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    x[..., :S // 2, :S // 2] = 200                  # the top-left quarter is bright, the rest black
    out = warp(x, scale=0.25, u=0.0, v=0.0)
    inner = out[..., 1:-1, 1:-1]                     # the border pixels blend with the zero padding
    assert torch.allclose(inner, torch.full_like(inner, 200.0), atol=1e-3)


def test_jitter_factors_and_range(images):
    x = images.float()
    half = torch.full((N,), 0.5)
    ones = torch.ones(N)
    assert torch.allclose(jitter(x, half, ones, ones), x * 0.5, atol=1e-3)     # brightness
    gray = jitter(x, ones, ones, torch.zeros(N))                                # saturation 0: gray
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-3) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-3)
    out = batch_augment("standard", S)(images)
    assert out.dtype == torch.float32 and out.shape == (N, 3, S, S)
    assert out.min() >= 0 and out.max() <= 255


def test_draws_follow_the_seed(images):
    aug = batch_augment("standard", S)
    torch.manual_seed(1)
    a = aug(images)
    torch.manual_seed(1)
    b = aug(images)
    c = aug(images)
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert not math.isclose(float((a - images.float()).abs().mean()), 0.0)


def test_only_training_batches_are_augmented_and_only_presets_with_a_batched_form(images):
    pre = Preprocess((0.5,) * 3, (0.25,) * 3, torch.device("cpu"), batch_augment=batch_augment("standard", S))
    plain = Preprocess((0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    assert torch.equal(pre(images, train=False), plain(images, train=False))
    assert not torch.equal(pre(images, train=True), plain(images, train=True))
    assert batch_augment("none", S) is None and batch_augment("strong", S) is None


def test_cpu_trials_keep_torchvisions_per_image_presets(tiny):
    trainer = Trainer(trial_config(tiny(data={"augment": "standard"})))
    assert trainer.task.pre.batch_augment is None and trainer.task.pre.augment is not None
