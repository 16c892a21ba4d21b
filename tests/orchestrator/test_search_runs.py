"""Each search algorithm and scheduler beyond random / optuna / ASHA runs a tiny study under ``ray.init(num_cpus=2)``:
grid enumerates exactly once, cmaes and qmc sample their ranges, hyperband and median stop trials, PBT exploits
through checkpoints. (Validation of the names and options: tests/search_spaces/test_search_section.py.)"""
import pandas as pd
import pytest

from analysis.load import load
from orchestrator.space import count_grid
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study

FAST = {"max_steps_per_epoch": 3}  # a few batches per epoch: these tests check scheduling, not learning


def run(tmp_path, name, **overrides):
    study = study_from_dict(tiny_study(name, **overrides))
    folder, grid = run_study(study, storage=str(tmp_path))
    assert not grid.errors
    return study, load(folder)


def test_grid_runs_every_choice_and_grid_combination_with_every_seed_once(ray_session, tmp_path):
    study, t = run(tmp_path, "grid", seeds=2, training={
        "epochs": 1, **FAST, "lr": {"grid": [0.003, 0.01]},
        "weight_decay": {"choice": [0.0, 0.001], "when": {"training.lr": 0.01}}})
    expected = {(0.003, None, s) for s in (0, 1)} | {(0.01, wd, s) for wd in (0.0, 0.001) for s in (0, 1)}
    assert count_grid(study) == len(expected) == 6
    trials = t.trials
    got = [(lr, None if pd.isna(wd) else wd, seed) for lr, wd, seed in
           zip(trials["config.training.lr"], trials["config.training.weight_decay"], trials["seed"])]
    assert len(got) == 6 and set(got) == expected      # each combination and seed exactly once
    assert set(trials["status"]) == {"TERMINATED"}


@pytest.mark.parametrize("algorithm", ["cmaes", "qmc"])
def test_optuna_samplers_sample_their_ranges(ray_session, tmp_path, algorithm):
    _, t = run(tmp_path, algorithm, model={"dropout": {"uniform": [0.0, 0.5]}},
               training={"epochs": 1, **FAST, "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
               search={"algorithm": algorithm, "num_samples": 3})
    trials = t.trials
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}
    assert trials["config.training.lr"].between(1e-4, 1e-2).all() and trials["config.training.lr"].nunique() == 3
    assert trials["config.model.dropout"].between(0.0, 0.5).all()


def test_hyperband_pauses_each_bracket_and_keeps_its_best(ray_session, tmp_path):
    # max_t 3, reduction factor 3: a bracket of 2 trials run to 3 epochs, then one of 3 trials that run 1 epoch,
    # of which the best continues to 3
    _, t = run(tmp_path, "hyperband", training={"epochs": 3, **FAST, "lr": {"grid": [0.03, 0.01, 0.003, 1.0e-4,
                                                                                    1.0e-6]}},
               search={"max_concurrent": None, "scheduler": {"type": "hyperband", "reduction_factor": 3}})
    assert sorted(t.trials["epochs_run"]) == [1, 1, 3, 3, 3]
    assert t.trials["stopped_early"].sum() == 2
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()   # paused and resumed: no row written twice


def test_median_stopping_rule_stops_trials_below_the_median(ray_session, tmp_path):
    # the two that learn run first (2 at a time), so a median exists when the two that cannot learn start
    _, t = run(tmp_path, "median", training={"epochs": 4, "batch_size": 32, "lr": {"grid": [0.01, 0.003, 1.0e-7,
                                                                                           1.0e-8]}},
               search={"grid_order": "listed", "scheduler": {"type": "median", "grace_period": 2,
                                                             "min_samples_required": 2}})
    runs = dict(zip(t.trials["config.training.lr"], t.trials["epochs_run"]))
    assert runs[0.01] == runs[0.003] == 4
    assert 2 <= runs[1.0e-7] < 4 and 2 <= runs[1.0e-8] < 4       # stopped, not before the grace period


def test_pbt_exploits_the_better_trial_through_its_checkpoint(ray_session, tmp_path):
    # two trials that take turns (2 CPUs each): one learns (lr 0.01), one cannot (lr 1e-7). At a perturbation the
    # lower one continues from the upper one's checkpoint, with its config (weight_decay perturbed)
    _, t = run(tmp_path, "pbt", training={"epochs": 4, "batch_size": 32, "lr": {"grid": [1.0e-7, 0.01]},
                                          "weight_decay": {"choice": [0.0, 1.0e-5]}},
               search={"algorithm": "random", "max_concurrent": None,
                       "scheduler": {"type": "pbt", "quantile": 0.5, "resample_probability": 0.0}},
               resources={"cpu": 2})
    ep = t.epochs.sort_values(["trial_id", "epoch"])
    assert not ep.duplicated(["trial_id", "epoch"]).any()
    assert (ep.groupby("trial_id")["epoch"].max() == 4).all()
    exploits = ep[ep["exploited_from"].notna()]
    assert len(exploits), "PBT never exploited"
    first = exploits.iloc[0]
    assert first["exploited_from"] in set(t.trials["trial_id"]) - {first["trial_id"]}
    own = ep[(ep["trial_id"] == first["trial_id"]) & (ep["epoch"] == first["epoch"] - 1)].iloc[0]
    donor = ep[(ep["trial_id"] == first["exploited_from"]) & (ep["epoch"] == first["epoch"])].iloc[0]
    # the epoch right after the exploit continues the donor's weights (optimizer, schedule and random state too:
    # it repeats the donor's own run of that epoch), far from where the trial's own weights were
    assert donor["val_acc"] > own["val_acc"] + 0.2
    assert first["val_acc"] == pytest.approx(donor["val_acc"], abs=0.1)
    # and the exploiting trial now has the donor's configuration
    trials = t.trials.set_index("trial_id")
    assert trials.loc[first["trial_id"], "config.training.lr"] == trials.loc[first["exploited_from"],
                                                                             "config.training.lr"] == 0.01
