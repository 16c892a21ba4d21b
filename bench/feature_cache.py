"""A linear-probe sweep with and without the frozen-feature cache, side by side in one process.

8 trials (8 learning rates) of one architecture (resnet18, weights none: the cache keys on the weights, not on
where they came from) on digits, each trained on images and on cached features, alternating which goes first.
The cache starts empty, so the first cached trial pays for computing the features. Prints the total time ratio
(goal: >= 5 at 32 px on CPU) and the largest difference in final validation accuracy and loss (goal: 0 up to
float noise), per image size. One torch thread by default: a Ray trial with ``resources.cpu: 1`` gets one, and
on a shared 2-core machine two threads mostly wait on each other (docs/BENCHMARKS.md has both).

``--strategy partial`` measures the prefix cache the same way (the first half of the stages frozen: each epoch
still trains the other half).

Run: .venv/bin/python bench/feature_cache.py [--sizes 32 64] [--trials 8] [--epochs 3] [--threads 1]
     [--strategy linear_probe|partial]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from trainables.classification import train  # noqa: E402


COLUMN = {"linear_probe": "feature_cache", "partial": "prefix_cache"}


def trial(arch: str, size: int, lr: float, epochs: int, threads: int, cache: bool,
          strategy: str = "linear_probe") -> tuple[float, dict]:
    rows: list[dict] = []
    cfg = {"data": {"name": "digits", "image_size": size, "augment": "none"},
           "model": {"arch": arch, "weights": "none", "strategy": strategy, "freeze_depth": 0.5},
           "training": {"epochs": epochs, "batch_size": 64, "lr": lr, "scheduler": "cosine", "threads": threads,
                        "feature_cache": cache}, "seed": 0}
    start = time.perf_counter()
    train(cfg, rows.append)
    seconds = time.perf_counter() - start
    assert all(r[COLUMN[strategy]] == int(cache) for r in rows), rows[-1]
    return seconds, rows[-1]


def sweep(arch: str, size: int, trials: int, epochs: int, threads: int, strategy: str) -> None:
    lrs = torch.logspace(-4, -1, trials).tolist()
    trial(arch, size, 1e-3, 1, threads, False)  # warm-up (imports, first allocations), not counted
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TLSWEEP_FEATURE_CACHE"] = folder  # empty: the first cached trial computes the features
        times = {False: [], True: []}
        d_acc = d_loss = 0.0
        for i, lr in enumerate(lrs):
            results = {}
            for cache in ((False, True) if i % 2 == 0 else (True, False)):
                results[cache] = trial(arch, size, lr, epochs, threads, cache, strategy)
                times[cache].append(results[cache][0])
            (t0, a), (t1, b) = results[False], results[True]
            d_acc = max(d_acc, abs(a["val_acc"] - b["val_acc"]))
            d_loss = max(d_loss, abs(a["val_loss"] - b["val_loss"]))
            print(f"{size}px lr {lr:.2e}: images {t0:6.1f}s val_acc {a['val_acc']:.4f}  |  cached {t1:6.1f}s "
                  f"val_acc {b['val_acc']:.4f}", flush=True)
        total0, total1 = sum(times[False]), sum(times[True])
        print(f"{COLUMN[strategy]} {strategy} {arch} {size}px, {trials} trials x {epochs} epochs, threads={threads}: "
              f"images {total0:.1f}s, cached {total1:.1f}s (first trial, computing: {times[True][0]:.1f}s) "
              f"-> ratio {total0 / total1:.2f} (goal >= 5); max |val_acc diff| {d_acc:.2e}, "
              f"max |val_loss diff| {d_loss:.2e} (goal 0)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategy", default="linear_probe", choices=sorted(COLUMN),
                    help="partial (freeze_depth 0.5): the prefix cache instead of the head-input cache")
    args = ap.parse_args()
    for size in args.sizes:
        sweep(args.arch, size, args.trials, args.epochs, args.threads, args.strategy)


if __name__ == "__main__":
    main()
