"""Kill the driver with SIGKILL mid-sweep, then ``tlsweep resume``: complete, nothing duplicated or rerun."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from analysis.load import load
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]


def finished(folder: Path) -> int:
    try:
        t = load(folder).trials
    except Exception:  # a part being replaced right now
        return 0
    return 0 if t.empty else int((t["status"] == "TERMINATED").sum())


def test_sigkill_driver_then_resume(tmp_path):
    study = tiny_study("killed", training={"epochs": 3, "lr": {"grid": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]}},
                       resources={"max_failures": 1, "keep": 2})
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    proc = subprocess.Popen(TLSWEEP + ["run", str(path), "--storage", str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    folder = tmp_path / "out" / "killed"
    deadline = time.time() + 240
    while finished(folder) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    assert finished(folder) >= 2, "no trial finished in time"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = load(folder)
    done_before = before.trials[before.trials["status"] == "TERMINATED"]["trial_id"].tolist()
    rows_before = before.epochs[before.epochs["trial_id"].isin(done_before)].sort_values(["trial_id", "epoch"])
    assert len(done_before) < 6, "every trial had finished: the kill came too late to test anything"

    out = subprocess.run(TLSWEEP + ["resume", str(folder)], env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    after = load(folder)
    assert len(after.trials) == 6 and set(after.trials["status"]) == {"TERMINATED"}
    assert not after.epochs.duplicated(["trial_id", "epoch"]).any()
    assert after.epochs.groupby("trial_id")["epoch"].apply(lambda s: sorted(s) == [1, 2, 3]).all()
    # finished trials were not rerun from scratch: their epochs before the last are exactly the rows written
    # before the kill. (A trial that finished after Ray's last experiment snapshot reruns its last epoch from
    # its previous checkpoint; that row is replaced, never duplicated.)
    def early(rows):
        return rows[rows["epoch"] < 3].sort_values(["trial_id", "epoch"])
    rows_after = after.epochs[after.epochs["trial_id"].isin(done_before)]
    assert early(rows_after)["time_total_s"].tolist() == early(rows_before)["time_total_s"].tolist()
    assert early(rows_after)["pid"].tolist() == early(rows_before)["pid"].tolist()
