"""End-to-end sweeps under ``ray.init(num_cpus=2)``: the Parquet tables, ASHA, reused processes, searches.
(Failing trials and refusing to overwrite results: tests/faults/.)"""
import pytest

from analysis.load import load
from orchestrator.summary import status_table, summary
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study


def test_four_trial_sweep_writes_the_four_tables(ray_session, tmp_path):
    study = study_from_dict(tiny_study("e2e", training={"lr": {"grid": [0.001, 0.003]}}, seeds=2))
    folder, grid = run_study(study, storage=str(tmp_path))
    assert not grid.errors
    t = load(folder)
    assert len(t.trials) == 4 and set(t.trials["status"]) == {"TERMINATED"}
    assert sorted(t.trials["seed"]) == [0, 0, 1, 1]
    assert set(t.trials["config.training.lr"]) == {0.001, 0.003}
    # one epochs row per (trial, epoch) reported
    assert len(t.epochs) == 8
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()
    assert t.epochs.groupby("trial_id")["epoch"].apply(lambda s: sorted(s) == [1, 2]).all()
    # per-class rows and confusion counts both sum to the validation set size, per trial
    n_val = 359
    val = t.per_class[t.per_class["split"] == "val"]
    assert (val.groupby("trial_id")["support"].sum() == n_val).all()
    assert (t.confusion[t.confusion["split"] == "val"].groupby("trial_id")["count"].sum() == n_val).all()
    assert len(val) == 4 * 10
    # the best row of a trial matches its epochs
    for _, row in t.trials.iterrows():
        ep = t.epochs[t.epochs["trial_id"] == row["trial_id"]]
        assert row["best_val_acc"] == pytest.approx(ep["val_acc"].max())
        assert row["epochs_run"] == 2 and not row["stopped_early"]
    assert (folder / "study.yaml").is_file()
    assert "trials: 4 (4 finished" in summary(folder)
    assert "TERMINATED" in status_table(folder)


def test_asha_stops_weak_trials(ray_session, tmp_path):
    # strong learning rates first: ASHA compares each trial with those that reached a rung before it
    study = study_from_dict(tiny_study(
        "asha", training={"epochs": 4, "lr": {"grid": [0.01, 0.003, 1.0e-5, 1.0e-6]}, "scheduler": "none"},
        search={"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}, "max_concurrent": 2}))
    folder, _ = run_study(study, storage=str(tmp_path))
    t = load(folder)
    stopped = t.trials[t.trials["stopped_early"]]
    assert len(stopped) >= 1
    assert (stopped["epochs_run"] < 4).all()
    assert set(t.trials.loc[t.trials["epochs_run"] == 4, "config.training.lr"]) & {0.003, 0.01}


def test_reused_trial_processes_leak_no_state(ray_session, tmp_path):
    # three trials one after another in reused actors: a different trial in between, then a repeat of the
    # first configuration must give exactly the first one's numbers
    study = study_from_dict(tiny_study(
        "reuse", training={"lr": {"grid": [0.003, 0.01]}, "epochs": 2}, model={"dropout": 0.3},
        data={"augment": "standard"}, search={"algorithm": "random", "num_samples": 2, "max_concurrent": 1}))
    folder, _ = run_study(study, storage=str(tmp_path))
    t = load(folder)
    assert len(t.trials) == 4
    assert t.epochs["pid"].nunique() == 1, "trials did not share a process"
    runs = t.epochs.merge(t.trials[["trial_id", "config.training.lr"]], on="trial_id")
    for lr, group in runs.groupby("config.training.lr"):
        a, b = [g.sort_values("epoch") for _, g in group.groupby("trial_id")]
        for col in ("train_loss", "val_loss", "val_acc"):
            assert a[col].tolist() == b[col].tolist(), (lr, col)


def test_conditional_random_and_optuna_searches(ray_session, tmp_path):
    conditional = {"strategy": {"choice": ["linear_probe", "partial"]},
                   "freeze_depth": {"uniform": [0.2, 0.8], "when": {"model.strategy": ["partial"]}}}
    for algorithm in ("random", "optuna"):
        study = study_from_dict(tiny_study(
            f"cond_{algorithm}", model=conditional, training={"epochs": 1, "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
            search={"algorithm": algorithm, "num_samples": 6, "max_concurrent": 2}))
        folder, grid = run_study(study, storage=str(tmp_path))
        t = load(folder).trials
        assert len(t) == 6 and set(t["status"]) == {"TERMINATED"}, algorithm
        probe = t[t["config.model.strategy"] == "linear_probe"]
        partial = t[t["config.model.strategy"] == "partial"]
        assert probe["config.model.freeze_depth"].isna().all(), algorithm      # never sampled for linear_probe
        assert partial["config.model.freeze_depth"].between(0.2, 0.8).all(), algorithm
        assert t["config.training.lr"].between(1e-4, 1e-2).all()
        assert t["config.training.lr"].nunique() == 6


def test_relative_data_root_works_inside_trials(ray_session, tmp_path, monkeypatch):
    from PIL import Image
    for c, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), colour).save(tmp_path / "imgs" / c / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    study = study_from_dict(tiny_study("relroot", data={"name": "imagefolder", "root": "./imgs", "image_size": 8},
                                       training={"epochs": 1}))
    folder, grid = run_study(study, storage="out")
    t = load(folder).trials
    assert t["status"].tolist() == ["TERMINATED"], t.get("error")
    assert t["config.data.root"].iloc[0] == str(tmp_path / "imgs")
