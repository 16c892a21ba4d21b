"""``tlsweep status DIR`` on a finished study: median wall time of several runs (goal: under 2 s on 2 cores), the
peak memory of one run, and whether it imported torch, Ray or timm (it must not: it reads the Parquet tables).

Without ``--study``, a finished study of synthetic results is written first (``analysis.synthetic``, compacted as
the sink does when a study ends); ``--study DIR`` times a real one, e.g. ``results/quickstart`` after
``tlsweep demo``. Exits 1 when the median is over the goal or a heavy package was imported.

Run: .venv/bin/python bench/status_latency.py [--study DIR] [--runs 7] [--trials 200] [--epochs 20]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

GOAL_S = 2.0
HEAVY = ("torch", "ray", "timm", "torchvision", "transformers")
TLSWEEP = Path(sys.executable).with_name("tlsweep")
PROBE = ("import sys; from orchestrator.cli import main; code = main(['status', sys.argv[1]]); "
         f"print('imported:', ','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none', file=sys.stderr); "
         "sys.exit(code)")


def synthetic_study(folder: Path, trials: int, epochs: int) -> Path:
    from analysis.load import compact
    from analysis.synthetic import synthetic_tables, write_tables
    study = write_tables(synthetic_tables(n_trials=trials, n_epochs=epochs, seed=0), folder / "synthetic")
    compact(study)  # what the sink does when a study ends
    return study


def time_status(study: Path, runs: int) -> list[float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([str(TLSWEEP), "status", str(study)], capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"tlsweep status {study}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", type=Path, help="a finished study folder (default: a synthetic one)")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--trials", type=int, default=200, help="synthetic study: trials")
    p.add_argument("--epochs", type=int, default=20, help="synthetic study: epochs per trial")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsweep-status-bench-") as tmp:
        study = args.study or synthetic_study(Path(tmp), args.trials, args.epochs)
        what = f"{study}" if args.study else f"synthetic study, {args.trials} trials x {args.epochs} epochs"
        probe = subprocess.run([sys.executable, "-c", PROBE, str(study)], capture_output=True, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
        imported = probe.stderr.strip().splitlines()[-1].removeprefix("imported: ") if probe.stderr else "?"
        seconds = time_status(study, args.runs)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child: KiB on Linux
    median = statistics.median(seconds)
    print(f"tlsweep status ({what}): median {median:.2f} s of {args.runs} runs "
          f"(min {min(seconds):.2f}, max {max(seconds):.2f}); peak RSS {peak_mib:.0f} MiB; "
          f"heavy packages imported: {imported}; goal < {GOAL_S:g} s")
    ok = median < GOAL_S and imported == "none"
    if not ok:
        print("status_latency: over the goal" if median >= GOAL_S else f"status_latency: imported {imported}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
