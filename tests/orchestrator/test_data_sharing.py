"""Data decoded once per node and shared by the trials there (orchestrator.data_share, trainables.data.shared)."""
import os
import subprocess
import sys

import pytest
import torch

from trainables.config import DataConfig
from trainables.data import load_raw, prepare
from trainables.data import shared


# ---- the trainables hook, without Ray --------------------------------------------------------------------
def test_without_a_provider_prepared_is_plain_prepare():
    cfg = DataConfig(name="digits")
    raw = load_raw(cfg)
    previous = shared.set_provider(None)
    try:
        a, b = shared.prepared(raw, cfg, 16), prepare(raw, cfg, 16)
    finally:
        shared.set_provider(previous)
    assert a.splits.keys() == b.splits.keys()
    for name in a.splits:
        assert torch.equal(a.splits[name].images, b.splits[name].images)
        assert torch.equal(a.splits[name].labels, b.splits[name].labels)


def test_a_provider_is_used_only_when_data_share_is_on():
    calls = []

    def provider(raw, cfg, size):
        calls.append(size)
        return prepare(raw, cfg, size)

    cfg = DataConfig(name="digits")
    raw = load_raw(cfg)
    previous = shared.set_provider(provider)
    try:
        shared.prepared(raw, cfg, 16)
        shared.prepared(raw, DataConfig(name="digits", share=False), 16)
    finally:
        shared.set_provider(previous)
    assert calls == [16]


def test_keys_follow_what_changes_the_decoded_images():
    base = DataConfig(name="digits")
    raw = load_raw(base)
    key = shared.spec_key(raw, base, 16)
    # per-batch augmentation, loader processes, the lazy/in-memory limit and the switch itself: same images
    for same in ({"augment": "standard"}, {"num_workers": 2}, {"share": False}, {"memory_limit_mb": 10}):
        assert shared.spec_key(raw, DataConfig(name="digits", **same), 16) == key, same
    assert shared.spec_key(raw, base, 24) != key
    for other in ({"samples_per_class": 5}, {"split_seed": 1}, {"val_fraction": 0.3}, {"test_fraction": 0.1}):
        assert shared.spec_key(raw, DataConfig(name="digits", **other), 16) != key, other
    subset = DataConfig(name="digits", classes=[5, 6, 7])
    assert shared.spec_key(load_raw(subset), subset, 16) != key


def test_arrays_round_trip_read_only():
    data = prepare(load_raw(DataConfig(name="digits")), DataConfig(name="digits"), 16)
    arrays = shared.to_arrays(data)
    for images, labels in arrays["splits"].values():
        images.flags.writeable = labels.flags.writeable = False  # as Ray's object store hands them out
    back = shared.from_arrays(arrays)
    assert back.class_names == data.class_names and back.image_size == 16
    for name, split in data.splits.items():
        assert torch.equal(back.splits[name].images, split.images)
        assert torch.equal(back.splits[name].labels, split.labels)
    assert shared.nbytes(arrays) == sum(s.images.numel() + 8 * len(s.labels) for s in data.splits.values())


# ---- the per-node holder -----------------------------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_holder_makes_waiters_read_the_first_decode_and_recovers_from_a_dead_decoder(ray_session):
    import numpy as np
    import ray
    from orchestrator.data_share import NodeData
    holder = NodeData.remote()
    me = os.getpid()
    assert ray.get(holder.claim.remote("k", me, "d"))[0] == "decode"
    waiting = holder.claim.remote("k", me + 1, "d")
    ready, _ = ray.wait([waiting], timeout=1.0)
    assert not ready, "a second trial must wait for the first decode, not decode again"
    refs = ray.get(holder.done.remote("k", me, {"x": np.arange(5)}, 40, 0.1))
    what, got = ray.get(waiting)
    assert what == "read" and got[0] == refs[0]
    assert ray.get(got[0])["x"].tolist() == [0, 1, 2, 3, 4]
    # a decoder that died without a word: the next trial takes over after the poll interval
    assert ray.get(holder.claim.remote("k2", dead_pid(), "d"))[0] == "decode"
    assert ray.get(holder.claim.remote("k2", me, "d"), timeout=30)[0] == "decode"
    # a decoder that failed gives its claim back; a set that cannot be shared is decoded by each trial
    holder.give_up.remote("k2", me)
    assert ray.get(holder.claim.remote("k2", me, "d"))[0] == "decode"
    holder.keep_local.remote("k2", me, "decoded lazily")
    assert ray.get(holder.claim.remote("k2", me, "d"))[0] == "local"
    stats = ray.get(holder.report.remote())
    assert stats["k"]["decodes"] == 1 and stats["k"]["reads"] == 1
    assert stats["k2"]["decodes"] == 3 and stats["k2"]["local"] == 1
    ray.kill(holder)


