"""Several simulated nodes on this machine (``ray.cluster_utils.Cluster``) with logical GPUs: packing trials onto
GPUs, spreading them over nodes, and losing a node mid-study."""
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from analysis.load import load
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study


@pytest.fixture
def cluster():
    """A head (no GPUs) and two workers with 2 logical GPUs and 4 logical CPUs each."""
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=4, num_gpus=2) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def max_overlap(trials) -> int:
    events = sorted([(s, 1) for s in trials["started_at"]] + [(e, -1) for e in trials["ended_at"]],
                    key=lambda x: (x[0], x[1]))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def gpu_study(name: str, gpu: float, n: int, epochs: int = 2) -> dict:
    return tiny_study(name, training={"epochs": epochs, "lr": {"grid": [0.001 + i * 1e-4 for i in range(n)]}},
                      search={"max_concurrent": None}, resources={"cpu": 1, "gpu": gpu, "max_failures": 2})


@pytest.mark.parametrize("gpu, concurrent", [pytest.param(0.5, 8, marks=pytest.mark.slow), (1, 4)])  # 8: ~55 s
def test_trials_pack_onto_logical_gpus_across_nodes(cluster, tmp_path, gpu, concurrent):
    c, workers = cluster
    study = study_from_dict(gpu_study(f"pack{concurrent}", gpu, concurrent))
    folder, grid = run_study(study, storage=str(tmp_path))
    t = load(folder)
    assert len(t.trials) == concurrent and set(t.trials["status"]) == {"TERMINATED"}
    assert max_overlap(t.trials) == concurrent, "all trials should have run at the same time"
    first = t.epochs.sort_values("epoch").groupby("trial_id").first()
    worker_ids = {w.node_id for w in workers}
    assert set(first["node_id"]) == worker_ids, "trials should spread over both GPU nodes"
    assert (first.groupby("node_id").size() == concurrent // 2).all()
    # each trial saw exactly one GPU (CUDA_VISIBLE_DEVICES is set by Ray from these ids)
    assert first["gpu_ids"].map(lambda s: len(s.split(","))).eq(1).all()
    per_gpu = first.groupby(["node_id", "gpu_ids"]).size()
    assert (per_gpu == int(1 / gpu)).all()


def test_node_removed_mid_study_trials_resume_elsewhere(cluster, tmp_path):
    c, workers = cluster
    study = study_from_dict(gpu_study("lose_node", 1, 4, epochs=5))
    victim = workers[1]
    removed = threading.Event()

    def remove_when_running() -> None:
        folder = tmp_path / "lose_node"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                e = load(folder).epochs
            except Exception:  # noqa: BLE001 - nothing written yet
                e = None
            on_victim = e[e["node_id"] == victim.node_id].groupby("trial_id")["epoch"].max() if e is not None \
                and len(e) else None
            # remove the node once both of its trials have checkpointed 2 epochs there
            if on_victim is not None and len(on_victim) == 2 and on_victim.min() >= 2:
                c.remove_node(victim)
                removed.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=remove_when_running, daemon=True)
    watcher.start()
    folder, grid = run_study(study, storage=str(tmp_path))
    watcher.join(timeout=5)
    assert removed.is_set(), "the node was never removed: the study ended first"
    t = load(folder)
    assert len(t.trials) == 4 and set(t.trials["status"]) == {"TERMINATED"}
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert t.epochs.groupby("trial_id")["epoch"].apply(lambda s: sorted(s) == list(range(1, 6))).all()
    moved = t.trials[t.trials["failures"] > 0]["trial_id"]
    assert len(moved) >= 1, "a trial of the removed node should have failed over"
    for tid in moved:
        rows = t.epochs[t.epochs["trial_id"] == tid].sort_values("epoch")
        # epochs before the failure stay as the removed node wrote them (resumed from the checkpoint, not rerun)
        assert rows["node_id"].iloc[0] == victim.node_id
        assert rows["node_id"].iloc[-1] != victim.node_id
