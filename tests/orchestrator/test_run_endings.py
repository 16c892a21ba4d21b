"""How a study ends: a time budget shorter than its work, every trial errored, and what the summary and
``tlsweep status`` show then (the test split's metric next to the validation one, the study folder's size).

The sink and the summary are first fed fake results (no Ray); then one tiny study under the shared Ray with a
time budget (in-process ``tlsweep run``), and one all-errored study in a subprocess (its own Ray, so the fault plan
in TLSWEEP_FAULTS reaches the trial processes).
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

from analysis.load import load
from orchestrator.cli import main
from orchestrator.sink import ParquetSink
from orchestrator.summary import failure, status_table, summary
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]


class FakeTrial:
    def __init__(self, tid: str, lr: float):
        self.trial_id, self.config, self.status = tid, {"training.lr": lr}, "RUNNING"
        self.placement_group_factory = None

    def get_error(self):
        return None


def make_sink(root, **info) -> ParquetSink:
    def view(config):
        return ({"model": {"arch": "scratch_cnn", "strategy": "full"}, "training": {"lr": config["training.lr"],
                                                                                     "epochs": 4}, "seed": 0},
                dict(config))
    sink = ParquetSink(str(root / "results"), "endings", view, lambda nested: nested["training"]["epochs"])
    sink.setup(**info)
    return sink


def report(sink, trial, epoch, val_acc, test_acc=None):
    result = {"epoch": epoch, "val_acc": val_acc, "val_loss": 1 - val_acc, "time_total_s": float(epoch),
              "best_epoch": epoch}
    if test_acc is not None:
        result["test_acc"] = test_acc
    sink.on_trial_result(0, [], trial, result)


def test_trials_running_when_the_study_ends_are_finalised_and_summarised(tmp_path):
    sink = make_sink(tmp_path, time_budget_s=10)
    done, cut, unstarted = FakeTrial("a", 0.01), FakeTrial("b", 0.003), FakeTrial("c", 0.001)
    for t in (done, cut, unstarted):
        sink.on_trial_start(0, [], t)
    for epoch in (1, 2, 3, 4):
        report(sink, done, epoch, 0.2 * epoch, test_acc=0.19 * epoch)
    report(sink, cut, 1, 0.5, test_acc=0.45)
    done.status = "TERMINATED"
    sink.on_trial_complete(0, [], done)
    assert set(load(tmp_path).trials["status"]) == {"TERMINATED", "RUNNING"}
    sink.on_step_end(1, [done, cut, unstarted])
    assert set(load(tmp_path).trials["status"]) == {"TERMINATED", "RUNNING"}
    for t in (cut, unstarted):   # Ray stops them within a step when the time budget runs out: no on_trial_complete
        t.status = "TERMINATED"
    sink.on_step_end(2, [done, cut, unstarted])
    sink.on_experiment_end([done, cut, unstarted])

    trials = load(tmp_path).trials.set_index("trial_id").sort_index()
    assert set(trials["status"]) == {"TERMINATED"}
    assert trials["ended_with_study"].tolist() == [False, True, True]
    assert trials["stopped_early"].tolist() == [False, True, True]
    assert trials["epochs_run"].tolist() == [4, 1, 0]
    assert trials.loc["b", "best_test_acc"] == 0.45 and trials["ended_at"].notna().all()

    text = summary(tmp_path)
    assert "best_val_acc" in text and "test_acc" in text and "0.7600" in text     # a's test accuracy
    assert "trials: 3 (3 finished, 0 stopped early by ASHA, 2 stopped by search.time_budget_s, 0 errored)" in text
    assert "study folder " in text and "KiB" in text
    status = status_table(tmp_path)
    assert "test_acc" in status.splitlines()[0] and "0.4500" in status
    assert failure(tmp_path) is None


def test_an_errored_trial_the_tables_never_heard_of_gets_its_row(tmp_path):
    """Ray fails a trial whose reused process could not be reset without on_trial_start or on_trial_error."""
    sink = make_sink(tmp_path)
    done, lost, earlier = FakeTrial("a", 0.01), FakeTrial("b", 0.003), FakeTrial("c", 0.001)
    for t in (done, earlier):
        sink.on_trial_start(0, [], t)
        report(sink, t, 1, 0.5)
    done.status = "TERMINATED"
    sink.on_trial_complete(0, [], done)
    earlier.status = "ERROR"
    sink.on_trial_error(0, [], earlier)    # errored and recorded as such: not written twice
    lost.status = "ERROR"
    lost.get_error = lambda: RuntimeError("Trainable runner reuse requires reset_config() to be implemented")
    sink.on_experiment_end([done, lost, earlier])
    trials = load(tmp_path).trials.set_index("trial_id").sort_index()
    assert trials["status"].tolist() == ["TERMINATED", "ERROR", "ERROR"]
    assert trials.loc["b", "epochs_run"] == 0 and "reset_config" in trials.loc["b", "error"]
    assert trials.loc["c", "epochs_run"] == 1 and trials.loc["c", "failures"] == 1
    text = summary(tmp_path)
    assert "trials: 3 (1 finished, " in text and ", 2 errored)" in text


def test_no_test_column_without_a_test_split_and_no_key_error_without_results(tmp_path):
    sink = make_sink(tmp_path / "s1", time_budget_s=10)
    trial = FakeTrial("a", 0.01)
    sink.on_trial_start(0, [], trial)
    report(sink, trial, 1, 0.5)
    trial.status = "TERMINATED"
    sink.on_step_end(1, [trial])
    assert "test_acc" not in summary(tmp_path / "s1") and "test_acc" not in status_table(tmp_path / "s1")

    # a time budget shorter than an epoch: trials stopped before they reported anything
    sink = make_sink(tmp_path / "s2", time_budget_s=1)
    trials = [FakeTrial("a", 0.01), FakeTrial("b", 0.003)]
    for t in trials:
        sink.on_trial_start(0, [], t)
        t.status = "TERMINATED"
    sink.on_step_end(1, trials)
    text = summary(tmp_path / "s2")
    assert "no finished trial reported val_acc" in text and "trials: 2 (2 finished" in text
    assert "val_acc" not in status_table(tmp_path / "s2").splitlines()[0]
    why = failure(tmp_path / "s2", "val_acc", time_budget_s=2)
    assert why.splitlines()[1:] == ["  2 trials terminated before reporting an epoch (search.time_budget_s: 2 s)"]

    # ... or before any trial started: no results folder at all
    (tmp_path / "s3").mkdir()
    assert failure(tmp_path / "s3", "val_acc", time_budget_s=1).splitlines()[1:] == [
        "  no trial started before the study ended (search.time_budget_s: 1 s)"]
    assert "no trial results" in summary(tmp_path / "s3") and "no trial results" in status_table(tmp_path / "s3")


def test_trials_running_when_the_study_is_interrupted_become_interrupted(tmp_path):
    sink = make_sink(tmp_path)
    done, running = FakeTrial("a", 0.01), FakeTrial("b", 0.003)
    for t in (done, running):
        sink.on_trial_start(0, [], t)
        report(sink, t, 1, 0.5)
    sink.on_trial_complete(0, [], done)
    done.status = running.status = "TERMINATED"   # Ray stops the running trial after its last snapshot
    sink.on_step_end(1, [done, running])          # no time budget: nothing ends in a step
    assert set(load(tmp_path).trials["status"]) == {"TERMINATED", "RUNNING"}
    sink.on_experiment_end([done, running])
    trials = load(tmp_path).trials.set_index("trial_id").sort_index()
    assert trials["status"].tolist() == ["TERMINATED", "INTERRUPTED"]
    assert trials["ended_with_study"].tolist() == [False, True] and not trials.loc["b", "stopped_early"]
    text = summary(tmp_path)
    assert "trials: 2 (1 finished" in text and "1 trial interrupted: continue with 'tlsweep resume" in text


def write_study(tmp_path, study: dict):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow  # ~40-60 s: make test-slow (CI runs it)
def test_a_time_budget_shorter_than_the_work_ends_cleanly(ray_session, tmp_path, capsys):
    # 2 trials of 10,000 epochs each (a fraction of a second per epoch) and a budget of 60 s (trials start 10-40 s
    # into it, longer on a loaded machine): the budget ends the
    # study, long after the first epochs were reported
    study = tiny_study("budget", data={"test_fraction": 0.2},
                       training={"epochs": 10000, "max_steps_per_epoch": 2, "lr": {"grid": [0.003, 0.01]}},
                       search={"time_budget_s": 60})
    code = main(["run", str(write_study(tmp_path, study)), "--storage", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    folder = tmp_path / "out" / "budget"
    trials = load(folder).trials
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}, trials[["trial_id", "status"]]
    assert trials["stopped_early"].all() and trials["ended_with_study"].all()
    assert (trials["epochs_run"] < 10000).all() and trials["best_test_acc"].notna().any()
    # a real trial's epochs table keeps its test_* columns: the test split at every new best epoch
    epochs = load(folder).epochs
    tested = epochs[epochs["test_acc"].notna()]
    assert {"test_acc", "test_loss", "test_macro_f1"} <= set(epochs.columns) and len(tested) >= 2
    best = trials.set_index("trial_id")
    for tid, rows in tested.groupby("trial_id"):
        assert rows["epoch"].max() == best.loc[tid, "best_epoch"]       # the last test row is the best epoch's
    assert "stopped by search.time_budget_s" in out and "test_acc" in out and "study folder " in out

    assert main(["status", str(folder)]) == 0
    status = capsys.readouterr().out
    assert "best_val_acc" in status and "test_acc" in status and "RUNNING" not in status


def test_a_study_in_which_every_trial_errored_exits_1_with_a_line_per_error(tmp_path):
    # two kinds of error (a RuntimeError in two trials, an out-of-memory error in one), all before epoch 1
    plan = [{"at": "trial.report", "epoch": 1, "match": {"training.lr": lr}, "action": "raise", "error": kind}
            for lr, kind in ((0.001, "error"), (0.002, "oom"), (0.003, "error"))]
    study = tiny_study("all_errored", training={"epochs": 2, "lr": {"grid": [0.001, 0.002, 0.003]}},
                       search={"grid_order": "listed"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TLSWEEP_FAULTS": json.dumps(plan)}
    out = subprocess.run(TLSWEEP + ["run", str(write_study(tmp_path, study)), "--storage", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith(("tlsweep: error:", "  "))]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("tlsweep: error: no trial of "))
    assert sorted(lines[start + 1:]) == [
        "  1 trial errored: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (injected by "
        "TLSWEEP_FAULTS)",
        "  2 trials errored: RuntimeError: injected failure (TLSWEEP_FAULTS)"], lines
    assert "Traceback" not in out.stderr.split("tlsweep: error:")[-1]
    trials = load(tmp_path / "out" / "all_errored").trials
    assert set(trials["status"]) == {"ERROR"} and len(trials) == 3
