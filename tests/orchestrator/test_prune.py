"""Finished trials keep ``resources.keep`` checkpoints without optimizer state (orchestrator.prune); an errored
trial, to be resumed, keeps what Ray kept, optimizer included; explain still loads the pruned ones."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch
import yaml

from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]
OK, ERROR = 0.003, 0.005


def fake_trial_folder(root: Path, epochs: int) -> Path:
    for e in range(epochs):
        folder = root / f"checkpoint_{e:06d}"
        folder.mkdir(parents=True)
        torch.save({"epoch": e + 1, "model": {"w": torch.full((2,), float(e))}, "optimizer": {"state": {}},
                    "scaler": {}, "scheduler": {"last_epoch": e}, "best_model": {"w": torch.zeros(2)}},
                   folder / "state.pt")
    return root


@pytest.mark.parametrize("keep", [1, 2])
def test_prune_trial_keeps_the_newest_without_optimizer(tmp_path, keep):
    from orchestrator.prune import checkpoint_folders, prune_trial
    folder = fake_trial_folder(tmp_path / "trial", 4)
    fs = pafs.LocalFileSystem()
    assert prune_trial(fs, str(folder), keep) == (4 - keep, keep)
    kept = checkpoint_folders(fs, str(folder))
    assert [Path(p).name for p in kept] == [f"checkpoint_{e:06d}" for e in range(4 - keep, 4)]
    for p in kept:
        state = torch.load(Path(p) / "state.pt", weights_only=True)
        assert "optimizer" not in state and "scaler" not in state
        assert set(state) >= {"model", "best_model", "scheduler", "epoch"}
    assert torch.equal(torch.load(Path(kept[-1]) / "state.pt", weights_only=True)["model"]["w"],
                       torch.full((2,), 3.0))
    assert not list(folder.rglob("*.tmp"))
    assert prune_trial(fs, str(folder), keep) == (0, 0)  # a resumed study's end prunes again: nothing to do


def test_finished_trials_are_pruned_errored_ones_are_not(tmp_path):
    plan = [{"at": "trial.report", "epoch": 3, "match": {"training.lr": ERROR}, "action": "raise",
             "error": "error"}]
    study = tiny_study("prune", training={"epochs": 3, "lr": {"grid": [OK, ERROR]}},
                       resources={"max_failures": 0, "keep": 1})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TLSWEEP_FAULTS": json.dumps(plan)}
    proc = subprocess.run(TLSWEEP + ["run", str(path), "--storage", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    from analysis.load import load
    from explain.loading import load_trial
    folder = tmp_path / "out" / "prune"
    trials = load(folder).trials.set_index("config.training.lr")
    assert trials.loc[OK, "status"] == "TERMINATED" and trials.loc[ERROR, "status"] == "ERROR"
    for lr, n, has_optimizer in ((OK, 1, False), (ERROR, 2, True)):
        tid = trials.loc[lr, "trial_id"]
        (tdir,) = [d for d in folder.iterdir() if d.is_dir() and f"_{tid}_" in d.name]
        ckpts = sorted(tdir.glob("checkpoint_*/state.pt"))
        assert len(ckpts) == n, (lr, ckpts)
        for c in ckpts:
            state = torch.load(c, map_location="cpu", weights_only=True)
            assert ("optimizer" in state) == has_optimizer, (lr, c)
    tid = trials.loc[OK, "trial_id"]
    best, last = load_trial(folder, tid, epoch="best"), load_trial(folder, tid, epoch="last")
    assert last.epoch == 3 and best.epoch == int(trials.loc[OK, "best_epoch"])


class FakeTrial:
    def __init__(self, tid, path, status):
        from types import SimpleNamespace
        self.trial_id, self.path, self.status = tid, str(path), status
        self.storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem())


def test_only_completed_trials_are_pruned(tmp_path):
    """Ray calls the trials it stops at an interrupt TERMINATED at the experiment's end; resume continues them."""
    from orchestrator.prune import PruneFinishedCheckpoints
    before, done, interrupted, errored = (
        FakeTrial(n, fake_trial_folder(tmp_path / n, 3), s)
        for n, s in (("before", "TERMINATED"), ("done", "RUNNING"), ("interrupted", "RUNNING"), ("errored", "RUNNING")))
    cb = PruneFinishedCheckpoints(keep=1)
    cb.setup()
    trials = [before, done, interrupted, errored]
    cb.on_step_begin(0, trials)  # a resumed run: "before" had completed in an earlier one
    done.status = "TERMINATED"
    cb.on_trial_complete(1, trials, done)
    cb.on_step_begin(2, trials)
    interrupted.status, errored.status = "TERMINATED", "ERROR"
    cb.on_experiment_end(trials)
    counts = {t.trial_id: len(list((tmp_path / t.trial_id).glob("checkpoint_*"))) for t in trials}
    assert counts == {"before": 1, "done": 1, "interrupted": 3, "errored": 3}
    state = torch.load(next((tmp_path / "interrupted").glob("checkpoint_000002/state.pt")), weights_only=True)
    assert "optimizer" in state


def test_pbt_waits_for_every_trial(tmp_path):
    from orchestrator.prune import PruneFinishedCheckpoints
    a, b = FakeTrial("a", fake_trial_folder(tmp_path / "a", 2), "TERMINATED"), \
        FakeTrial("b", fake_trial_folder(tmp_path / "b", 2), "RUNNING")
    cb = PruneFinishedCheckpoints(keep=1, wait_for_all=True)
    cb.setup()
    cb.on_trial_complete(0, [a, b], a)
    cb.on_experiment_end([a, b])
    assert len(list((tmp_path / "a").glob("checkpoint_*"))) == 2
