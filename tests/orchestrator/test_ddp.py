"""Data-parallel trials (``resources.workers_per_trial``): the same numbers as one worker, ASHA still stops them.

Exactness: with the same seed and global batch, N ranks together see exactly the one-process batch of every step
(rank r takes ``order[r::N]`` of the same permutation; digits' 1438 training images split evenly), and DDP's
gradient average equals the one-process mean-loss gradient because the per-rank batches have equal sizes. So the
metrics agree up to float reduction order (TOL). Not exact, hence off here: BatchNorm (statistics per shard) and
dropout / augmentation (each rank draws its own masks).

The studies allow retries (max_failures 2): Ray Train's own PlacementGroupCleaner can take a transient miss of the
State API for a dead controller and remove a live run's placement group (ray-project/ray#65447); Tune then
retries the trial, which resumes from its Train checkpoint, as a user's study (max_failures defaults to 2) would.
"""
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from analysis.load import load
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from search_spaces.sections import parse_resources
from tests.conftest import tiny_study
from trainables.errors import ConfigError

TOL = 1e-5  # measured: at most 2.4e-7 (val_loss); accuracies and counts agree exactly
EXACT = {"batch_norm": False, "dropout": 0.0}
DDP = {"workers_per_trial": 2, "max_failures": 2}
COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_macro_f1", "val_precision",
            "val_recall", "lr", "best_val_acc", "best_epoch")


def _rank(rank: int, world: int, port: int, config: dict, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from trainables.classification import train
        rows = []
        train(config, rows.append)
        out.put((rank, rows))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_metrics(one: list[dict], other: list[dict]) -> float:
    """Compare per-epoch metrics; returns the largest absolute difference."""
    assert [r["epoch"] for r in one] == [r["epoch"] for r in other]
    worst = 0.0
    for a, b in zip(one, other):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], abs=TOL), (a["epoch"], key)
            worst = max(worst, abs(a[key] - b[key]))
    return worst


def test_workers_per_trial_is_parsed_and_needs_whole_gpus():
    assert parse_resources({}).workers_per_trial == 1
    spec = parse_resources({"workers_per_trial": 4, "cpu": 2, "gpu": 1})
    assert (spec.workers_per_trial, spec.for_arch(None)) == (4, {"cpu": 2.0, "gpu": 1.0})
    with pytest.raises(ConfigError, match="workers_per_trial: must be >= 1"):
        parse_resources({"workers_per_trial": 0})
    with pytest.raises(ConfigError, match="resources.gpu: 0.5 GPU per worker.*whole GPUs"):
        parse_resources({"workers_per_trial": 2, "gpu": 0.5})
    with pytest.raises(ConfigError, match="by_arch.vit.gpu"):
        parse_resources({"workers_per_trial": 2, "gpu": 1, "by_arch": {"vit": {"gpu": 0.25}}})
    assert parse_resources({"gpu": 0.5}).gpu == 0.5  # one worker per trial may share a GPU


def test_two_gloo_processes_match_one(tiny):
    config = tiny(model=EXACT, training={"batch_size": 128, "threads": 1})
    one = []
    from trainables.classification import train
    train(config, one.append)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, config, out)) for r in range(2)]
    for p in procs:
        p.start()
    rows = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert_same_metrics(one, rows[0])
    assert [r.get("confusion") for r in one] == [r.get("confusion") for r in rows[0]]
    timing = ("epoch_seconds", "train_images_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows[1]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows[0]], "every rank reports the same metrics"


@pytest.mark.slow  # ~40-60 s: make test-slow (CI runs it)
def test_two_worker_trials_match_one_process_and_asha_stops_the_weak_one(ray_session, tmp_path):
    # One study, two 2-worker trials run one after the other (2 CPUs): the strong learning rate first, because
    # ASHA compares each trial with those that reached the rung before it.
    study = study_from_dict(tiny_study(
        "ddp", model=EXACT, training={"lr": {"grid": [0.01, 1.0e-6]}, "scheduler": "none"}, resources=DDP,
        search={"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}, "max_concurrent": 1}))
    folder, grid = run_study(study, storage=str(tmp_path))
    assert not grid.errors
    tables = load(folder)
    t = tables.trials.set_index("config.training.lr")
    assert t.loc[0.01, "status"] == "TERMINATED" and not t.loc[0.01, "stopped_early"]
    assert t.loc[0.01, "epochs_run"] == 2
    assert t.loc[1.0e-6, "stopped_early"] and t.loc[1.0e-6, "epochs_run"] == 1, "ASHA stopped the weak trial"

    # the strong trial's epochs equal one process training the same config (same seed, same global batch)
    from trainables.classification import train
    one: list[dict] = []
    train({**study.trial, "training": {**study.trial["training"], "lr": 0.01}}, one.append)
    strong = tables.epochs[tables.epochs["trial_id"] == t.loc[0.01, "trial_id"]].sort_values("epoch")
    assert {k for k in one[0] if k not in ("per_class", "confusion")} <= set(strong.columns)
    worst = assert_same_metrics(one, strong.to_dict("records"))
    print(f"max |1 process - 2 workers| over {COMPARED}: {worst:.3g}")
    # the best epoch's confusion matrix reached the sink, the same
    conf = tables.confusion[tables.confusion["trial_id"] == t.loc[0.01, "trial_id"]]
    best = [r for r in one if "confusion" in r][-1]
    expected = sorted([i, j, c] for i, row in enumerate(best["confusion"]) for j, c in enumerate(row) if c)
    assert sorted(conf[["true", "predicted", "count"]].values.tolist()) == expected
    # the epoch checkpoints live in the trial's folder, as many as resources.keep says (1)
    trial_dir = next(p for p in folder.glob("*/") if t.loc[0.01, "trial_id"] in p.name)
    ckpts = [p for p in trial_dir.glob("train/checkpoint_*") if p.is_dir()]
    assert len(ckpts) == 1 and (ckpts[0] / "state.pt").is_file()
    # the stopped run's workers and placement group are gone: all CPUs are free again
    deadline = time.time() + 30
    while ray_session.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert ray_session.available_resources().get("CPU", 0) == 2
