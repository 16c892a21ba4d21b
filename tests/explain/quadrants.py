"""Synthetic images whose class is only where a bright patch is: 4 classes, one per quadrant, noise elsewhere."""
from pathlib import Path

import numpy as np
from PIL import Image

QUADRANTS = {"top_left": 0, "top_right": 1, "bottom_left": 2, "bottom_right": 3}
SIZE, PATCH = 32, 8


def quadrant_image(rng: np.random.Generator, quadrant: int, spread: int = 4) -> np.ndarray:
    """Noise, and a PATCH x PATCH white square 1 to ``spread`` pixels from the quadrant's outer corner."""
    img = rng.integers(0, 110, size=(SIZE, SIZE, 3), dtype=np.uint8)
    down, right = quadrant // 2, quadrant % 2
    r0 = int(rng.integers(1, spread + 1))
    c0 = int(rng.integers(1, spread + 1))
    r0 = SIZE - PATCH - r0 if down else r0
    c0 = SIZE - PATCH - c0 if right else c0
    img[r0:r0 + PATCH, c0:c0 + PATCH] = 255
    return img


def write_quadrant_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``root/<split>/<quadrant name>/<i>.png`` for each split and count in ``per_class``."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for name, q in QUADRANTS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(quadrant_image(rng, q)).save(folder / f"{i}.png")
    return root


def quadrant_of_peak(maps) -> list[int]:
    """The quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of each N x H x W map's maximum."""
    n, h, w = maps.shape
    flat = maps.reshape(n, -1).argmax(1)
    rows, cols = flat // w, flat % w
    return ((rows >= h // 2).long() * 2 + (cols >= w // 2).long()).tolist()
