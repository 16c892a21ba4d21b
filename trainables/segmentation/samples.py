"""Prediction samples as small PNGs in base64, a payload that stays JSON (``report({"samples": ...})``).

``samples`` is a dict of equal-length lists: ``sample_index`` (int), ``image_png`` (RGB image as the model saw it,
before normalisation), ``target_png`` and ``pred_png`` (mode "L" PNGs of class indices, ignore pixels 255).
"""
from __future__ import annotations

import base64
import io

import numpy as np
import torch


def png_base64(array: np.ndarray) -> str:
    """An H x W (mode L) or H x W x 3 (RGB) uint8 array as a base64 PNG string.

    Example:
        >>> png_base64(np.zeros((2, 2), np.uint8))[:8]
        'iVBORw0K'
    """
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    """The array of a base64 PNG (the inverse of :func:`png_base64`)."""
    from PIL import Image
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im).copy()


def _as_l(mask: torch.Tensor) -> np.ndarray:
    """Class indices as uint8 (255 stays 'ignore'; more than 255 classes cannot be one L image: clipped)."""
    return mask.clamp(0, 255).to(torch.uint8).numpy()


def samples_payload(images: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor) -> dict:
    """The ``samples`` dict for uint8 images [N, 3, H, W], targets and predictions [N, H, W]."""
    return {
        "sample_index": list(range(len(images))),
        "image_png": [png_base64(img.permute(1, 2, 0).numpy()) for img in images],
        "target_png": [png_base64(_as_l(t)) for t in targets],
        "pred_png": [png_base64(_as_l(p)) for p in preds],
    }
