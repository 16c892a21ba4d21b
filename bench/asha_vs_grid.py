"""ASHA vs the full grid on the same configurations, side by side in one run.

36 configurations (scratch CNNs of 2 or 3 conv layers with 8, 16 or 32 first-layer filters x 6 learning rates) on
digits at 16 px, up to 12 epochs each, every trial with seed 0 (a configuration gives the same numbers in every
run): first all of them to full length (``scheduler: none``), then under ASHA (``grace_period: 1``) with each
reduction factor asked for. Per run: epochs spent (the trials' ``epochs_run`` summed), the best validation
accuracy found and its configuration, wall time. Goal: ASHA's best within 1 point of the grid's best at no more
than 35% of the grid's epochs.

Asynchronous ASHA lets the first trials to reach a rung continue (there is nothing yet to compare them with), so
what it saves depends on the order in which trials arrive. A grid listed in ascending order (weak small models
and low learning rates first, every later trial better) is its worst case; under a scheduler tlsweep therefore
runs a grid's combinations in a seeded random order (``search.grid_order: auto``). Each ASHA run here uses that
default on the grid's values listed in another seeded order (``--orders 3``: 0, 1, 2; so the shuffled order
differs while every trial keeps seed 0), and ``--ascending`` adds the worst case (``grid_order: listed`` on the
ascending lists).

Run: .venv/bin/python bench/asha_vs_grid.py [--epochs 12] [--reduction-factors 2,3] [--orders 3] [--ascending]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import ray  # noqa: E402

from analysis.load import load  # noqa: E402
from orchestrator.tuner import run_study  # noqa: E402
from search_spaces import study_from_dict  # noqa: E402

GRID = {"model.conv_layers": [2, 3], "model.first_layer_filters": [8, 16, 32],
        "training.lr": [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]}


def ordered(order) -> dict:
    """Each dimension's values: ascending (order None) or in a permutation drawn with seed ``order``."""
    if order is None:
        return GRID
    rng = np.random.default_rng(order)
    return {k: [v[i] for i in rng.permutation(len(v))] for k, v in GRID.items()}


def study(name: str, scheduler, epochs: int, size: int, order):
    g = ordered(order)
    return study_from_dict({
        "name": name, "data": {"name": "digits", "image_size": size},
        "model": {"arch": "scratch_cnn", "conv_layers": {"grid": g["model.conv_layers"]},
                  "first_layer_filters": {"grid": g["model.first_layer_filters"]}, "dense_units": 32},
        "training": {"epochs": epochs, "batch_size": 64, "lr": {"grid": g["training.lr"]}},
        "search": {"algorithm": "grid", "metric": "val_acc", "mode": "max", "max_concurrent": 2,
                   "scheduler": scheduler, "grid_order": "listed" if order is None else "auto"},
        "resources": {"cpu": 1, "max_failures": 0, "keep": 1}, "seed": 0})


def one_run(name: str, scheduler, order, args, root: str) -> dict:
    start = time.perf_counter()
    folder, grid = run_study(study(name, scheduler, args.epochs, args.size, order), storage=root, overwrite=True,
                             log=lambda *a: None)
    wall = time.perf_counter() - start
    assert not grid.errors, grid.errors
    t = load(folder).trials
    best = t.loc[t["best_val_acc"].idxmax()]
    config = (f"conv_layers={best['config.model.conv_layers']} filters={best['config.model.first_layer_filters']} "
              f"lr={best['config.training.lr']:g}")
    return {"name": name, "order": "ascending" if order is None else f"shuffled {order}",
            "epochs": int(t["epochs_run"].sum()), "best": float(best["best_val_acc"]), "config": config,
            "wall": wall, "trials": len(t), "full": int((t["epochs_run"] == args.epochs).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--reduction-factors", default="2,3")
    ap.add_argument("--orders", type=int, default=3, help="ASHA runs per reduction factor, in shuffled orders")
    ap.add_argument("--ascending", action="store_true", help="also ASHA on the ascending grid (its worst case)")
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root = tempfile.mkdtemp(prefix="tlsweep-asha-")
    grid = one_run("grid", "none", 0, args, root)
    print(f"grid     (every trial to full length) epochs {grid['epochs']:4d}, best val_acc {grid['best']:.4f} "
          f"({grid['config']}), wall {grid['wall']:.1f}s", flush=True)
    runs = []
    for rf in (int(x) for x in args.reduction_factors.split(",")):
        asha = {"type": "asha", "grace_period": 1, "reduction_factor": rf}
        for order in ([None] if args.ascending else []) + list(range(args.orders)):
            r = one_run(f"asha_rf{rf}", asha, order, args, root)
            r["rf"], r["gap"] = rf, (grid["best"] - r["best"]) * 100
            r["share"] = r["epochs"] / grid["epochs"]
            runs.append(r)
            print(f"{r['name']} order {r['order']:9s} epochs {r['epochs']:4d} ({r['share']:6.1%} of the grid's), "
                  f"{r['full']:2d} trials to full length, best val_acc {r['best']:.4f} ({r['config']}; "
                  f"{r['gap']:+.2f} points below the grid's), wall {r['wall']:.1f}s "
                  f"({r['wall'] / grid['wall']:.2f}x the grid's)", flush=True)
    ray.shutdown()
    print(f"{grid['trials']} configurations on digits at {args.size} px, up to {args.epochs} epochs, 2 at a time; "
          f"goal: best within 1 point of the grid's at <= 35% of its epochs")
    for rf in sorted({r["rf"] for r in runs}):
        shuffled = [r for r in runs if r["rf"] == rf and r["order"] != "ascending"]
        worst = [r for r in runs if r["rf"] == rf and r["order"] == "ascending"]
        if shuffled:
            met = sum(r["gap"] <= 1.0 and r["share"] <= 0.35 for r in shuffled)
            each = ", ".join(f"{r['share']:.1%}" for r in shuffled)
            print(f"ASHA rf={rf}, shuffled orders: epochs {statistics.mean(r['share'] for r in shuffled):.1%} of the "
                  f"grid's on average ({each}), best at most {max(r['gap'] for r in shuffled):.2f} points below; "
                  f"goal met in {met} of {len(shuffled)}")
        for r in worst:
            print(f"ASHA rf={rf}, ascending order: epochs {r['share']:.1%}, {r['gap']:.2f} points below")


if __name__ == "__main__":
    main()