# ---- a study ------------------------------------------------------------------------------------------------
def test_study_decodes_once_per_node_per_spec_with_the_same_metrics_as_unshared(ray_session, tmp_path):
    import ray
    from analysis.load import load
    from orchestrator import data_share
    from orchestrator.tuner import run_study
    from search_spaces import study_from_dict
    from tests.conftest import tiny_study
    # two data specs (16 and 24 px), each trained by two trials that share and two twins that decode their own,
    # in reused processes: any mix-up of data between specs or trials would change a twin's numbers
    study = study_from_dict(tiny_study(
        "sharing", data={"share": {"grid": [True, False]}, "image_size": {"grid": [16, 24]}},
        training={"epochs": 1, "lr": {"grid": [0.003, 0.01]}}))
    lines = []
    folder, grid = run_study(study, storage=str(tmp_path), log=lines.append)
    assert not grid.errors
    stats = data_share.last_stats()
    assert len(stats) == 1, "one node"
    per_key = sorted(stats.popitem()[1].values(), key=lambda s: s["data"])
    assert [s["data"] for s in per_key] == ["digits at 16 px", "digits at 24 px"]
    for s in per_key:
        assert (s["decodes"], s["reads"], s["local"], s["why_local"]) == (1, 1, 0, ""), s
    assert per_key[0]["bytes"] == 1797 * 3 * 16 * 16 + 1797 * 8
    assert any(line.startswith("data shared on 1 node(s)") for line in lines)

    t = load(folder)
    assert len(t.trials) == 8
    runs = t.epochs.merge(t.trials[["trial_id", "config.data.share", "config.data.image_size",
                                    "config.training.lr"]], on="trial_id")
    for (size, lr), twins in runs.groupby(["config.data.image_size", "config.training.lr"]):
        on, off = twins[twins["config.data.share"]], twins[~twins["config.data.share"]]
        assert len(on) == len(off) == 1
        for col in ("train_loss", "val_loss", "val_acc"):
            assert on[col].tolist() == off[col].tolist(), (size, lr, col)
    # the study is over: its registry and holders are gone, and with them the object store copies
    with pytest.raises(ValueError):
        ray.get_actor(data_share.registry_name())
    for holder in data_share.last_holders():
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(holder.report.remote(), timeout=30)


def test_a_lost_registry_or_holder_makes_the_trial_decode_its_own_data(ray_session, caplog):
    # a node lost mid-study takes its holder (and, were it there, the registry) with it: trials go on unshared
    import ray
    from orchestrator.data_share import SharedProvider, shared_data
    cfg = DataConfig(name="digits", image_size=8, share=True)
    raw = load_raw(cfg)
    with shared_data(log=lambda *a: None):
        provider = SharedProvider()
        first = provider(raw, cfg, 8)                   # decodes and shares
        ray.kill(provider._holder())                    # this node's holder dies
        with caplog.at_level("WARNING", logger="orchestrator.data_share"):
            again = provider(raw, cfg, 8)
        assert "data sharing unavailable" in caplog.text
        ray.kill(provider.registry)                     # and the registry
        caplog.clear()
        with caplog.at_level("WARNING", logger="orchestrator.data_share"):
            third = provider(raw, cfg, 8)
        assert "data sharing unavailable" in caplog.text
    for data in (again, third):
        for name, split in first.splits.items():
            assert torch.equal(split.images, data.splits[name].images)
            assert torch.equal(split.labels, data.splits[name].labels)
