"""Segmentation data sets: segfolder pairing and checks, ADE20k's label shift, shapes generation."""
import numpy as np
import pytest
import torch
from PIL import Image

from trainables.config import DataConfig
from trainables.data import DATASETS, load_data
from trainables.data.shapes import generate
from trainables.errors import ConfigError, DataError
from trainables.segmentation.data import SEG_DATASETS, load_seg_data
from trainables.segmentation.data.ade20k import CLASS_NAMES


def _pair(root, split, stem, mask_values, size=(12, 10)):
    """An RGB image and a grey mask (``mask_values`` fills it in bands) of the same stem."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}_masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(root / split / f"{stem}.jpg")
    mask = np.zeros((h, w), np.uint8)
    for i, v in enumerate(mask_values):
        mask[:, i * w // len(mask_values):] = v
    Image.fromarray(mask).save(root / f"{split}_masks" / f"{stem}.png")


def _cfg(root, **kw):
    return DataConfig(name="segfolder", root=str(root), **kw)


def test_segfolder_pairs_by_stem_and_reads_binary_0_255_as_0_1(tmp_path):
    for i in range(5):
        _pair(tmp_path, "train", f"img{i}", [0, 255])
    _pair(tmp_path, "val", "v0", [0, 255])
    data = load_seg_data(_cfg(tmp_path), 8)
    assert data.class_names == ["background", "foreground"]
    assert len(data.splits["train"]) == 5 and len(data.splits["val"]) == 1
    masks = data.splits["train"].masks
    assert masks.shape == (5, 8, 8) and set(masks.unique().tolist()) == {0, 1}
    assert data.splits["train"].images.dtype == torch.uint8


def test_segfolder_splits_val_off_when_there_is_no_val_folder(tmp_path):
    for i in range(10):
        _pair(tmp_path, "train", f"img{i}", [0, 1, 2])
    data = load_seg_data(_cfg(tmp_path, val_fraction=0.3, split_seed=4), 8)
    assert (len(data.splits["train"]), len(data.splits["val"])) == (7, 3)
    assert data.class_names == ["0", "1", "2"]  # largest value + 1


def test_segfolder_names_unmatched_images_and_masks(tmp_path):
    for i in range(3):
        _pair(tmp_path, "train", f"img{i}", [0, 1])
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "train" / "lonely_image.jpg")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "train_masks" / "lonely_mask.png")
    with pytest.raises(DataError) as e:
        load_seg_data(_cfg(tmp_path), 8)
    assert "1 images without a mask" in str(e.value) and "lonely_image.jpg" in str(e.value)
    assert "1 masks without an image" in str(e.value) and "lonely_mask.png" in str(e.value)


def test_segfolder_out_of_range_values_name_the_file(tmp_path):
    (tmp_path / "classes.txt").write_text("sky\nroad\nbuilding\n")
    _pair(tmp_path, "train", "good", [0, 1, 2, 255])  # 255 is the ignore index: allowed
    _pair(tmp_path, "train", "bad", [0, 7, 9])
    with pytest.raises(DataError, match=r"bad\.png: mask values 7, 9 are outside the 3 classes"):
        load_seg_data(_cfg(tmp_path), 8)


def test_segfolder_mask_of_another_size_names_the_file(tmp_path):
    _pair(tmp_path, "train", "a", [0, 1])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "train_masks" / "a.png")
    with pytest.raises(DataError, match=r"a\.png: mask is 5x5 but its image a\.jpg is 12x10"):
        load_seg_data(_cfg(tmp_path), 8)


def test_segfolder_missing_root_and_unknown_name():
    with pytest.raises(DataError, match="does not exist"):
        load_seg_data(DataConfig(name="segfolder", root="/nonexistent/masks"), 8)
    with pytest.raises(ConfigError, match="did you mean: segfolder"):
        SEG_DATASETS.get("segfoldr")


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        Image.fromarray(np.full((6, 6, 3), 50, np.uint8)).save(root / "images" / split / "ADE_1.jpg")
        mask = np.array([[0, 1, 150]] * 6, np.uint8).repeat(2, axis=1)
        Image.fromarray(mask).save(root / "annotations" / split / "ADE_1.png")
    data = load_seg_data(DataConfig(name="ade20k", root=str(tmp_path)), 6)
    assert len(CLASS_NAMES) == 150 and data.class_names[0] == "wall" and data.class_names[-1] == "flag"
    assert data.splits["train"].masks[0, 0].tolist() == [255, 255, 0, 0, 149, 149]
    with pytest.raises(DataError, match="data.root: /nonexistent/ade does not exist"):
        load_seg_data(DataConfig(name="ade20k", root="/nonexistent/ade"), 6)


def test_shapes_are_deterministic_and_masks_exact():
    a_img, a_mask = generate(12, 32, seed=3)
    b_img, b_mask = generate(12, 32, seed=3)
    c_img, _ = generate(12, 32, seed=4)
    assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask) and not torch.equal(a_img, c_img)
    # Shapes are painted in saturated colours (channels >= 140 apart), backgrounds are grey-ish (< 40 apart):
    # a pixel belongs to a shape exactly where the mask says so.
    spread = a_img.max(1).values.int() - a_img.min(1).values.int()
    assert torch.equal(spread > 100, a_mask > 0)
    assert set(a_mask.unique().tolist()) == {0, 1, 2, 3}


def test_shapes_kind_x_colour_classes_follow_the_colour():
    images, masks = generate(20, 32, seed=0, num_shapes=6)  # red / green circle, square, triangle
    for cls in range(1, 7):
        pixels = images.permute(0, 2, 3, 1)[masks == cls]
        if len(pixels):
            channel = 0 if cls <= 3 else 1  # red classes first, then green
            assert (pixels.argmax(1) == channel).all()


def test_shapes_segmentation_and_classification_variants():
    data = load_seg_data(DataConfig(name="shapes", shapes_count=30, num_shapes=3, test_fraction=0.1), 16)
    assert data.class_names == ["background", "circle", "square", "triangle"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 21, "val": 6, "test": 3}
    assert "shapes" in DATASETS  # the classification registry, for the pretrain stage
    cls = load_data(DataConfig(name="shapes", shapes_count=60), image_size=16)
    assert cls.class_names == ["circle", "square", "triangle"]
    labels = torch.cat([cls.splits["train"].labels, cls.splits["val"].labels])
    assert set(labels.tolist()) == {0, 1, 2}
