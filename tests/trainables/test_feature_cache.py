"""The frozen-feature and prefix caches: the same numbers as training on images, computed once, only when safe.

Tolerance: cached and uncached runs draw the same batches and run the same head/suffix ops on the same
inputs; the frozen part runs in batches of 256 in data order instead of the training batches, which could change
float rounding. Measured: identical metrics (difference 0) for every model here; compared with TOL below.
"""
import multiprocessing as mp
import os

import pytest
import torch
from torch import nn

from tests.conftest import train_until
from trainables.checkpoint import DirCheckpoints
from trainables.classification import Trainer, train
from trainables.config import trial_config
from trainables.feature_cache import cache_dir
from trainables.prefix_cache import called_as_chain, chain

TOL = 1e-5
COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "best_val_acc", "best_epoch")
PROBE = {"strategy": "linear_probe", "dropout": 0.0}   # scratch_cnn: no dropout between backbone and head
SMALL = {"classes": [0, 1, 2, 3], "samples_per_class": 24}  # 96 training and 144 validation images


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSWEEP_FEATURE_CACHE", str(tmp_path / "features"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from 2 threads, and lose much on a busy machine
    yield
    torch.set_num_threads(threads)


def run(cfg, checkpoints=None) -> list[dict]:
    cfg["data"] = {**SMALL, **cfg["data"]}
    rows = []
    train(cfg, rows.append, checkpoints)
    return rows


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for x, y in zip(a, b):
        for key in COMPARED:
            assert x[key] == pytest.approx(y[key], rel=TOL, abs=TOL), (x["epoch"], key)
        assert x.get("confusion") == y.get("confusion")


def phase_cache(cfg: dict) -> Trainer:
    cfg["data"] = {**SMALL, **cfg["data"]}
    trainer = Trainer(trial_config(cfg))
    trainer.ensure_phase(0)
    return trainer


