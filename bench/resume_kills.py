"""The quickstart with its driver SIGKILLed just after new epoch rows (5 times, plus a seeded 0-1.5 s), each kill
followed by ``tlsweep resume``, against the same study run uninterrupted: winner and ASHA stop decisions.

Prints the winner (arch / strategy / lr, best val_acc) of both runs, the trials whose stop decision differs, and
whether every trial finished before a kill kept the epochs it had. Needs the quickstart's pretrained weights
(``make demo`` caches them; otherwise the first run pretrains them). About 5 minutes on 2 cores.

Run: .venv/bin/python bench/resume_kills.py [--kills 5] [--seed 0] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from analysis.load import load  # noqa: E402
from tests.faults.test_random_kills import newest_row, rows  # noqa: E402  (when an epoch row was written; how many)

ROOT = Path(__file__).resolve().parents[1]
TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]
STUDY = ROOT / "search_spaces" / "quickstart.yaml"
KEYS = ["config.model.arch", "config.model.strategy", "config.training.lr"]


def decisions(folder: Path) -> dict:
    t = load(folder).trials
    done = t[t["status"] == "TERMINATED"]
    return {tuple(str(r[k]) for k in KEYS): int(r["epochs_run"]) for _, r in done.iterrows()}


def winner(folder: Path) -> tuple:
    t = load(folder).trials
    best = t.sort_values("best_val_acc", ascending=False).iloc[0]
    return tuple(str(best[k]) for k in KEYS) + (round(float(best["best_val_acc"]), 4),)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="folder for the results (default: a temporary one)")
    args = ap.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="tlsweep-resume-kills-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    rng = random.Random(args.seed)

    start = time.time()
    subprocess.run(TLSWEEP + ["run", str(STUDY), "--storage", str(base / "whole")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"uninterrupted: {time.time() - start:.0f} s, winner {winner(base / 'whole' / 'quickstart')}", flush=True)

    folder, kills, before_kill, n = base / "killed" / "quickstart", [], {}, 0
    while len(kills) < args.kills and n < 3 * args.kills:
        cmd = ["run", str(STUDY), "--storage", str(base / "killed")] if n == 0 else ["resume", str(folder)]
        n += 1
        seen = time.time()
        proc = subprocess.Popen(TLSWEEP + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while proc.poll() is None and not (newest_row(folder) > seen
                                           and any(folder.glob("experiment_state*.json"))):
            time.sleep(0.1)
        extra = rng.uniform(0, 1.5)
        time.sleep(extra)
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append((n, round(extra, 2), rows(folder)))
        before_kill.update(decisions(folder))
    subprocess.run(TLSWEEP + ["resume", str(folder)], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"kills (round, extra s, epoch rows): {kills}")
    t = load(folder)
    print(f"killed + resumed: {len(t.trials)} trials, statuses {sorted(set(t.trials['status']))}, "
          f"duplicate (trial, epoch) rows {int(t.epochs.duplicated(['trial_id', 'epoch']).sum())}, "
          f"duplicate configurations {int(t.trials.duplicated(KEYS).sum())}")
    print(f"winner: {winner(folder)}")
    final, whole = decisions(folder), decisions(base / "whole" / "quickstart")
    kept = {k: (v, final.get(k)) for k, v in before_kill.items() if final.get(k) != v}
    print(f"trials finished before a kill: {len(before_kill)}, whose epochs changed since: {kept or 'none'}")
    differ = {k: (whole.get(k), final.get(k)) for k in set(whole) | set(final) if whole.get(k) != final.get(k)}
    print(f"stop decisions (epochs run) differing from the uninterrupted run: {differ or 'none'}")


if __name__ == "__main__":
    main()
