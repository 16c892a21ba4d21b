"""The driver killed with SIGKILL at seeded random moments (just after new epoch rows, plus 0-1.5 s: often
mid-epoch), at least 5 times per study, ``tlsweep resume`` after each: for the grid, random and Optuna searchers
under ASHA the final tables hold exactly the asked-for configurations, none twice, no RUNNING row, every
(trial, epoch) once; for grid and Optuna (seeded) the winner and ASHA's stop decisions equal an uninterrupted
run's. One trial at a time, so ASHA's decisions do not depend on which trial reports first.

About 2-3 minutes per searcher on 2 cores (7 starts of Ray and the uninterrupted twin): marked ``slow``, they run
in ``make test-slow``, which ``.ci/run`` runs after ``make test``.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.load import load
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]
EPOCHS, KILLS = 4, 5
LRS = [0.001, 0.003, 0.01, 0.03]
SPACES = {
    "grid": ({"lr": {"grid": LRS}}, {"algorithm": "grid"}, 2 * len(LRS)),   # x 2 seeds
    "random": ({"lr": {"choice": LRS}, "batch_size": {"choice": [16, 24]}},
               {"algorithm": "random", "num_samples": 6}, 6),
    "optuna": ({"lr": {"loguniform": [0.001, 0.03]}}, {"algorithm": "optuna", "num_samples": 6}, 6),
}
SEEDS = {"grid": 2}   # enough epochs for 5 kills to land before the study ends


def study_file(tmp_path: Path, algorithm: str) -> Path:
    training, search, _ = SPACES[algorithm]
    study = tiny_study(f"kills_{algorithm}", training={"epochs": EPOCHS, "batch_size": 16, **training},
                       search={**search, "max_concurrent": 1,
                               "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
                       resources={"max_failures": 1, "keep": 2}, seeds=SEEDS.get(algorithm, 1))
    path = tmp_path / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def newest_row(folder: Path) -> float:
    """When an epoch row was last written (the newest epochs part)."""
    parts = (folder / "results" / "epochs").glob("*.parquet")
    return max((p.stat().st_mtime for p in parts if p.exists()), default=0.0)


def rows(folder: Path) -> int:
    try:
        return len(load(folder).epochs)
    except Exception:  # noqa: BLE001 - nothing written yet
        return 0


def check_tables(folder: Path) -> None:
    t = load(folder)
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert not t.trials.duplicated(["trial_id"]).any()


def outcome(folder: Path) -> tuple:
    """(winner's lr and seed, its best val_acc, {(lr, seed): epochs run}): ASHA's stop decisions."""
    t = load(folder).trials
    best = t.sort_values("best_val_acc", ascending=False).iloc[0]
    return (round(best["config.training.lr"], 12), best["seed"], best["best_val_acc"],
            {(round(lr, 12), s): n for lr, s, n in zip(t["config.training.lr"], t["seed"], t["epochs_run"])})


def final_checks(folder: Path, algorithm: str) -> None:
    t = load(folder)
    want = SPACES[algorithm][2]
    swept = [c for c in t.trials.columns if c in ("config.training.lr", "config.training.batch_size", "seed")]
    assert len(t.trials) == want, t.trials[["trial_id", "status", *swept]]
    assert set(t.trials["status"]) == {"TERMINATED"}
    assert t.trials["error"].isna().all()
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    if algorithm != "random":  # random may draw one configuration twice, as Ray's variant generator does
        assert not t.trials.duplicated(swept).any()
    for _, trial in t.trials.iterrows():
        epochs = sorted(t.epochs[t.epochs["trial_id"] == trial["trial_id"]]["epoch"])
        assert epochs == list(range(1, trial["epochs_run"] + 1)), (trial["trial_id"], epochs)


def run_killed(tmp_path: Path, algorithm: str, seed: int) -> tuple[Path, list]:
    rng = random.Random(seed)
    path = study_file(tmp_path, algorithm)
    folder = tmp_path / "killed" / f"kills_{algorithm}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    kills, n = [], 0
    while len(kills) < KILLS and n < 12:
        cmd = ["run", str(path), "--storage", str(tmp_path / "killed")] if n == 0 else ["resume", str(folder)]
        n += 1
        before = time.time()
        proc = subprocess.Popen(TLSWEEP + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline, extra = time.time() + 240, rng.uniform(0, 1.5)
        while proc.poll() is None and time.time() < deadline and not (
                newest_row(folder) > before and any(folder.glob("experiment_state*.json"))):
            time.sleep(0.1)
        time.sleep(extra)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            kills.append((n, round(extra, 2), rows(folder)))
        else:
            assert proc.returncode == 0, f"round {n} exited with {proc.returncode}"
            break
        check_tables(folder)
    out = subprocess.run(TLSWEEP + ["resume", str(folder)], env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    return folder, kills


@pytest.mark.slow  # make test-slow (.ci/run): ~3 min per searcher
@pytest.mark.parametrize("algorithm", ["optuna", "grid", "random"])
def test_random_driver_kills_then_resume_keep_the_asked_for_trials_and_the_winner(tmp_path, algorithm):
    folder, kills = run_killed(tmp_path, algorithm, seed={"grid": 1, "random": 2, "optuna": 3}[algorithm])
    print(f"{algorithm}: kills (round, extra s, epoch rows) {kills}")
    assert len(kills) >= KILLS, kills
    final_checks(folder, algorithm)
    if algorithm == "random":  # Ray's variant generator is not seeded: no uninterrupted twin to compare with
        return
    whole = subprocess.run(TLSWEEP + ["run", str(study_file(tmp_path, algorithm)), "--storage",
                                      str(tmp_path / "whole")], capture_output=True, text=True, timeout=400)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert outcome(folder) == outcome(tmp_path / "whole" / f"kills_{algorithm}")
