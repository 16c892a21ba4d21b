"""Decoding an image folder: serial vs threads vs worker processes, and the decoded cache empty vs warm.

Generates ``--images`` PNGs of 32-64 px (random sizes; blurred noise, so they compress like photos more than like
flat colour) in 10 class folders of a temporary folder; the generation is not timed. Then, side by side in one run:

1. **files/s** of ``trainables.decode_pool.decode_all`` at ``--size`` px over every file: ``serial`` (one
   process), ``threads`` (``--workers`` threads, and 4 threads, what ``prepare`` used before), ``processes``
   (``--workers`` spawned processes, their start included), ``--rounds`` times in alternating order.
2. **time to the first epoch**: a trial (``trainables.classification.train``: imagefolder at ``--size`` px, 2-layer
   scratch CNN, ``--steps`` batches per epoch so the epoch stays short: the figure is mostly data preparation),
   from calling ``train`` to the first epoch's report, with ``data.decoded_cache: false`` (decoded in parallel,
   not stored), with an empty cache and with the cache it left (warm); and the same up to "data ready"
   (``load_data`` returns). Each of the two starts from an empty cache folder of its own in every round; a
   trial on 100 other files warms up imports first, not counted.

Run: nice -n 10 .venv/bin/python bench/decode_cache.py [--images 24000] [--size 32] [--workers N] [--steps 20]
     [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from trainables import decode_pool  # noqa: E402


def generate(root: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(n):
        s = int(rng.integers(32, 65))
        small = rng.integers(0, 256, (s // 4 + 1, s // 4 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((s, s), Image.BILINEAR)
        im.save(root / f"c{i % 10}" / f"{i:06d}.png")
    return sorted(root.rglob("*.png"))


def files_per_s(paths: list[Path], size: int, workers: int, rounds: int) -> dict[str, float]:
    variants = [("serial", 1), ("threads", workers), ("threads", 4), ("processes", workers)]
    rates: dict[str, list[float]] = {}
    reference = None
    for r in range(rounds):
        for mode, w in (variants if r % 2 == 0 else variants[::-1]):
            start = time.perf_counter()
            images, errors = decode_pool.decode_all(paths, size, workers=w, mode=mode)
            rate = len(paths) / (time.perf_counter() - start)
            assert not errors
            if reference is None:
                reference = images
            assert np.array_equal(images, reference), f"{mode} x{w} decoded other pixels"
            name = f"{mode} x{w}"
            rates.setdefault(name, []).append(rate)
            print(f"round {r + 1}: {name:12s} {rate:8,.0f} files/s", flush=True)
    return {k: statistics.median(v) for k, v in rates.items()}


def data_ready(root: Path, size: int, cache: bool) -> tuple[float, int]:
    """(seconds until ``load_data`` returns, training images)."""
    from trainables.config import DataConfig
    from trainables.data import load_data
    start = time.perf_counter()
    data = load_data(DataConfig(name="imagefolder", root=str(root), decoded_cache=cache), size)
    return time.perf_counter() - start, len(data.splits["train"])


def first_epoch(root: Path, size: int, steps: int, cache: bool) -> float:
    """Seconds from calling ``train`` to its first epoch's report (data, model, one short epoch, validation)."""
    from trainables.classification import train
    first: list[float] = []
    start = time.perf_counter()
    train({"data": {"name": "imagefolder", "root": str(root), "image_size": size, "decoded_cache": cache},
           "model": {"arch": "scratch_cnn", "conv_layers": 2, "first_layer_filters": 8, "dense_units": 32},
           "training": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": steps}, "seed": 0},
          lambda row: first.append(time.perf_counter() - start))
    return first[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=24000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=decode_pool.cpus())
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.workers)  # what a trial with resources.cpu = workers gets
    with tempfile.TemporaryDirectory(prefix="tlsweep-bench-decode-") as tmp:
        root = Path(tmp) / "data"
        start = time.perf_counter()
        paths = generate(root, args.images)
        mb = sum(p.stat().st_size for p in paths) / 2**20
        print(f"generated {len(paths):,} PNGs of 32-64 px ({mb:.0f} MB) in {time.perf_counter() - start:.0f} s "
              f"(not timed below); {decode_pool.cpus()} CPUs, workers {args.workers}", flush=True)
        rates = files_per_s(paths, args.size, args.workers, args.rounds)
        warm_up = Path(tmp) / "warm-up"
        generate(warm_up, 100, seed=1)
        first_epoch(warm_up, args.size, 1, False)  # imports and first allocations, not counted
        times: dict[str, list[tuple[float, float]]] = {"off": [], "empty": [], "warm": []}
        for r in range(args.rounds):
            order = ["off", "empty", "warm"] if r % 2 == 0 else ["empty", "warm", "off"]
            measured = {}
            for what in ("ready", "epoch"):  # each with a cache folder of its own: empty, then warm
                os.environ["TLSWEEP_DECODED_CACHE"] = str(Path(tmp) / f"cache-{r}-{what}")
                for kind in order:
                    if what == "ready":
                        seconds, n = data_ready(root, args.size, kind != "off")
                    else:
                        seconds = first_epoch(root, args.size, args.steps, kind != "off")
                    measured[what, kind] = seconds
                    print(f"round {r + 1}: {'data ready' if what == 'ready' else 'first epoch'} with cache "
                          f"{kind:5s} {seconds:6.2f} s", flush=True)
            for kind in times:
                times[kind].append((measured["ready", kind], measured["epoch", kind]))
        entry = sum(f.stat().st_size for f in (Path(tmp) / "cache-0-ready").glob("*.npz")) / 2**20
    serial = rates["serial x1"]
    print("\nfiles/s (median): " + ", ".join(f"{k} {v:,.0f} ({v / serial:.2f}x)" for k, v in rates.items()))
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in times.items()}
    print(f"to data ready (median): off {med['off'][0]:.2f} s, empty cache {med['empty'][0]:.2f} s, "
          f"warm cache {med['warm'][0]:.2f} s (warm/off {med['warm'][0] / med['off'][0]:.3f})")
    print(f"to the first epoch's end (median): off {med['off'][1]:.2f} s, empty cache {med['empty'][1]:.2f} s, "
          f"warm cache {med['warm'][1]:.2f} s (warm/off {med['warm'][1] / med['off'][1]:.3f}; {args.steps} "
          f"batches of 64 of {n:,} training images, then validation); entries {entry:.0f} MB on disk at "
          f"{args.size} px")


if __name__ == "__main__":
    main()
