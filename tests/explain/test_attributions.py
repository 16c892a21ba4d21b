"""Attributions point at the evidence: on images whose class is only the quadrant of a bright patch, Grad-CAM and
occlusion peak in that quadrant and guided backpropagation puts its mass there."""
import pytest
import torch

from explain import attributions
from explain.images import from_validation
from explain.loading import load_checkpoint
from quadrants import QUADRANTS, quadrant_of_peak


@pytest.fixture(scope="module")
def probes(quadrant_model):
    tm = load_checkpoint(quadrant_model.checkpoint)
    probes = from_validation(tm.config, tm.image_size, 100)  # the whole val split, classes interleaved
    targets = probes.targets(tm.class_names)
    quadrants = [QUADRANTS[tm.class_names[t]] for t in targets]
    return tm, probes.at(tm.image_size), targets, quadrants


def fraction(found, expected) -> float:
    return sum(a == b for a, b in zip(found, expected)) / len(expected)


def test_the_model_learned_the_task(quadrant_model):
    assert quadrant_model.val_acc >= 0.9


def test_gradcam_peaks_in_the_patch_quadrant(probes):
    tm, images, targets, quadrants = probes
    maps, layer = attributions.gradcam(tm, images, targets)
    assert maps.shape == (100, 32, 32) and layer == "blocks.1"
    share = fraction(quadrant_of_peak(maps), quadrants)
    print(f"Grad-CAM peak in the patch quadrant: {share:.2f} of 100 validation images")
    assert share >= 0.8


def test_occlusion_peaks_in_the_patch_quadrant(probes):
    tm, images, targets, quadrants = probes
    n = 40  # 36 occluded copies of each image: the first 40 (10 per class) are plenty
    maps, (window, stride) = attributions.occlusion(tm, images[:n], targets[:n], progress=False)
    assert (window, stride) == (8, 5)  # 32 px images: the 30 / 20 px defaults shrink to fit
    share = fraction(quadrant_of_peak(maps), quadrants[:n])
    print(f"occlusion peak in the patch quadrant: {share:.2f} of {n} validation images")
    assert share >= 0.8


def test_guided_backprop_mass_is_in_the_patch_quadrant(probes):
    tm, images, targets, quadrants = probes
    grads = attributions.guided_backprop(tm, images, targets)
    assert grads.shape == (100, 3, 32, 32)
    positive = grads.clamp(min=0).sum(1)
    per_quadrant = torch.stack([positive[:, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].sum((1, 2))
                                for r in (0, 1) for c in (0, 1)], 1)
    own = per_quadrant[torch.arange(100), torch.tensor(quadrants)]
    assert (own > 0).all()
    share = fraction(per_quadrant.argmax(1).tolist(), quadrants)
    print(f"guided backprop: most positive mass in the patch quadrant for {share:.2f} of 100 images; "
          f"mean share {float((own / per_quadrant.sum(1)).mean()):.2f}")
    assert share >= 0.8


def test_explicit_occlusion_geometry_is_clamped_to_the_image():
    assert attributions.occlusion_geometry(224) == (30, 20)
    assert attributions.occlusion_geometry(32) == (8, 5)
    assert attributions.occlusion_geometry(32, 50, 40) == (32, 32)
    assert attributions.occlusion_geometry(64, 10, 4) == (10, 4)
