"""Seconds from ``tlsweep run`` to its one-line error, for each mistake checked before Ray starts.

Each mistake is a small study file (or an argument) in a fresh temporary folder; the CLI runs in a subprocess
``--repeat`` times (after one warm-up run that is not counted: it fills the OS file cache and, on a new machine,
the model-name index), and the median wall time to exit is printed next to the exit code and the error line.
Goal (issue 16): each under 3 s on 2 cores. Nothing here starts Ray: a run that gets that far is reported as
``NOT CAUGHT`` and stopped.

Run: .venv/bin/python bench/cli_latency.py [--repeat 5] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TLSWEEP = [sys.executable, "-m", "orchestrator.cli"]
sys.path.insert(0, str(ROOT))
from tests.orchestrator.test_preflight import STUDY, image_folder  # noqa: E402  (the suite's cases)


def mistakes(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (study text, extra CLI arguments); --storage is added per run."""
    (tmp / "results" / "s").mkdir(parents=True)
    (tmp / "results" / "s" / "study.yaml").write_text(STUDY)
    (tmp / "a_file").write_text("")
    small = image_folder(tmp / "small", n=1)
    splits = tmp / "splits"
    image_folder(splits / "train")
    image_folder(splits / "val", classes=("cats", "dogs", "cows"))
    corrupt = image_folder(tmp / "corrupt")
    (corrupt / "cats" / "0.png").write_bytes(b"\x89PNG not really")
    folder = lambda root: STUDY.replace("name: digits", f"name: imagefolder, root: {root}")  # noqa: E731
    return {
        "unknown key": (STUDY.replace("epochs: 1", "epochz: 1"), []),
        "wrong model name": (STUDY.replace("scratch_cnn", "resnet_18"), []),
        "run again without --overwrite": (STUDY, ["--storage", str(tmp / "results")]),
        "resources.cpu: 64": (STUDY + "resources: {cpu: 64}\n", []),
        "image-folder root missing": (folder(tmp / "nowhere"), []),
        "class too small to split": (folder(small), []),
        "splits disagree on classes": (folder(splits), []),
        "first image unreadable": (folder(corrupt), []),
        "imagenet weights not cached, offline": (STUDY.replace("arch: scratch_cnn", "arch: resnet18, weights: "
                                                                                    "imagenet"), []),
        "weights file missing": (STUDY.replace("conv_layers: 2", "conv_layers: 2, weights: 'file:/nowhere.pt'"), []),
        "logger package missing": (STUDY + "logging: [wandb]\n", []),
        "unwritable --storage": (STUDY, ["--storage", str(tmp / "a_file" / "results")]),
        "300-character name": (STUDY.replace("name: s\n", f"name: {'n' * 300}\n"), []),
        "duplicate key": (STUDY + "training: {epochs: 2}\n", []),
        "non-finite number": (STUDY.replace("epochs: 1", "epochs: 1, lr: .nan"), []),
    }


def one(study: Path, args: list[str], storage: Path, env: dict) -> tuple[float, int, str]:
    argv = TLSWEEP + ["run", str(study)] + (args if "--storage" in args else args + ["--storage", str(storage)])
    start = time.perf_counter()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -1, "NOT CAUGHT (still running after 60 s)"
    seconds = time.perf_counter() - start
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("tlsweep: error")]
    return seconds, out.returncode, lines[-1] if lines else "NOT CAUGHT: " + out.stderr.strip()[-200:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="names of mistakes to time (default: all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsweep-cli-latency-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "empty-hub"),
               "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
        import importlib.util
        if importlib.util.find_spec("wandb") is not None:
            print("note: wandb is installed, so 'logger package missing' runs a valid study (not caught)")
        print(f"{'mistake':38} {'median s':>8} {'min s':>6} {'max s':>6} rc  line", flush=True)
        worst = 0.0
        for name, (text, extra) in mistakes(tmp).items():
            if args.only and name not in args.only:
                continue
            study = tmp / f"{name.replace(' ', '_').replace(':', '').replace('/', '_')}.yaml"
            study.write_text(text)
            one(study, extra, tmp / "out", env)  # warm-up, not counted
            runs = [one(study, extra, tmp / "out", env) for _ in range(args.repeat)]
            times = [t for t, _, _ in runs]
            median = statistics.median(times)
            worst = max(worst, median)
            _, rc, line = runs[-1]
            print(f"{name:38} {median:8.2f} {min(times):6.2f} {max(times):6.2f} {rc:>2}  {line[:110]}", flush=True)
            assert not (tmp / "out").exists(), f"{name}: something was written to --storage"
        print(f"slowest median: {worst:.2f} s (goal: < 3 s on 2 cores)")


if __name__ == "__main__":
    main()
