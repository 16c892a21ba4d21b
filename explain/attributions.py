"""Attribution maps of one trained model for a batch of probe images (captum underneath).

Each function takes a :class:`~explain.loading.TrialModel`, uint8 images at its image size and one target
class per image, and returns CPU tensors: Grad-CAM and occlusion a heatmap per image (N x H x W), guided
backpropagation a gradient image (N x 3 x H x W).

Example:
    >>> tm = load_trial("results/quickstart", "best")                         # doctest: +SKIP
    >>> heat, layer = gradcam(tm, images, targets)                             # doctest: +SKIP
"""
from __future__ import annotations

import sys
import warnings
from typing import Iterable, Optional

import torch
from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam, Occlusion

from explain.layers import gradcam_layer, gradcam_target
from explain.loading import TrialModel

DEFAULT_WINDOW, DEFAULT_STRIDE = 30, 20


def targets_or_predicted(tm: TrialModel, images: torch.Tensor, targets: list[Optional[int]]) -> list[int]:
    """The given target of each image, its predicted class where none is known."""
    if all(t is not None for t in targets):
        return [int(t) for t in targets]
    predicted = tm.probabilities(images).argmax(1).tolist()
    return [int(t) if t is not None else p for t, p in zip(targets, predicted)]


def gradcam(tm: TrialModel, images: torch.Tensor, targets: list[Optional[int]],
            relu: bool = True) -> tuple[torch.Tensor, str]:
    """Grad-CAM at the last spatial stage, upsampled to the image; returns (N x H x W, layer name).
    ``relu=False`` keeps the negative evidence too."""
    targets = targets_or_predicted(tm, images, targets)
    target = gradcam_target(tm.model, tm.bundle.stages, tm.image_size, tm.device)
    x = tm.preprocess(images)
    with gradcam_layer(tm.model, target) as layer:
        cam = LayerGradCam(tm.model, layer).attribute(x, target=targets, relu_attributions=relu)
    cam = LayerAttribution.interpolate(cam.detach(), x.shape[-2:], interpolate_mode="bilinear")
    return cam[:, 0].cpu(), target.name if target.layout == "nchw" else f"{target.name} ({target.layout})"


def occlusion_geometry(size: int, window: Optional[int] = None, stride: Optional[int] = None) -> tuple[int, int]:
    """Window and stride in model-input pixels. Defaults 30 and 20; on images too small for that (less than
    four windows across, e.g. 32 px digits) the default window shrinks to a quarter of the side and the
    stride to two thirds of the window, so the map still has a grid of positions. Explicit values are only
    clamped to the image."""
    if window is None:
        window = DEFAULT_WINDOW if size >= 4 * DEFAULT_WINDOW else max(2, size // 4)
    if stride is None:
        stride = DEFAULT_STRIDE if window == DEFAULT_WINDOW else max(1, (2 * window) // 3)
    window = max(1, min(int(window), size))
    return window, max(1, min(int(stride), size))


def _progress(items: Iterable, total: int, desc: str, enabled: bool):
    """tqdm on stderr when installed, else one plain stderr line per step."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        for i, item in enumerate(items):
            print(f"\r{desc}: {i + 1}/{total}", end="" if i + 1 < total else "\n", file=sys.stderr, flush=True)
            yield item
        return
    yield from tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False)


def occlusion(tm: TrialModel, images: torch.Tensor, targets: list[Optional[int]], window: Optional[int] = None,
              stride: Optional[int] = None, progress: bool = True) -> tuple[torch.Tensor, tuple[int, int]]:
    """Drop in the target class's probability when a black square covers each place (N x H x W).

    A black square means black in pixels (0), normalised like the image. Positive: covering it costs the
    class probability; negative: covering it helps.
    """
    targets = targets_or_predicted(tm, images, targets)
    window, stride = occlusion_geometry(tm.image_size, window, stride)
    x = tm.preprocess(images)
    black = tm.preprocess(torch.zeros_like(images[:1]))

    def probs(batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(tm.model(batch), dim=1)

    occ = Occlusion(probs)
    maps = []
    with torch.no_grad():
        for i in _progress(range(len(x)), len(x), f"occlusion {tm.label or tm.config.model.arch}", progress):
            a = occ.attribute(x[i:i + 1], sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                              baselines=black, target=targets[i], perturbations_per_eval=64)
            maps.append(a[0].mean(0).cpu())
    return torch.stack(maps), (window, stride)


def guided_backprop(tm: TrialModel, images: torch.Tensor, targets: list[Optional[int]]) -> torch.Tensor:
    """Guided backpropagation: input gradients with only positive signals passed back through ReLUs."""
    targets = targets_or_predicted(tm, images, targets)
    x = tm.preprocess(images).requires_grad_()
    with warnings.catch_warnings():  # captum announces the ReLU hooks it sets and removes
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return GuidedBackprop(tm.model).attribute(x, target=targets).detach().cpu()

