"""Private memory of reused trial processes: N short trials, 1 at a time, through tlsweep's own run path.

Ray Tune reuses the trial actor (``reuse_actors=True``, orchestrator.tuner), so one process runs every trial.
``TLSWEEP_MEMORY_LOG`` makes it log its private memory at the start and end of each trial
(orchestrator.trial_memory); this prints them per trial, per variant, without and with the release of each
trial's memory at its end:

- ``cnn``: digits at 16 px, the tests' 2-layer scratch CNN (tests/conftest.py ``tiny_study``)
- ``resnet``: resnet18 (random init: no ImageNet weights offline) at 32 px, full fine-tuning
- ``probe``: resnet18 at 32 px, ``linear_probe`` (frozen-feature cache)
- ``workers``: the scratch CNN on an image folder decoded lazily with 2 DataLoader workers

Run: .venv/bin/python bench/reused_memory.py [--trials 20] [--variants cnn,resnet,probe,workers]
(under ``flock /tmp/tlsweep-ray.lock`` on a shared machine)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.conftest import tiny_study  # noqa: E402


def variant(name: str, n: int, root: Path) -> dict:
    lrs = {"grid": [0.003 + i * 1e-5 for i in range(n)]}
    search = {"max_concurrent": 1}
    if name == "cnn":
        return tiny_study(name, training={"lr": lrs, "epochs": 2}, search=search)
    if name in ("resnet", "probe"):
        return tiny_study(name, data={"image_size": 32}, model={"arch": "resnet18", "strategy":
                          "full" if name == "resnet" else "linear_probe"},
                          training={"lr": lrs, "epochs": 2}, search=search)
    if name == "workers":
        from PIL import Image
        folder = root / "imgs"
        for c, colour in enumerate(((255, 0, 0), (0, 0, 255), (0, 255, 0))):
            (folder / str(c)).mkdir(parents=True, exist_ok=True)
            for i in range(60):
                Image.new("RGB", (24, 24), (colour[0], colour[1], (colour[2] + i) % 256)).save(
                    folder / str(c) / f"{i}.png")
        return tiny_study(name, data={"name": "imagefolder", "root": str(folder), "image_size": 16,
                                      "memory_limit_mb": 0, "num_workers": 2},
                          training={"lr": lrs, "epochs": 2, "batch_size": 32}, search=search)
    raise SystemExit(f"--variants: unknown variant {name!r}")


def rows(log: Path) -> list[dict]:
    out = [json.loads(line) for f in sorted(log.glob("*.jsonl")) for line in f.read_text().splitlines()]
    return sorted(out, key=lambda r: r["time"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--variants", default="cnn,resnet,probe,workers")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tlsweep-reused-memory-"))
    log = tmp / "memory"
    os.environ["TLSWEEP_MEMORY_LOG"] = str(log)  # before ray.init: the workers inherit it
    os.environ.setdefault("TLSWEEP_FEATURE_CACHE", str(tmp / "features"))
    import ray
    from orchestrator.trial_memory import NO_RELEASE
    from orchestrator.tuner import run_study
    from search_spaces import study_from_dict
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    log.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split(","):
        for release in (False, True):  # before / after orchestrator.trial_memory's release, side by side
            for f in log.glob("*"):
                f.unlink()
            if not release:
                (log / NO_RELEASE).touch()
            run_study(study_from_dict(variant(name, args.trials, tmp)), storage=str(tmp / "out"),
                      log=lambda *_: None, overwrite=True)
            got = rows(log)
            print(f"\n{name}, {'with' if release else 'without'} the release: {len(got)} trials in "
                  f"{len({r['pid'] for r in got})} process(es); private MiB at start / end / after the release, "
                  f"tensors alive after")
            for i, r in enumerate(got, 1):
                print(f"  {i:2d} pid {r['pid']}  {r['start_mb']:7.1f} {r['end_mb']:7.1f} {r['released_mb']:7.1f}"
                      f"  {r['tensors']}")
            if len(got) >= 3:
                print(f"  after trial {len(got)} minus after trial 3: "
                      f"{got[-1]['released_mb'] - got[2]['released_mb']:+.1f} MiB")
    ray.shutdown()


if __name__ == "__main__":
    main()
