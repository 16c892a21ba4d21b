"""Faults inside trials: a trial's process killed mid-epoch, out-of-memory, an exception, a NaN loss.

One study in a subprocess (its own Ray, so the fault plan in TLSWEEP_FAULTS reaches the trial processes):
- lr 0.003: its process is paused just before it reports epoch 2 and killed there (SIGKILL from this test); Tune
  retries it from its epoch-1 checkpoint (max_failures 1), epochs continue without a gap or a repeat.
- lr 0.004: torch.OutOfMemoryError before epoch 2 (each attempt): ERROR, the reason in ``trials.error``.
- lr 0.005: RuntimeError before epoch 3: ERROR with the reason.
- lr 1e30: a real NaN loss: ERROR "FloatingPointError: loss became NaN at epoch 1, step N".
The study goes on around the failures: the killed trial and the errored ones' neighbours finish.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from analysis.load import load
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]
KILLED, OOM, ERROR, NAN = 0.003, 0.004, 0.005, 1.0e30


@pytest.mark.slow  # 1-2 min: make test-slow (.ci/run)
def test_trial_faults(tmp_path):
    marker = tmp_path / "markers" / "worker-paused"
    plan = [{"at": "trial.report", "epoch": 2, "match": {"training.lr": KILLED}, "action": "pause",
             "seconds": 120, "marker": str(marker)},
            {"at": "trial.report", "epoch": 2, "match": {"training.lr": OOM}, "action": "raise", "error": "oom"},
            {"at": "trial.report", "epoch": 3, "match": {"training.lr": ERROR}, "action": "raise", "error": "error"}]
    study = tiny_study("trial_faults", training={"epochs": 3, "lr": {"grid": [KILLED, OOM, ERROR, NAN]}},
                       resources={"max_failures": 1, "keep": 2})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TLSWEEP_FAULTS": json.dumps(plan)}
    proc = subprocess.Popen(TLSWEEP + ["run", str(path), "--storage", str(tmp_path / "out")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "the trial never reached its fault point"
    time.sleep(0.2)  # the pid is written before the sleep starts
    pid = int(marker.read_text())
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]

    t = load(tmp_path / "out" / "trial_faults")
    trials = t.trials.set_index("config.training.lr")
    epochs = t.epochs.merge(t.trials[["trial_id", "config.training.lr"]], on="trial_id")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()

    killed = epochs[epochs["config.training.lr"] == KILLED].sort_values("epoch")
    assert trials.loc[KILLED, "status"] == "TERMINATED" and trials.loc[KILLED, "failures"] == 1
    assert killed["epoch"].tolist() == [1, 2, 3], "no gap, no repeat"
    assert killed["pid"].iloc[0] == pid and pid not in killed["pid"].iloc[1:].tolist(), \
        "epochs 2 and 3 ran in the retried process, from the epoch-1 checkpoint"

    assert trials.loc[OOM, "status"] == "ERROR"
    assert "OutOfMemoryError: CUDA out of memory" in trials.loc[OOM, "error"]
    assert epochs[epochs["config.training.lr"] == OOM]["epoch"].tolist() == [1]
    assert trials.loc[ERROR, "status"] == "ERROR" and "RuntimeError: injected failure" in trials.loc[ERROR, "error"]
    assert sorted(epochs[epochs["config.training.lr"] == ERROR]["epoch"]) == [1, 2]
    assert trials.loc[NAN, "status"] == "ERROR" and trials.loc[NAN, "failures"] == 2  # one try, one retry
    assert trials.loc[NAN, "error"].startswith("FloatingPointError: loss became")
    assert "at epoch 1, step" in trials.loc[NAN, "error"]
