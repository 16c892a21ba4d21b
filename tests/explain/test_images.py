"""The channel policy for user images: what is converted, and what is an error naming the file."""
import numpy as np
import pytest
import torch
from PIL import Image

from explain.images import balanced_order, from_files, read_image
from trainables.errors import DataError


def test_grayscale_rgba_and_palette_files_become_rgb(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, :6] = (200, 50, 10)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("LA").save(tmp_path / "gray_alpha.png")
    for name in ("rgb", "rgba", "palette", "gray", "gray_alpha"):
        img = read_image(tmp_path / f"{name}.png", 16)
        assert img.shape == (3, 16, 16) and img.dtype == torch.uint8, name
    assert torch.equal(read_image(tmp_path / "rgba.png", 16), read_image(tmp_path / "rgb.png", 16))
    gray = read_image(tmp_path / "gray.png", 16)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize("shape, dtype", [((8, 8), np.uint8), ((8, 8, 3), np.uint8), ((3, 8, 8), np.float32),
                                          ((1, 8, 8), np.float64), ((8, 8, 1), np.int64)])
def test_arrays_with_one_or_three_channels(tmp_path, shape, dtype):
    arr = np.full(shape, 0.5 if np.dtype(dtype).kind == "f" else 128, dtype=dtype)
    np.save(tmp_path / "a.npy", arr)
    img = read_image(tmp_path / "a.npy", 16)
    assert img.shape == (3, 16, 16) and int(img.float().mean().round()) in (127, 128)


@pytest.mark.parametrize("shape, channels", [((8, 8, 4), 4), ((2, 8, 8), 2), ((8, 8, 2), 2), ((5, 8, 8), 5)])
def test_arrays_with_other_channel_counts_are_errors_naming_the_file(tmp_path, shape, channels):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match=rf"bad.npy: {channels} channels; expected 1 \(grayscale\) or 3 \(RGB\)"):
        read_image(tmp_path / "bad.npy", 16)


def test_unreadable_and_missing_files_are_errors_naming_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken.png: cannot read image"):
        read_image(tmp_path / "broken.png", 16)
    (tmp_path / "x.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match=r"x.npy: cannot read array"):
        read_image(tmp_path / "x.npy", 16)
    with pytest.raises(DataError, match=r"missing.png: no such image file"):
        read_image(tmp_path / "missing.png", 16)


def test_files_under_a_class_folder_carry_its_label(tmp_path):
    for name in ("cat", "other"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "1.png")
    probes = from_files([tmp_path / "cat" / "1.png", tmp_path / "other" / "1.png"], ["cat", "dog"], 8)
    assert probes.labels == ["cat", None]
    assert probes.targets(["dog", "cat"]) == [1, None]
    assert probes.at(12).shape == (2, 3, 12, 12)


def test_probes_take_classes_in_turn():
    assert balanced_order(torch.tensor([0, 0, 0, 1, 1, 2])) == [0, 3, 5, 1, 4, 2]