def test_linear_probe_on_cached_features_equals_training_on_images(tiny, tmp_path):
    training = {"epochs": 2, "scheduler": "cosine"}
    cached = run(tiny(model=PROBE, training=training, data={"test_fraction": 0.2}),
                 DirCheckpoints(tmp_path / "cached"))
    images = run(tiny(model=PROBE, training={**training, "feature_cache": False}, data={"test_fraction": 0.2}),
                 DirCheckpoints(tmp_path / "images"))
    # the same head (and the same untouched backbone) after training, up to float noise
    a = DirCheckpoints(tmp_path / "cached").latest()["model"]
    b = DirCheckpoints(tmp_path / "images").latest()["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), rtol=TOL, atol=TOL), name
    assert [r["feature_cache"] for r in cached] == [1, 1] and [r["feature_cache"] for r in images] == [0, 0]
    assert_same(cached, images)
    tested = [([r for r in rows if "test_acc" in r][-1]) for rows in (cached, images)]
    assert tested[0]["test_acc"] == pytest.approx(tested[1]["test_acc"], abs=TOL)
    assert tested[0]["test_confusion"] == tested[1]["test_confusion"]
    assert cached[0]["per_class"]["support"] == images[0]["per_class"]["support"]


def test_an_entry_is_computed_once_and_reused(tiny):
    cfg = tiny(model=PROBE, training={"epochs": 1})
    first = phase_cache(cfg)
    assert (first.cached.kind, first.cached.computed, first.cached.loaded) == ("features", ["train", "val"], [])
    entries = sorted(cache_dir().rglob("*.pt"))
    assert len(entries) == 2
    stamps = [p.stat().st_mtime_ns for p in entries]
    # another learning rate and seed share the backbone only when its weights are the same: same seed here
    second = phase_cache(tiny(model=PROBE, training={"epochs": 1, "lr": 0.1}))
    assert (second.cached.computed, second.cached.loaded) == ([], ["train", "val"])
    assert [p.stat().st_mtime_ns for p in entries] == stamps
    assert torch.equal(second.cached.splits["train"].images, first.cached.splits["train"].images)
    # weights none: another seed is another backbone, hence other entries
    third = phase_cache(tiny(model=PROBE, training={"epochs": 1}, seed=1))
    assert third.cached.computed == ["train", "val"]


def _concurrent(cfg: dict, barrier, out) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(trial_config({**cfg, "data": {**SMALL, **cfg["data"]}}))
    barrier.wait()
    trainer.ensure_phase(0)
    out.put((os.getpid(), trainer.cached.computed, trainer.cached.loaded))


def test_two_processes_at_once_compute_the_features_once(tiny):
    cfg = tiny(model=PROBE, training={"epochs": 1})
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_concurrent, args=(cfg, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # each split computed by one process (whichever took its lock first) and read by the other
    computed = sorted(s for _, c, _ in results for s in c)
    loaded = sorted(s for _, _, ld in results for s in ld)
    assert computed == ["train", "val"] and loaded == ["train", "val"], results
    from trainables.checkpoint import read
    writer = {read(p)["meta"]["split"]: read(p)["meta"]["pid"] for p in cache_dir().rglob("*.pt")}
    assert writer == {s: pid for pid, c, _ in results for s in c}


def _killed_while_writing(cfg: dict, marker: str) -> None:
    """Compute the entries, but stop half-way through writing the first one and wait to be killed."""
    import time

    import trainables.checkpoint as ckpt
    torch.set_num_threads(1)

    save = torch.save

    def half_save(state, f):
        data = __import__("io").BytesIO()
        save(state, data)
        f.write(data.getvalue()[:len(data.getvalue()) // 2])
        f.flush()
        open(marker, "w").write(str(os.getpid()))
        time.sleep(120)
    ckpt.torch.save = half_save  # this process only (spawned)
    Trainer(trial_config({**cfg, "data": {**SMALL, **cfg["data"]}})).ensure_phase(0)


def test_an_entry_half_written_by_a_killed_process_is_never_read(tiny, tmp_path):
    import signal
    import time
    cfg = tiny(model=PROBE, training={"epochs": 1})
    marker = tmp_path / "writing"
    proc = mp.get_context("spawn").Process(target=_killed_while_writing, args=(cfg, str(marker)))
    proc.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the writer never reached the write"
    os.kill(proc.pid, signal.SIGKILL)  # killed mid-write, holding the entry's lock
    proc.join(timeout=30)
    assert not list(cache_dir().rglob("*.pt"))         # only a temporary file: no entry
    assert list(cache_dir().rglob(".tmp-*"))
    trainer = phase_cache(cfg)                          # the lock died with the process: no wait, no partial read
    assert trainer.cached.computed == ["train", "val"] and trainer.cached.loaded == []
    from trainables.checkpoint import read
    entries = sorted(cache_dir().rglob("*.pt"))
    torn = read(entries[0])["meta"]["split"]
    # a torn entry under the final name (a file system without atomic rename) is recomputed, not trusted
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    again = phase_cache(cfg)
    assert again.cached.computed == [torn] and again.cached.loaded == [s for s in ("train", "val") if s != torn]
    assert torch.equal(again.cached.splits["train"].images, trainer.cached.splits["train"].images)
    assert torch.equal(again.cached.splits["val"].images, trainer.cached.splits["val"].images)


@pytest.mark.parametrize("change, why", [
    ({"data": {"augment": "standard"}}, "data.augment is standard"),
    ({"model": {"strategy": "full"}}, "every parameter trains"),
    ({"model": {"dropout": 0.2}}, "Dropout is random in training"),
    ({"model": {"arch": "resnet18", "drop_rate": 0.2}}, "model.drop_rate 0.2"),
    ({"training": {"feature_cache": False}}, "training.feature_cache is off"),
    ({"model": {"strategy": "partial", "freeze_depth": 0.5}, "training": {"prefix_cache_mb": 1},
      "data": {"classes": None, "samples_per_class": None}}, "MB > training.prefix_cache_mb 1"),
])
def test_no_cache_where_it_would_change_the_results(tiny, change, why, caplog):
    cfg = tiny(model=PROBE, training={"epochs": 1})
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value}
    with caplog.at_level("INFO", logger="trainables.classification"):
        trainer = phase_cache(cfg)
    assert trainer.cached is None
    assert why in caplog.text
    assert not list(cache_dir().rglob("*.pt"))


def test_resume_on_cached_features_continues_exactly(tiny, tmp_path):
    cfg = tiny(model=PROBE, data=SMALL, training={"epochs": 3, "scheduler": "cosine"})
    full = run(cfg)
    train_until(train, cfg, 2, DirCheckpoints(tmp_path / "ckpt"))
    state = DirCheckpoints(tmp_path / "ckpt").latest()
    assert set(state["model"]) == set(Trainer(trial_config(cfg)).model.state_dict())  # the full model, not the head
    resumed = run(cfg, DirCheckpoints(tmp_path / "ckpt"))
    assert resumed[0]["feature_cache"] == 1
    assert_same(resumed, full[2:])


def test_two_phase_uses_the_cache_in_its_first_phase_only(tiny):
    model = {"strategy": "two_phase", "head_epochs": 1, "freeze_depth": 0.5, "dropout": 0.0}
    training = {"epochs": 2, "scheduler": "none"}
    cached = run(tiny(model=model, training=training))
    images = run(tiny(model=model, training={**training, "feature_cache": False}))
    assert [(r["feature_cache"], r["prefix_cache"]) for r in cached] == [(1, 0), (0, 0)]
    assert_same(cached, images)


@pytest.mark.parametrize("arch, size", [("scratch_cnn", 16), ("resnet10t", 16), ("tv:resnet18", 16),
                                        ("mobilenetv3_small_050", 32), ("tv:mobilenet_v3_small", 32)])
def test_prefix_cache_equals_training_on_images(tiny, arch, size):
    # scratch_cnn and tv:mobilenet_v3_small keep dropout in the trained part: the suffix draws the same masks
    model = {"arch": arch, "strategy": "partial", "freeze_depth": 0.5}
    training = {"epochs": 2, "batch_size": 32, "max_steps_per_epoch": 2, "optimizer": "sgd", "scheduler": "none"}
    cached = run(tiny(model=model, data={"image_size": size}, training=training))
    images = run(tiny(model=model, data={"image_size": size}, training={**training, "feature_cache": False}))
    assert [r["prefix_cache"] for r in cached] == [1, 1]
    assert_same(cached, images)


def test_a_chain_broken_by_the_forward_is_not_split():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.a(x)
            return self.c(self.b(y) + y)  # c does not take b's output: the chain ends after b
    m = Skip().eval()
    links = chain(m)
    assert [n for n, _ in links] == ["a", "b", "c"]
    assert called_as_chain(m, links, 3, torch.zeros(1, 3, 4, 4)) == 2
