"""The Optuna mirror of a study (orchestrator.mirror) and ``tlsweep dashboard`` (orchestrator.optuna_dash).

The callback is driven with fake trials through the real Parquet sink (no Ray); the mirror rebuilt from the
tables equals the live one; tiny studies (random, grid with ASHA, Optuna) run under the shared Ray while
``tlsweep dashboard`` serves them, and the dashboard's own HTTP API shows every trial with its intermediate values.
"""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from analysis.load import load
from orchestrator.cli import main
from orchestrator.mirror import OptunaMirror, distributions, journal_path, open_storage, rebuild
from orchestrator.sink import ParquetSink
from search_spaces import Domain
from tests.conftest import FakeTrial, tiny_study

DOMAINS = [Domain("training.lr", "loguniform", (1e-4, 1e-1)),
           Domain("model.arch", "choice", ("scratch_cnn", "resnet18")),
           Domain("model.unfreeze_k", "randint", (1, 4), (("model.arch", ("resnet18",)),))]
STATES = {"RUNNING": "RUNNING", "RECOVERING": "RUNNING", "ERROR": "FAIL", "INTERRUPTED": "FAIL"}


class Trial(FakeTrial):
    def __init__(self, tid, lr, arch="scratch_cnn", k=None):
        super().__init__(tid, lr)
        self.config.update({"model.arch": arch, "model.unfreeze_k": k})
        self.status = "RUNNING"


def view(config):
    nested = {"training": {"lr": config["training.lr"], "epochs": 3},
              "model": {"arch": config["model.arch"], "strategy": "finetune"}, "seed": 0}
    if config["model.unfreeze_k"] is not None:
        nested["model"]["unfreeze_k"] = config["model.unfreeze_k"]
    return nested, dict(config)


def callbacks(root):
    sink = ParquetSink(str(root / "results"), "fake", view, lambda nested: nested["training"]["epochs"])
    mirror = OptunaMirror(root, "fake", DOMAINS, "val_acc", "max")
    for cb in (sink, mirror):
        cb.setup()
    return sink, mirror


def call(cbs, event, *args, **kwargs):
    for cb in cbs:  # the sink first, as orchestrator.tuner registers them
        getattr(cb, event)(0, [], *args, **kwargs)


def mirrored(folder) -> dict:
    storage = open_storage(journal_path(folder))
    (study,) = storage.get_all_studies()
    return {t.user_attrs["trial_id"]: t for t in storage.get_all_trials(study._study_id)}


def expected_state(row) -> str:
    if row["status"] == "TERMINATED":
        return "PRUNED" if row["stopped_early"] else "COMPLETE"
    return STATES[row["status"]]


def assert_mirror_equals_tables(folder, trials: dict, metric="val_acc", domains=DOMAINS) -> None:
    """Every trial of the tables, and only those, with its params, values per epoch, state and attributes."""
    t = load(folder)
    assert sorted(trials) == sorted(t.trials["trial_id"])
    for row in t.trials.to_dict("records"):
        got = trials[row["trial_id"]]
        epochs = t.epochs[t.epochs["trial_id"] == row["trial_id"]]
        assert got.intermediate_values == dict(zip(epochs["epoch"].astype(int), epochs[metric].astype(float)))
        assert got.state.name == expected_state(row), row["trial_id"]
        if got.state == TrialState.COMPLETE:
            assert got.value == pytest.approx(row[f"best_{metric}"])
        for d in domains:
            value = row.get(f"config.{d.path}")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert d.path not in got.params
            else:
                assert got.params[d.path] == (pytest.approx(value) if isinstance(value, float) else value)
        assert got.user_attrs["architecture"] == row["config.model.arch"] and got.user_attrs["seed"] == row["seed"]
        for key in (k for k in row if k.startswith("best_test_")):
            if not math.isnan(row[key]):
                assert got.user_attrs[key.removeprefix("best_")] == pytest.approx(row[key])


