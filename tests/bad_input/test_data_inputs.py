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
