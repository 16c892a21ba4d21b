"""Synthetic shapes, generated offline and deterministically: circles, squares and triangles on noisy textures.

The same generator serves two tasks. Segmentation (``trainables.segmentation.data``, data set ``shapes``): each
image holds 1-3 shapes and its mask is exact, because every shape is painted through its own mask (later shapes
cover earlier ones in both). Classification (this module's ``shapes``, named in ``trainables.catalog.DATASETS``):
each image holds one shape and the label is its class, the source task a segmentation encoder is pretrained on.

Classes (``data.num_shapes``): up to 3 are the shape kinds, in any colour; 4 to 9 are kind x colour (red, green,
blue), so colour then decides the class too. Backgrounds are grey-ish textures (channels within 40 of each
other); shapes are saturated colours (channels at least 140 apart), so no background pixel has a shape's colour.
"""
from __future__ import annotations

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.base import RawData, TensorSource
from trainables.errors import ConfigError

KINDS = ("circle", "square", "triangle")
COLOURS = {"red": (0, 1, 2), "green": (1, 0, 2), "blue": (2, 0, 1)}  # (high, low, other) channel of each colour
CLASSIFICATION_SEED_OFFSET = 7919  # pretraining images differ from the segmentation images of the same split_seed
TILT = 0.3  # squares and triangles are tilted by up to 0.3 rad (17 degrees): upright-ish, as in toy shape sets


def class_names(num_shapes: int) -> list[str]:
    """Foreground class names: the kinds (<= 3) or ``'<colour> <kind>'`` (4-9), colour-major.

    Example:
        >>> class_names(3), class_names(4)[3]
        (['circle', 'square', 'triangle'], 'green circle')
    """
    if not 1 <= num_shapes <= len(KINDS) * len(COLOURS):
        raise ConfigError(f"data.num_shapes: must be in [1, {len(KINDS) * len(COLOURS)}], got {num_shapes}")
    if num_shapes <= len(KINDS):
        return list(KINDS[:num_shapes])
    return [f"{c} {k}" for c in COLOURS for k in KINDS][:num_shapes]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey-ish texture: base level + two random sinusoids + pixel noise + a small tint, as float H x W x 3."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    level = rng.uniform(70, 170)
    texture = np.zeros((size, size), np.float32)
    for _ in range(2):
        fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        texture += rng.uniform(5, 20) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    noise = rng.normal(0, 8, (size, size)).astype(np.float32)
    tint = rng.uniform(-12, 12, 3)
    img = level + texture[..., None] + noise[..., None] + tint
    return np.clip(img, 0, 255)


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Pixels (centres) inside the shape: a disc of radius ``r``, or a rotated square or equilateral triangle of
    the same area (pixel classes stay balanced across kinds)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if kind == "square":
        half = r * np.sqrt(np.pi) / 2                      # (2 half)^2 = pi r^2
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    inradius = r * np.sqrt(np.pi / (3 * np.sqrt(3)))        # 3 sqrt(3) inradius^2 = pi r^2
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):  # three half-planes of an equilateral triangle
        a = angle + np.pi / 2 + k * 2 * np.pi / 3
        inside &= (np.cos(a) * dx + np.sin(a) * dy) <= inradius
    return inside


def _colour(rng: np.random.Generator, cls: int, num_shapes: int) -> np.ndarray:
    """A saturated RGB colour: random for kind-only classes, the class's colour (jittered) for kind x colour."""
    if num_shapes <= len(KINDS):
        hi, lo, other = rng.permutation(3)
    else:
        hi, lo, other = COLOURS[list(COLOURS)[cls // len(KINDS)]]
    rgb = np.zeros(3)
    rgb[hi], rgb[lo], rgb[other] = rng.uniform(210, 255), rng.uniform(0, 50), rng.uniform(0, 60)
    return np.round(rgb)


def _draw(rng: np.random.Generator, size: int, num_shapes: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    img = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(count):
        cls = int(rng.integers(num_shapes))
        kind = KINDS[cls % len(KINDS)]
        inside = np.zeros_like(mask, dtype=bool)
        while not inside.any():  # a tiny triangle can miss every pixel centre: draw it again
            r = rng.uniform(0.15, 0.28) * size
            cx, cy = rng.uniform(r * 0.7, size - r * 0.7, 2)
            inside = _shape_mask(kind, size, cx, cy, r, rng.uniform(-TILT, TILT))
        img[inside] = _colour(rng, cls, num_shapes)
        mask[inside] = cls + 1
    return np.round(img).astype(np.uint8), mask


def generate(count: int, size: int, seed: int, num_shapes: int = 3, max_shapes: int = 3,
             min_shapes: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` scenes: uint8 images [N, 3, S, S] and uint8 masks [N, S, S] (0 background, c + 1 shape class c).

    Example:
        >>> images, masks = generate(2, 16, seed=0)
        >>> tuple(images.shape), int(masks.max()) <= 3
        ((2, 3, 16, 16), True)
    """
    class_names(num_shapes)  # range check
    rng = np.random.default_rng([seed, size, num_shapes])
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.empty((count, size, size), np.uint8)
    for i in range(count):
        images[i], masks[i] = _draw(rng, size, num_shapes, int(rng.integers(min_shapes, max_shapes + 1)))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks)


def generate_single(count: int, size: int, seed: int, num_shapes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images with one shape each, labelled with its class (0..num_shapes-1)."""
    images, masks = generate(count, size, seed + CLASSIFICATION_SEED_OFFSET, num_shapes, 1, 1)
    labels = masks.flatten(1).max(1).values.long() - 1
    return images, labels


def load_shapes_classification(cfg: DataConfig) -> RawData:
    """``data.shapes_count`` one-shape images at ``data.image_size`` (default 32) labelled by shape class."""
    size = cfg.image_size or 32
    images, labels = generate_single(cfg.shapes_count, size, cfg.split_seed, cfg.num_shapes)
    return RawData({"train": TensorSource(images, labels)}, class_names(cfg.num_shapes), "shapes")
