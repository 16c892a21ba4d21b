"""Data decoded once per node vs each trial decoding its own, side by side in one run.

8 trials (a 2-layer scratch CNN, 2 epochs, 2 at a time) on an image folder of 3,000 PNGs of 64 x 64 in 10 class
folders, generated into a temporary folder; the same study with ``data.share: true`` and ``false``, in the order
off, on, on, off (``--rounds 2``) so that drift on a shared machine hits both alike. Per study: wall time, and
peak memory of the Ray processes this benchmark started (GCS, raylet and its object store, workers), sampled every
0.5 s with psutil: the sum of their PSS (shared pages, the object store's among them, counted once) and the sum of
the trial processes' USS (their private memory).

``--image-size`` trains at another size than the files' (the decoded copy grows with it: 36 MiB at 64 px, 141 MiB
at 128 px), to see how the memory saved scales with the data; ``--steps N`` caps each epoch at N batches
(``training.max_steps_per_epoch``), for trials whose time is mostly data.

Run: .venv/bin/python bench/data_sharing.py [--images 3000] [--size 64] [--image-size 64] [--trials 8] [--epochs 2]
     [--steps N] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402

from analysis.load import load  # noqa: E402
from orchestrator import data_share  # noqa: E402
from orchestrator.tuner import run_study  # noqa: E402
from search_spaces import study_from_dict  # noqa: E402


def make_folder(root: Path, images: int, size: int, classes: int = 10) -> None:
    """Class-dependent stripes plus noise (PNG compresses noise poorly: decoding costs what real photos cost)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(images):
        c = i % classes
        base = np.stack([np.sin(xx * (c + 1) * 3 + i * 0.1), np.cos(yy * (c + 2) * 2), np.sin((xx + yy) * c)], -1)
        img = ((base * 0.5 + 0.5) * 200 + rng.integers(0, 55, (size, size, 3))).clip(0, 255).astype(np.uint8)
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def ray_processes():
    """This benchmark's Ray processes: everything its ``ray.init`` started (GCS, raylet with the object store,
    agents, workers), never other Ray clusters on the same machine."""
    for p in psutil.Process().children(recursive=True):
        try:
            yield p, " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def wait_for_trial_processes_to_exit(timeout: float = 60.0) -> None:
    """Tune ends a study's trial processes asynchronously: let the previous study's go before measuring."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(k in cmd for _, cmd in ray_processes()
                                         for k in ("ImplicitFunc", "NodeData", "Registry")):
        time.sleep(0.5)


class Peak:
    """Samples this benchmark's Ray processes: peak sum of PSS (all) and of USS (trial processes)."""

    def __init__(self, every: float = 0.5):
        self.every, self.node_pss, self.trial_uss, self.trials_seen = every, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = uss = trials = 0
            for p, cmd in ray_processes():
                try:
                    m = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                pss += m.pss
                if "ImplicitFunc" in cmd:  # a Tune function trial (a reused process keeps the name)
                    uss += m.uss
                    trials += 1
            self.node_pss, self.trial_uss = max(self.node_pss, pss), max(self.trial_uss, uss)
            self.trials_seen = max(self.trials_seen, trials)
            self._stop.wait(self.every)

    def __enter__(self) -> "Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def study(root: Path, share: bool, trials: int, epochs: int, size: int, steps=None):
    return study_from_dict({
        "name": f"share_{str(share).lower()}",
        # decoded_cache off: every unshared trial decodes, as before the disk cache (bench/decode_cache.py has it)
        "data": {"name": "imagefolder", "root": str(root), "image_size": size, "share": share,
                 "decoded_cache": False},
        "model": {"arch": "scratch_cnn", "conv_layers": 2, "first_layer_filters": 8, "dense_units": 32},
        "training": {"epochs": epochs, "batch_size": 128, "lr": {"grid": [0.001 + i * 1e-4 for i in range(trials)]},
                     "max_steps_per_epoch": steps},
        "search": {"algorithm": "grid", "scheduler": "none", "max_concurrent": 2},
        "resources": {"cpu": 1, "max_failures": 0, "keep": 1}})


def one_run(root: Path, out: str, share: bool, args) -> dict:
    s = study(root, share, args.trials, args.epochs, args.image_size, args.steps)
    wait_for_trial_processes_to_exit()
    with Peak() as peak:
        start = time.perf_counter()
        folder, grid = run_study(s, storage=out, overwrite=True, log=lambda *a: None)
        wall = time.perf_counter() - start
    assert not grid.errors, grid.errors
    trials = load(folder).trials
    stats = data_share.last_stats() if share else {}
    decodes = sum(s["decodes"] for node in stats.values() for s in node.values()) if share else len(trials)
    return {"share": share, "wall": wall, "node_pss": peak.node_pss, "trial_uss": peak.trial_uss,
            "trial_s": float(trials["wall_seconds"].sum()), "decodes": decodes, "processes": peak.trials_seen}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=64, help="the PNGs' side")
    ap.add_argument("--image-size", type=int, default=None, help="the trials' data.image_size (default: --size)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="at most N batches per epoch")
    ap.add_argument("--rounds", type=int, default=2, help="each round runs both; rounds alternate the order")
    args = ap.parse_args()
    args.image_size = args.image_size or args.size
    tmp = Path(tempfile.mkdtemp(prefix="tlsweep-share-"))
    start = time.perf_counter()
    make_folder(tmp / "images", args.images, args.size)
    print(f"{args.images} PNGs of {args.size}x{args.size} in 10 class folders "
          f"({sum(f.stat().st_size for f in (tmp / 'images').rglob('*.png')) / 2**20:.1f} MiB) "
          f"in {time.perf_counter() - start:.1f}s", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = []
    for r in range(args.rounds):
        for share in ((False, True) if r % 2 == 0 else (True, False)):
            res = one_run(tmp / "images", str(tmp / "results"), share, args)
            runs.append(res)
            print(f"share={str(share).lower():5s} wall {res['wall']:6.1f}s  trials' own time {res['trial_s']:6.1f}s  "
                  f"decodes {res['decodes']}  peak node PSS {res['node_pss'] / 2**20:7.0f} MiB  "
                  f"peak trial USS {res['trial_uss'] / 2**20:6.0f} MiB ({res['processes']} trial processes)", flush=True)
    ray.shutdown()

    def med(share: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["share"] == share)

    copy = args.images * 3 * args.image_size ** 2 / 2**20
    steps = f" of at most {args.steps} batches" if args.steps else ""
    print(f"{args.trials} trials, {args.epochs} epochs{steps}, {args.images} PNGs of {args.size} px trained at "
          f"{args.image_size} px ({copy:.0f} MiB decoded), 2 at a time; "
          f"median of {args.rounds} run(s) each:")
    for key, what in (("wall", "wall time"), ("trial_s", "sum of the trials' own time"),
                      ("node_pss", "peak PSS of the node's Ray processes"),
                      ("trial_uss", "peak USS of the trial processes")):
        print(f"  {what}: shared / each trial decoding = {med(True, key) / med(False, key):.3f}")


if __name__ == "__main__":
    main()
