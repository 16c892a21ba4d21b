"""Bad data: each case gets one clear error naming the file or folder, or a stated conversion / skip policy."""
import warnings

import numpy as np
import pytest
from PIL import Image

from trainables.config import DataConfig, trial_config
from trainables.data import load_data
from trainables.errors import ConfigError, DataError


def folder_with(tmp_path, extra: dict):
    """cats/ and dogs/ with 3 good RGB images each, plus ``extra`` {relative path: bytes | PIL image}."""
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        (tmp_path / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    for rel, content in extra.items():
        path = tmp_path / rel
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
    return tmp_path


def truncated_png(tmp_path) -> bytes:
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 90).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "full.png").unlink()
    return data[: len(data) // 2]


def cfg(root, **kw) -> DataConfig:
    return DataConfig(name="imagefolder", root=str(root), val_fraction=0.34, **kw)


@pytest.mark.parametrize("content", [b"\xff\xd8\xff not a jpeg", b"", "truncated"], ids=["corrupt", "empty", "truncated"])
def test_unreadable_image_is_an_error_naming_the_file(tmp_path, content):
    content = truncated_png(tmp_path / "..") if content == "truncated" else content
    root = folder_with(tmp_path / "imgs", {"cats/bad.png": content})
    with pytest.raises(DataError, match=r"cats/bad.png: cannot read image"):
        load_data(cfg(root), 16)


def test_skip_policy_leaves_bad_files_out_counts_and_lists_them(tmp_path):
    root = folder_with(tmp_path / "imgs", {"cats/bad.png": b"garbage", "dogs/cut.png": truncated_png(tmp_path)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_data(cfg(root, on_bad_image="skip"), 16)
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in data.skipped) == \
        ["cats/bad.png", "dogs/cut.png"]
    assert sum(len(s) for s in data.splits.values()) == 6   # the 6 good images
    message = " ".join(str(w.message) for w in caught)
    assert "skipped 2 unreadable image(s)" in message and "bad.png" in message and "cut.png" in message


def test_skip_policy_for_lazily_decoded_sets(tmp_path):
    root = folder_with(tmp_path / "imgs", {"cats/bad.png": b"garbage"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_data(cfg(root, on_bad_image="skip", memory_limit_mb=0), 16)
    assert [p.rsplit("/", 1)[-1] for p in data.skipped] == ["bad.png"]
    assert sum(len(s) for s in data.splits.values()) == 6


def test_unknown_policy_names_the_key():
    with pytest.raises(ConfigError, match=r"data.on_bad_image: 'ignore' is not one of error, skip"):
        trial_config({"data": {"on_bad_image": "ignore"}})


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "CMYK"])
def test_other_image_modes_are_converted_to_rgb(tmp_path, mode):
    arr = {"L": np.full((20, 20), 200, np.uint8), "RGBA": np.full((20, 20, 4), 200, np.uint8),
           "I;16": np.full((20, 20), 60000, np.uint16)}.get(mode)
    img = Image.fromarray(arr) if arr is not None else Image.new(mode, (20, 20))
    root = folder_with(tmp_path / "imgs", {"cats/odd.png" if mode != "CMYK" else "cats/odd.jpg": img})
    data = load_data(cfg(root), 16)
    for split in data.splits.values():
        assert split.images.shape[1:] == (3, 16, 16)


def test_missing_root_empty_class_folder_and_absent_class(tmp_path):
    with pytest.raises(DataError, match=r"data.root: .*/nowhere does not exist"):
        load_data(cfg(tmp_path / "nowhere"), 16)
    root = folder_with(tmp_path / "imgs", {})
    (root / "birds").mkdir()
    with pytest.raises(DataError, match=r"birds: class folder has no images"):
        load_data(cfg(root), 16)
    with pytest.raises(ConfigError, match=r"data.classes: no class 12 in digits"):
        load_data(DataConfig(name="digits", classes=[0, 12]), 16)


def test_splits_must_have_the_classes_of_the_training_split(tmp_path):
    root = tmp_path / "imgs"
    folder_with(root / "train", {})
    folder_with(root / "val", {})
    (root / "val" / "cows").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "cows" / "0.png")
    with pytest.raises(DataError, match=r"imgs/val: class folder\(s\) cows are not in the training split"):
        load_data(cfg(root), 16)
    (root / "val" / "cows" / "0.png").unlink()
    (root / "val" / "cows").rmdir()
    for p in (root / "val" / "dogs").iterdir():
        p.unlink()
    with pytest.warns(UserWarning, match=r"imgs/val has no images of class\(es\) dogs"):
        load_data(cfg(root), 16)


def test_classes_too_small_to_split_are_an_error_naming_them(tmp_path):
    root = folder_with(tmp_path / "imgs", {})
    for p in sorted((root / "dogs").iterdir())[1:]:
        p.unlink()
    with pytest.raises(DataError, match=r"class\(es\) 'dogs' \(1\) have too few images to split off val "
                                        r"\(each needs at least 2\)"):
        load_data(cfg(root), 16)
    with pytest.raises(DataError, match=r"'cats' \(3\)|'dogs' \(1\).*split off val and test \(each needs at least 3\)"):
        load_data(cfg(root, test_fraction=0.3), 16)
    assert load_data(cfg(root, classes=["cats"]), 16).num_classes == 1   # left out with data.classes


def test_a_class_folder_that_cannot_be_read_is_an_error_naming_it(tmp_path, monkeypatch):
    import os
    root = folder_with(tmp_path / "imgs", {})
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).endswith("dogs") else real(p, mode, **k))
    with pytest.raises(DataError, match=r"imgs/dogs: cannot read folder \(permission denied\)"):
        load_data(cfg(root), 16)


@pytest.mark.parametrize("peak", [1000, 65535])
def test_sixteen_bit_images_are_scaled_by_the_format_range_not_their_own_max(tmp_path, peak):
    from trainables.image_files import decode_array
    Image.fromarray(np.full((4, 4), peak, np.uint16)).save(tmp_path / "x.png")
    assert decode_array(tmp_path / "x.png")[0, 0].tolist() == [round(peak * 255 / 65535)] * 3


def test_32_bit_integer_and_float_images(tmp_path):
    from trainables.image_files import decode_array
    Image.fromarray(np.full((4, 4), 2 ** 30, np.int32)).save(tmp_path / "i.tif")
    assert decode_array(tmp_path / "i.tif")[0, 0].tolist() == [round(2 ** 30 * 255 / (2 ** 31 - 1))] * 3
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f.tif: 32-bit float pixels have no fixed range"):
        decode_array(tmp_path / "f.tif")


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    root = folder_with(tmp_path / "imgs", {"cats/huge.png": Image.new("L", (64, 64))})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 20x20 images pass, the 64x64 one is "a bomb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"cats/huge.png: image too large to decode safely, a possible "
                                            r"decompression bomb \("):
            load_data(cfg(root), 16)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between 1x and 2x: PIL only warns; refused too
        with pytest.raises(DataError, match=r"cats/huge.png: .*decompression bomb \(64x64 pixels, more than"):
            load_data(cfg(root), 16)
