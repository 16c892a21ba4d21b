"""Data sets: digits in memory, class subsets, splits, label budgets, image folders, Tiny-ImageNet layout."""
import numpy as np
import pytest
import torch
from PIL import Image

from trainables.config import DataConfig
from trainables.data import DATASETS, load_data
from trainables.data.base import stratified_split
from trainables.errors import ConfigError, DataError


def write_images(folder, n, colour, size=(12, 10), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, size, colour).save(folder / f"img{i}.png")


def test_digits_in_memory_uint8_at_image_size():
    data = load_data(DataConfig(name="digits"), image_size=24)
    train, val = data.splits["train"], data.splits["val"]
    assert train.images.dtype == torch.uint8 and tuple(train.images.shape[1:]) == (3, 24, 24)
    assert len(train) + len(val) == 1797
    assert data.class_names == [str(i) for i in range(10)]
    assert train.images.max() > 200  # scaled from 0..16 to 0..255


def test_classes_subset_relabels_and_budget_limits():
    data = load_data(DataConfig(name="digits", classes=[7, 3], samples_per_class=5), image_size=8)
    assert data.class_names == ["7", "3"]
    labels = data.splits["train"].labels
    assert labels.tolist().count(0) == 5 and labels.tolist().count(1) == 5
    assert set(data.splits["val"].labels.tolist()) == {0, 1}


def test_unknown_class_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.classes: no class 11 in digits"):
        load_data(DataConfig(name="digits", classes=[1, 11]), image_size=8)


def test_stratified_split_keeps_class_balance():
    labels = torch.tensor([0] * 50 + [1] * 10)
    kept, off = stratified_split(labels, 0.2, seed=1)
    assert sorted(labels[off].tolist()) == [0] * 10 + [1] * 2
    assert len(set(kept.tolist()) | set(off.tolist())) == 60


def test_splits_do_not_depend_on_the_trial_seed():
    a = load_data(DataConfig(name="digits", split_seed=3), image_size=8)
    b = load_data(DataConfig(name="digits", split_seed=3), image_size=8)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)


def test_imagefolder_flat_tree_with_modes(tmp_path):
    write_images(tmp_path / "cat", 6, (200, 10, 10))
    write_images(tmp_path / "dog", 6, 128, mode="L")          # grayscale is converted
    write_images(tmp_path / "owl", 6, (0, 0, 255, 128), mode="RGBA")
    data = load_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.34), image_size=16)
    assert data.class_names == ["cat", "dog", "owl"]
    assert tuple(data.splits["train"].images.shape[1:]) == (3, 16, 16)
    assert len(data.splits["val"]) == 6
    cat = data.splits["train"].images[data.splits["train"].labels == 0][0]
    assert cat[0].float().mean() > 190 and cat[2].float().mean() < 20


def test_imagefolder_with_split_folders(tmp_path):
    for split in ("train", "val", "test"):
        write_images(tmp_path / split / "a", 3, (255, 0, 0))
        write_images(tmp_path / split / "b", 3, (0, 255, 0))
    data = load_data(DataConfig(name="imagefolder", root=str(tmp_path)), image_size=8)
    assert set(data.splits) == {"train", "val", "test"}
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [6, 6, 6]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        load_data(DataConfig(name="imagefolder", root=str(tmp_path)), image_size=8)
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "full", 2, (1, 2, 3))
    with pytest.raises(DataError, match=r"empty: class folder has no images"):
        load_data(DataConfig(name="imagefolder", root=str(tmp_path)), image_size=8)
    (tmp_path / "empty").rmdir()
    bad = tmp_path / "full" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken.png: cannot read image"):
        load_data(DataConfig(name="imagefolder", root=str(tmp_path)), image_size=8)
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(name="imagefolder", root=str(tmp_path / "nope")), image_size=8)


def test_imagefolder_lazy_when_over_memory_limit(tmp_path):
    write_images(tmp_path / "a", 4, (255, 0, 0))
    write_images(tmp_path / "b", 4, (0, 0, 255))
    data = load_data(DataConfig(name="imagefolder", root=str(tmp_path), memory_limit_mb=0), image_size=8)
    x, y = data.splits["train"].images[0]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 8, 8)


def test_tiny_imagenet_layout(tmp_path):
    for wnid, colour in (("n01", (255, 0, 0)), ("n02", (0, 255, 0))):
        write_images(tmp_path / "train" / wnid / "images", 3, colour)
    write_images(tmp_path / "val" / "images", 2, (0, 255, 0))
    (tmp_path / "val" / "val_annotations.txt").write_text("img0.png\tn02\t0\t0\t1\t1\nimg1.png\tn01\t0\t0\t1\t1\n")
    (tmp_path / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tshark\n")
    data = load_data(DataConfig(name="tiny_imagenet", root=str(tmp_path)), image_size=8)
    assert data.class_names == ["goldfish", "shark"]
    assert data.splits["val"].labels.tolist() == [1, 0]


def test_torchvision_sets_need_a_root_and_name_it(tmp_path):
    with pytest.raises(ConfigError, match="data.root: required"):
        load_data(DataConfig(name="cifar10"), image_size=8)
    with pytest.raises(DataError, match=str(tmp_path)):
        load_data(DataConfig(name="cifar100", root=str(tmp_path)), image_size=8)


def test_registry_names_and_suggestions():
    assert {"digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagefolder", "tiny_imagenet"} <= set(
        DATASETS.names())
    with pytest.raises(ConfigError, match="did you mean: digits"):
        DATASETS.get("digit")


def test_sixteen_bit_image_is_converted(tmp_path):
    arr = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for c in ("a", "b"):  # two images a class: one to train on, one for validation
        Image.fromarray(arr).save(tmp_path / c / "x.png")
        Image.fromarray(arr).save(tmp_path / c / "y.png")
    data = load_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.5), image_size=10)
    assert data.splits["train"].images.max() == round(99 * 600 * 255 / 65535)  # the format's range, not the max