def test_distributions_follow_the_study_domains():
    dists = distributions(DOMAINS + [Domain("training.epochs", "quniform", (2, 9, 3)),
                                     Domain("training.batch_size", "grid", (32, 64))])
    assert dists["training.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["model.arch"] == CategoricalDistribution(["scratch_cnn", "resnet18"])
    assert dists["model.unfreeze_k"] == IntDistribution(1, 3)        # Ray's randint high is exclusive
    assert dists["training.epochs"] == FloatDistribution(0.0, 9.0)   # holds Ray's rounding to multiples of 3
    assert dists["training.batch_size"] == CategoricalDistribution([32, 64])


def test_the_callback_mirrors_states_values_params_and_attributes(tmp_path):
    cbs = callbacks(tmp_path)
    done, stopped, failed, cut = Trial("done", 0.01), Trial("stopped", 0.001, "resnet18", 2), Trial("failed", 0.05), \
        Trial("cut", 0.02)
    for t in (done, stopped, failed, cut):
        call(cbs, "on_trial_start", t)
    assert {t.state for t in mirrored(tmp_path).values()} == {TrialState.RUNNING}
    for epoch in (1, 2, 3):
        call(cbs, "on_trial_result", done, {"epoch": epoch, "val_acc": [0.5, 0.8, 0.7][epoch - 1],
                                            "time_total_s": float(epoch), "test_acc": 0.6 + epoch / 100})
    call(cbs, "on_trial_result", stopped, {"epoch": 1, "val_acc": 0.2, "time_total_s": 1.0})
    call(cbs, "on_trial_result", failed, {"epoch": 1, "val_acc": 0.3, "time_total_s": 1.0})
    call(cbs, "on_trial_result", cut, {"epoch": 1, "val_acc": 0.4, "time_total_s": 1.0})
    live = mirrored(tmp_path)
    assert live["done"].state == TrialState.RUNNING and live["done"].intermediate_values == {1: 0.5, 2: 0.8, 3: 0.7}
    call(cbs, "on_trial_complete", done)
    call(cbs, "on_trial_complete", stopped)          # one epoch of three: a scheduler stopped it
    call(cbs, "on_trial_error", failed)
    cut.status = "TERMINATED"
    for cb in cbs:                                   # Ctrl-C: Ray ends "cut", the sink calls it INTERRUPTED
        cb.on_experiment_end([done, stopped, failed, cut])
    got = mirrored(tmp_path)
    assert got["done"].state == TrialState.COMPLETE and got["done"].value == 0.8      # the best epoch's value
    assert got["done"].user_attrs["test_acc"] == pytest.approx(0.62)                 # the best weights' test
    assert got["stopped"].state == TrialState.PRUNED and got["stopped"].value == 0.2  # as Optuna's tell does
    assert got["stopped"].params == {"training.lr": 0.001, "model.arch": "resnet18", "model.unfreeze_k": 2}
    assert "model.unfreeze_k" not in got["done"].params                              # inactive: no param
    assert got["failed"].state == TrialState.FAIL and got["failed"].user_attrs["status"] == "ERROR"
    assert got["cut"].state == TrialState.FAIL and got["cut"].user_attrs["status"] == "INTERRUPTED"
    assert got["done"].user_attrs["strategy"] == "finetune" and got["done"].user_attrs["trial_id"] == "done"
    assert_mirror_equals_tables(tmp_path, got)


def test_rebuild_from_the_tables_equals_the_live_mirror(tmp_path):
    cbs = callbacks(tmp_path)
    a, b = Trial("a", 0.01), Trial("b", 0.002, "resnet18", 3)
    for t in (a, b):
        call(cbs, "on_trial_start", t)
        for epoch in (1, 2, 3):
            call(cbs, "on_trial_result", t, {"epoch": epoch, "val_acc": 0.1 * epoch, "time_total_s": 1.0})
        call(cbs, "on_trial_complete", t)
    live = mirrored(tmp_path)
    journal_path(tmp_path).unlink()
    rebuild(tmp_path, "fake", DOMAINS, "val_acc", "max")
    again = mirrored(tmp_path)
    for tid in ("a", "b"):
        for field in ("state", "value", "params", "distributions", "intermediate_values", "user_attrs"):
            assert getattr(again[tid], field) == getattr(live[tid], field), (tid, field)
    assert_mirror_equals_tables(tmp_path, again)


def test_a_resumed_driver_rebuilds_and_continues_interrupted_trials(tmp_path):
    cbs = callbacks(tmp_path)
    a = Trial("a", 0.01)
    call(cbs, "on_trial_start", a)
    call(cbs, "on_trial_result", a, {"epoch": 1, "val_acc": 0.5, "time_total_s": 1.0})
    a.status = "TERMINATED"
    for cb in cbs:
        cb.on_experiment_end([a])                     # Ctrl-C: Ray ends it, the sink writes INTERRUPTED
    assert mirrored(tmp_path)["a"].state == TrialState.FAIL
    cbs = callbacks(tmp_path)                         # tlsweep resume: a new driver
    assert mirrored(tmp_path)["a"].state == TrialState.RUNNING
    for epoch in (2, 3):
        call(cbs, "on_trial_result", a, {"epoch": epoch, "val_acc": 0.5 + epoch / 10, "time_total_s": 1.0})
    call(cbs, "on_trial_complete", a)
    got = mirrored(tmp_path)
    assert got["a"].state == TrialState.COMPLETE and got["a"].intermediate_values == {1: 0.5, 2: 0.7, 3: 0.8}
    assert_mirror_equals_tables(tmp_path, got)


def test_a_mirror_that_cannot_be_written_warns_once_and_the_study_goes_on(tmp_path):
    cbs = callbacks(tmp_path)
    a = Trial("a", 0.01)
    call(cbs, "on_trial_start", a)

    def full(*args):
        raise OSError(28, "No space left on device")
    cbs[1]._storage.set_trial_intermediate_value = full
    with pytest.warns(RuntimeWarning, match="the Optuna mirror stopped updating .*No space left"):
        call(cbs, "on_trial_result", a, {"epoch": 1, "val_acc": 0.5, "time_total_s": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)                                   # no second warning
        call(cbs, "on_trial_result", a, {"epoch": 2, "val_acc": 0.6, "time_total_s": 2.0})
        call(cbs, "on_trial_complete", a)
    assert load(tmp_path).trials.loc[0, "status"] == "TERMINATED"                        # the tables are whole
    rebuild(tmp_path, "fake", DOMAINS, "val_acc", "max")
    assert_mirror_equals_tables(tmp_path, mirrored(tmp_path))


def test_dashboard_on_a_folder_that_is_not_a_study_is_one_line_exit_2(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a study folder" in err


def test_dashboard_on_a_port_in_use_is_one_line_exit_2(tmp_path, capsys):
    import yaml
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_study("busy")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["dashboard", str(tmp_path), "--port", str(s.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another port" in err
    assert not journal_path(tmp_path).exists()       # nothing written before the port is known to be free


# ---- real tiny studies, served by tlsweep dashboard while they run ---------------------------------------
FAST = {"max_steps_per_epoch": 3}
ROOT = Path(__file__).resolve().parents[2]
STUDIES = {
    "random": dict(training={"epochs": 2, **FAST, "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
                   search={"algorithm": "random", "num_samples": 3}),
    "grid": dict(training={"epochs": 3, **FAST, "lr": {"grid": [0.01, 0.003, 1.0e-6, 1.0e-7]}},
                 search={"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}}),
    "optuna": dict(training={"epochs": 2, **FAST, "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
                   model={"dropout": {"choice": [0.0, 0.25]}}, search={"algorithm": "optuna", "num_samples": 3}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout_s: float = 300.0, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def api(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return json.loads(r.read())
    except OSError:
        return None  # not listening yet, or restarting over a rebuilt mirror


@pytest.mark.parametrize("algorithm", sorted(STUDIES))
def test_dashboard_serves_a_running_study_and_the_mirror_equals_the_tables(ray_session, tmp_path, algorithm):
    from orchestrator.tuner import run_study
    from search_spaces import study_from_dict
    study = study_from_dict(tiny_study(f"mirror-{algorithm}", **STUDIES[algorithm]))
    outcome: dict = {}

    def run():
        try:
            outcome["folder"], outcome["grid"] = run_study(study, storage=str(tmp_path), log=lambda *a: None)
        except BaseException as e:  # noqa: BLE001 - re-raised by the test
            outcome["error"] = e
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    folder = tmp_path / study.name
    wait_for(lambda: journal_path(folder).is_file() or "error" in outcome, "the driver to create the mirror")
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "dashboard", str(folder), "--port",
                                  str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert runner.is_alive(), "the study ended before the dashboard started"
        assert "http://127.0.0.1:" in dashboard.stdout.readline()
        studies = wait_for(lambda: (api(port, "/api/studies") or {}).get("study_summaries"), "the dashboard")
        (summary,) = studies
        assert summary["study_name"] == study.name and summary["directions"] == ["maximize"]
        runner.join(timeout=600)
        assert not runner.is_alive() and "error" not in outcome, outcome.get("error")
        assert not outcome["grid"].errors
        n = len(load(folder).trials)

        def finished():
            detail = api(port, f"/api/studies/{summary['study_id']}")
            trials = (detail or {}).get("trials", [])
            return trials if len(trials) == n and all(t["state"] != "Running" for t in trials) else None
        served = wait_for(finished, "every trial finished in the dashboard")
    finally:
        os.killpg(dashboard.pid, signal.SIGTERM)
        dashboard.wait(timeout=60)
    tables = load(folder)
    for t in served:
        tid = next(a["value"] for a in t["user_attrs"] if a["key"] == "trial_id")
        epochs = tables.epochs[tables.epochs["trial_id"] == tid]
        assert [v["step"] for v in t["intermediate_values"]] == sorted(epochs["epoch"].astype(int))
        assert [v["value"] for v in t["intermediate_values"]] == pytest.approx(
            epochs.sort_values("epoch")["val_acc"].tolist())
    assert {t["state"].upper() for t in served} == {expected_state(r) for r in tables.trials.to_dict("records")}
    assert_mirror_equals_tables(folder, mirrored(folder), domains=study.domains)
