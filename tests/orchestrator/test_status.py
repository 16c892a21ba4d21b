"""``tlsweep status`` and ``tlsweep report`` read the Parquet tables only: no Ray, no torch, nothing written into
a folder that is not a study; ``status --watch`` refreshes until the study ends. Synthetic results, no Ray."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from analysis.load import compact
from analysis.synthetic import synthetic_tables, write_tables
from orchestrator.watch import watch_rows

HEAVY = ("torch", "ray", "timm", "torchvision", "transformers")
# runs the CLI in a fresh interpreter and names the heavy packages it imported (the tests' own process has torch)
PROBE = ("import sys; from orchestrator.cli import main; code = main(sys.argv[1:]); "
         f"print('imported:', ','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none', file=sys.stderr); "
         "sys.exit(code)")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def cli(*args):
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=120)
    *lines, imported = proc.stderr.strip().splitlines()
    return proc.returncode, proc.stdout, lines, imported.removeprefix("imported: ")


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def finished_study(tmp_path):
    study = write_tables(synthetic_tables(n_trials=12, n_epochs=4, seed=1), tmp_path / "done")
    compact(study)  # what the sink does when a study ends
    return study


def running_study(tmp_path):
    t = synthetic_tables(n_trials=6, n_epochs=4, seed=2)
    t.trials.loc[t.trials.index[:2], "status"] = "RUNNING"
    t.trials.loc[t.trials.index[:2], "ended_at"] = None
    return write_tables(t, tmp_path / "running")


def test_status_reads_tables_without_ray_or_torch(finished_study):
    code, out, err, imported = cli("status", finished_study)
    assert code == 0, err
    assert imported == "none"
    assert "trial_id" in out.splitlines()[0] and "trials: " in out.splitlines()[-1]


def test_report_reads_tables_without_ray_or_torch(finished_study, tmp_path):
    code, out, err, imported = cli("report", finished_study, "--out", tmp_path / "r.html")
    assert code == 0, err
    assert imported == "none" and (tmp_path / "r.html").is_file()


@pytest.mark.parametrize("command", ["status", "report", "status --watch"])
def test_not_a_study_is_one_line_exit_2_and_writes_nothing(tmp_path, command):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.txt").write_text("not a study")
    before = files(tmp_path)
    code, out, err, imported = cli(*command.split(), folder)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("tlsweep: error: ") and "not a study folder" in err[0], err
    assert files(tmp_path) == before and imported == "none"


def test_report_elsewhere_of_a_non_study_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err, _ = cli("report", tmp_path / "empty", "--out", tmp_path / "out" / "r.html")
    assert code == 2 and len(err) == 1 and "not a study folder" in err[0]
    assert not (tmp_path / "out").exists()


def test_watch_of_a_finished_study_prints_once_and_exits_0(finished_study):
    code, out, err, imported = cli("status", "--watch", "--interval", "0.2", finished_study)
    assert code == 0, err
    assert imported == "none"
    assert out.count("(study ended)") == 1
    header = next(line for line in out.splitlines() if line.split()[:2] == ["trial", "status"])
    assert header.split() == ["trial", "status", "epoch", "val_acc", "best", "elapsed", "ETA"]


def test_interval_must_be_positive(finished_study):
    code, _, err, _ = cli("status", "--watch", "--interval", "0", finished_study)
    assert code == 2 and "--interval" in err[-1]


def wait_for(proc, path, text, deadline=60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end and proc.poll() is None:
        if path.read_text().count(text) >= 1:
            return True
        time.sleep(0.1)
    return text in path.read_text()


def start_watch(tmp_path):
    """A running study and ``tlsweep status --watch`` on it, once its table shows the two running trials."""
    study = running_study(tmp_path)
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", PROBE, "status", "--watch", "--interval", "0.2", str(study)],
                                stdout=out, stderr=subprocess.STDOUT, env=ENV)
    if not wait_for(proc, log, "2 running"):
        proc.kill()
        raise AssertionError(log.read_text())
    return study, log, proc


def test_watch_refreshes_until_the_study_ends(tmp_path):
    study, log, proc = start_watch(tmp_path)
    try:
        assert proc.poll() is None  # still running: the study has not ended
        compact(study)              # the study ends (the sink compacts its tables)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert text.count("(study ended)") == 1 and text.count(" at ") >= 2 and "imported: none" in text


def test_watch_ends_on_ctrl_c_with_exit_0(tmp_path):
    _, log, proc = start_watch(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in log.read_text()


def test_watch_rows_sort_best_first_by_mode():
    t = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["RUNNING", "TERMINATED", "RUNNING"],
                      "epochs_run": [1, 4, 0], "max_epochs": [4, 4, 4], "last_val_loss": [0.9, 0.3, None],
                      "best_val_loss": [0.9, 0.3, None], "started_at": [0.0, 0.0, 5.0], "ended_at": [None, 40.0, None]})
    rows = watch_rows(t, "val_loss", "min", now=30.0)
    assert rows["trial"].tolist() == ["b", "a", "c"]   # lowest loss first; no value yet: last
    assert rows["ETA"].tolist() == ["—", "1:30", "—"] and rows["elapsed"].tolist() == ["0:40", "0:30", "0:25"]
