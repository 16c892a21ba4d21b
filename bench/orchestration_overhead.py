"""Orchestration overhead of tlsweep on Ray Tune, measured side by side in one run.

(a) Per-trial bookkeeping: 200 no-op trials (each reports one epoch) through tlsweep's Tuner set-up and Parquet
    sink, with and without actor reuse. Anchor: Ray's release test runs 10,000 trials at ~0.07-0.14 s each on
    16 CPUs; goal here: at most 0.2 s per trial on 2 cores.
(b) Sweep efficiency: 8 real trials of about 10 s (digits at 32 px, scratch CNN, 16 epochs), 2 at a time: wall time of the sweep
    divided by (sum of the trials' own training time / concurrency). Goal: at most 1.10.

Run: .venv/bin/python bench/orchestration_overhead.py [--noop-trials 200] [--skip-b]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import ray  # noqa: E402
from ray import tune  # noqa: E402

from analysis.load import load  # noqa: E402
from orchestrator import tuner as T  # noqa: E402
from orchestrator.storage import StudyStore  # noqa: E402
from search_spaces import study_from_dict  # noqa: E402


def noop_trial(config: dict) -> None:
    tune.report({"epoch": 1, "val_acc": config["training.lr"]})


def study(name: str, n: int, epochs: int = 1, size: int = 16, **training) -> object:
    return study_from_dict({
        "name": name, "data": {"name": "digits", "image_size": size},
        "model": {"arch": "scratch_cnn", "conv_layers": 3, "first_layer_filters": 8, "dense_units": 32},
        "training": {"epochs": epochs, "batch_size": 64, "lr": {"grid": [0.001 + i * 1e-5 for i in range(n)]},
                     **training},
        "search": {"algorithm": "grid", "scheduler": "none", "max_concurrent": 2},
        "resources": {"cpu": 1, "max_failures": 0, "keep": 1}})


def noop_sweep(n: int, reuse: bool, root: str) -> float:
    s = study(f"noop_reuse{int(reuse)}", n)
    folder = T.study_dir(s, root)
    store = StudyStore(folder)
    T.prepare_folder(s, store, overwrite=True)
    cfg = T.tune_config(s)
    cfg.reuse_actors = reuse
    tuner = tune.Tuner(tune.with_resources(noop_trial, {"cpu": 1}), param_space=T.space.param_space(s),
                       tune_config=cfg, run_config=T.run_config(s, store))
    start = time.perf_counter()
    tuner.fit()
    wall = time.perf_counter() - start
    assert len(load(folder).trials) == n
    return wall


def real_sweep(root: str, epochs: int) -> tuple[float, float]:
    s = study("efficiency", 8, epochs=epochs, size=32)
    start = time.perf_counter()
    folder, _ = T.run_study(s, storage=root, overwrite=True, log=lambda *a: None)
    wall = time.perf_counter() - start
    trials = load(folder).trials
    return wall, float(trials["wall_seconds"].sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--noop-trials", type=int, default=200)
    ap.add_argument("--no-reuse-trials", type=int, default=40, help="fewer: each costs a new process")
    ap.add_argument("--epochs", type=int, default=16, help="epochs per real trial (about 10 s on 2 cores)")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root = tempfile.mkdtemp(prefix="tlsweep-bench-")
    for reuse, n in ((False, args.no_reuse_trials), (True, args.noop_trials)):
        wall = noop_sweep(n, reuse, root)
        print(f"(a) {n} no-op trials, reuse_actors={reuse}: {wall:.1f}s wall, "
              f"{wall / n:.3f} s/trial (goal <= 0.2; tlsweep runs with reuse_actors=True)", flush=True)
    if not args.skip_b:
        wall, busy = real_sweep(root, args.epochs)
        print(f"(b) 8 trials, {busy / 8:.1f}s each on average, 2 at a time: wall {wall:.1f}s, "
              f"ideal {busy / 2:.1f}s, ratio {wall / (busy / 2):.3f} (goal <= 1.10)", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
