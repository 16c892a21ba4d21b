"""Parallel decoding (trainables.decode_pool) and the on-disk decoded cache (trainables.decoded_cache)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables import decode_pool, decoded_cache
from trainables.config import DataConfig
from trainables.data import load_data
from trainables.data.base import decode_image
from trainables.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TLSWEEP_DECODED_CACHE", str(folder))
    return folder


def make_folder(root: Path, per_class: int = 100) -> list[Path]:
    """3 classes of tiny PNGs of varied sizes and content, plus a grey, an RGBA, a palette and a 16-bit one."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "eel"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(5, 20, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / c / f"{i:03d}.png")
    Image.fromarray(rng.integers(0, 256, (9, 13), dtype=np.uint8), "L").save(root / "cat" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (11, 7, 4), dtype=np.uint8), "RGBA").save(root / "dog" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("P").save(root / "eel" / "pal.png")
    Image.fromarray(rng.integers(0, 65536, (6, 10), dtype=np.uint16)).save(root / "eel" / "wide.png")
    return sorted(root.rglob("*.png"))


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz")) if folder.exists() else []


def test_parallel_decode_equals_serial_bit_for_bit(tmp_path, monkeypatch):
    paths = make_folder(tmp_path / "data")
    assert {Image.open(p).mode for p in paths} >= {"RGB", "L", "RGBA", "P"}
    serial = torch.stack([decode_image(p, 16) for p in paths]).numpy()  # the one-file path, file by file
    monkeypatch.setattr(decode_pool, "CHUNK", 37)  # several chunks per worker, one of them short
    for mode in ("serial", "threads", "processes"):
        images, errors = decode_pool.decode_all(paths, 16, workers=2, mode=mode)
        assert errors == {} and images.dtype == np.uint8 and images.shape == serial.shape
        assert np.array_equal(images, serial), mode


def test_second_load_reads_the_cache_without_decoding(tmp_path, cache, monkeypatch):
    root = tmp_path / "data"
    make_folder(root)
    cfg = DataConfig(name="imagefolder", root=str(root), test_fraction=0.2)
    first = load_data(cfg, 16)
    assert len(entries(cache)) == 3  # train, val, test

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")
    monkeypatch.setattr(decode_pool, "decode_all", no_decoding)
    again = load_data(cfg, 16)
    for name, split in first.splits.items():
        assert torch.equal(split.images, again.splits[name].images)
        assert torch.equal(split.labels, again.splits[name].labels)


def test_cache_returns_the_order_asked_for(tmp_path, cache):
    paths = make_folder(tmp_path / "data", per_class=10)
    broken = paths[5]
    broken.write_bytes(b"not a png")
    shuffled = [paths[i] for i in np.random.default_rng(1).permutation(len(paths))]
    first = decoded_cache.load(shuffled, 12)
    again = decoded_cache.load(paths, 12)
    assert (first.source, again.source) == ("decoded", "cache")
    assert list(again.errors) == [5] and list(first.errors) == [shuffled.index(broken)]
    assert again.errors[5] == first.errors[shuffled.index(broken)] and again.errors[5].startswith(f"{broken}: ")
    expected = np.stack([np.zeros((3, 12, 12), np.uint8) if p == broken else decode_image(p, 12).numpy()
                         for p in paths])
    assert np.array_equal(again.images, expected)
    assert np.array_equal(first.images, expected[[paths.index(p) for p in shuffled]])


def test_touching_adding_or_removing_a_file_changes_the_key(tmp_path):
    root = tmp_path / "data"
    paths = make_folder(root, per_class=5)

    def key(files):
        return decoded_cache.entry_key(decoded_cache.file_list(files)[1], 16)
    base = key(paths)
    assert key(list(reversed(paths))) == base
    assert key(paths) != decoded_cache.entry_key(decoded_cache.file_list(paths)[1], 32)  # image size
    st = os.stat(paths[3])
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = key(paths)
    assert touched != base
    extra = root / "dog" / "new.png"
    Image.new("RGB", (4, 4)).save(extra)
    assert key(paths + [extra]) not in (base, touched)
    assert key(paths[1:]) not in (base, touched)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # copy2: sizes and mtimes kept, so the relative key is the same
    assert key(sorted(copy.rglob("*.png"))) == key(sorted(root.rglob("*.png")))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_entry_is_decoded_again(tmp_path, cache, damage):
    paths = make_folder(tmp_path / "data", per_class=20)
    first = decoded_cache.load(paths, 16)
    [entry] = entries(cache)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(data[:len(data) // 2])
    else:
        data[len(data) // 2] ^= 0xFF  # one byte of the pixels: the zip CRC no longer matches
        entry.write_bytes(bytes(data))
    assert decoded_cache.read_entry(entry, len(paths), 16) is None
    again = decoded_cache.load(paths, 16)
    assert again.source == "decoded" and np.array_equal(again.images, first.images)
    assert decoded_cache.load(paths, 16).source == "cache"


def test_two_concurrent_loaders_make_one_entry(tmp_path, cache):
    paths = make_folder(tmp_path / "data", per_class=100)
    code = ("import sys; from pathlib import Path; from trainables import decoded_cache; "
            "print(decoded_cache.load(sorted(Path(sys.argv[1]).rglob('*.png')), 24, workers=1).source)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TLSWEEP_DECODED_CACHE=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(o.strip() for o, _ in outs) == ["cache", "decoded"]
    assert len(entries(cache)) == 1
    assert not list(cache.glob(".tmp-*"))
    got = decoded_cache.load(paths, 24)
    assert got.source == "cache"
    assert np.array_equal(got.images, torch.stack([decode_image(p, 24) for p in paths]).numpy())


def test_a_broken_png_is_a_data_error_naming_it_decoded_or_cached(tmp_path, cache, monkeypatch):
    root = tmp_path / "data"
    make_folder(root, per_class=30)
    broken = root / "dog" / "015.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    monkeypatch.setattr(decode_pool, "MIN_PROCESS", 1)  # worker processes, even for this small folder
    cfg = DataConfig(name="imagefolder", root=str(root), val_fraction=0.5)
    messages, decode_all = [], decode_pool.decode_all
    for attempt in range(2):  # decoded by the workers, then read from the entry that remembers the failure
        if attempt:
            monkeypatch.setattr(decode_pool, "decode_all", None)  # not called: calling it is a TypeError
        with pytest.raises(DataError) as e:
            load_data(cfg, 16)
        messages.append(str(e.value))
    monkeypatch.setattr(decode_pool, "decode_all", decode_all)
    assert messages[0] == messages[1] and messages[0].startswith(f"{broken}: cannot read image")
    skipped = [load_data(DataConfig(name="imagefolder", root=str(root), val_fraction=0.5, on_bad_image="skip"),
                         16) for _ in range(2)]
    assert skipped[0].skipped == skipped[1].skipped == [str(broken)]
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # the same entry, and its message names the copy
    with pytest.raises(DataError, match=f"^{copy / 'dog' / '015.png'}: cannot read image"):
        load_data(DataConfig(name="imagefolder", root=str(copy), val_fraction=0.5), 16)


def test_data_decoded_cache_false_writes_nothing(tmp_path, cache):
    root = tmp_path / "data"
    make_folder(root, per_class=5)
    on = load_data(DataConfig(name="imagefolder", root=str(root)), 8)
    shutil.rmtree(cache)
    off = load_data(DataConfig(name="imagefolder", root=str(root), decoded_cache=False), 8)
    assert not cache.exists()
    assert torch.equal(on.splits["train"].images, off.splits["train"].images)


def test_an_unwritable_cache_folder_costs_the_reuse_not_the_load(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLSWEEP_DECODED_CACHE", str(blocker / "cache"))
    paths = make_folder(tmp_path / "data", per_class=3)
    got = decoded_cache.load(paths, 8)
    assert got.source == "off" and got.images.shape == (len(paths), 3, 8, 8)
