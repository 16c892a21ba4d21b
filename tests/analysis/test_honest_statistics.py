"""Seeds aggregated like with like, intervals on the per-class gain, Welch's test on the leaderboard, test
metrics in the report, and the trials the importance figure rests on; on constructed tables."""
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.aggregate import aggregate_seeds, difference_interval, seed_groups, welch_p
from analysis.figures import FIGURES
from analysis.figures.importance import hparam_importance, importance_table
from analysis.figures.perclass import per_class_gain_table, per_class_matrix
from analysis.load import StudyTables
from analysis.report import leaderboard, render
from analysis.synthetic import synthetic_tables, write_tables

CLASSES = ("cat", "dog", "bird")


def trial(tid, arch, lr, seed, acc, epochs_run=10, status="TERMINATED", test=None):
    row = {"study": "s", "trial_id": tid, "status": status, "seed": seed, "epochs_run": epochs_run,
           "max_epochs": 10, "stopped_early": epochs_run < 10, "config.model.arch": arch,
           "config.model.strategy": None if arch == "scratch_cnn" else "full", "config.training.lr": lr,
           "best_val_acc": acc, "best_epoch": epochs_run}
    if test is not None:
        row["best_test_acc"] = test
    return row


def test_seeds_of_mixed_fidelity_are_not_averaged_together():
    # ASHA stopped two of config A's seeds at epoch 1: 0.4246 +- 2.27 came from averaging them with the rest
    rows = [trial("a0", "r18", 0.01, 0, 0.90), trial("a1", "r18", 0.01, 1, 0.92),
            trial("a2", "r18", 0.01, 2, 0.20, epochs_run=1), trial("a3", "r18", 0.01, 3, 0.25, epochs_run=1),
            trial("a4", "r18", 0.01, 4, 0.99, status="ERROR"),
            trial("b0", "r18", 0.001, 0, 0.30, epochs_run=1), trial("b1", "r18", 0.001, 1, 0.40, epochs_run=1)]
    agg = aggregate_seeds(pd.DataFrame(rows), by=["config.training.lr"]).set_index("config.training.lr")
    a, b = agg.loc[0.01], agg.loc[0.001]
    assert a["mean"] == pytest.approx(0.91) and a["n"] == 2 and a["epochs"] == 10
    assert a["n_excluded"] == 2 and a["n_seeds"] == 4          # the stopped seeds are counted, not averaged
    assert a["ci"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std([0.90, 0.92], ddof=1) / math.sqrt(2))
    assert b["mean"] == pytest.approx(0.35) and b["n"] == 2 and b["epochs"] == 1 and b["n_excluded"] == 0
    groups = seed_groups(pd.DataFrame(rows), by=["config.training.lr"]).set_index("trial_id")["_averaged"]
    assert groups.to_dict() == {"a0": True, "a1": True, "a2": False, "a3": False, "b0": True, "b1": True}

    board = leaderboard(pd.DataFrame(rows))
    assert board.loc[0, "best_trial"] in ("a0", "a1") and board.loc[0, "n_excluded"] == 2


def _gain_tables(seeds_t: int, seeds_b: int) -> StudyTables:
    rng = np.random.default_rng(0)
    rows, pc = [], []
    plan = [("t", "r18", 0.01, seeds_t, 0.8), ("u", "r18", 0.001, seeds_t, 0.6), ("b", "scratch_cnn", 0.01,
                                                                                    seeds_b, 0.4)]
    for prefix, arch, lr, n, level in plan:
        for s in range(n):
            tid = f"{prefix}{s}"
            accs = np.clip(level + np.array([0.1, 0.0, -0.2]) + rng.normal(0, 0.03, 3), 0, 1)
            rows.append(trial(tid, arch, lr, s, float(accs.mean())))
            pc += [{"trial_id": tid, "split": "val", "epoch": 10, "class_index": i, "class_name": c,
                    "accuracy": float(v), "support": 10} for i, (c, v) in enumerate(zip(CLASSES, accs))]
    return StudyTables(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame(pc), pd.DataFrame())


def test_per_class_gain_is_a_mean_over_seeds_with_a_welch_interval():
    tables = _gain_tables(4, 3)
    table = per_class_gain_table(tables).set_index("class_name")
    assert table.attrs["transferred"] == ["t0", "t1", "t2", "t3"] and table.attrs["baseline"] == ["b0", "b1", "b2"]
    pc = tables.per_class.set_index(["trial_id", "class_name"])["accuracy"]
    for name in CLASSES:
        a = [pc[(f"t{s}", name)] for s in range(4)]
        b = [pc[(f"b{s}", name)] for s in range(3)]
        row = table.loc[name]
        assert row["gain"] == pytest.approx(np.mean(a) - np.mean(b))
        va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
        df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
        assert row["ci"] == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
        assert row["low"] < row["gain"] < row["high"] and (row["n_transferred"], row["n_baseline"]) == (4, 3)
    fig = FIGURES["per_class_gain"].fn(tables)
    assert "95% CI" in fig.axes[0].get_xlabel() and "mean of 4 seeds" in fig.axes[0].get_title()

    single = per_class_gain_table(_gain_tables(1, 1))
    assert single["ci"].isna().all() and (single["n_transferred"] == 1).all()
    assert "no interval" in FIGURES["per_class_gain"].fn(_gain_tables(1, 1)).axes[0].get_xlabel()
    assert math.isnan(difference_interval([0.5], [0.4, 0.3]))


def test_leaderboard_marks_the_configurations_welch_cannot_tell_from_the_first():
    best, equal, worse = [0.80, 0.83, 0.81], [0.82, 0.79, 0.81], [0.60, 0.62, 0.61]
    rows = ([trial(f"a{s}", "r18", 0.01, s, v, test=v - 0.02) for s, v in enumerate(best)]
            + [trial(f"b{s}", "r18", 0.001, s, v, test=v - 0.02) for s, v in enumerate(equal)]
            + [trial(f"c{s}", "r18", 0.1, s, v, test=v - 0.02) for s, v in enumerate(worse)]
            + [trial("d0", "r18", 0.03, 0, 0.805, test=0.8)])                      # one seed: untestable
    board = leaderboard(pd.DataFrame(rows)).set_index("config.training.lr")
    assert board.index[0] == 0.01 and pd.isna(board.loc[0.01, "tied"])
    assert board.loc[0.001, "tied"] is True and board.loc[0.1, "tied"] is False
    assert board.loc[0.03, "tied"] is None
    expected = stats.ttest_ind(equal, best, equal_var=False).pvalue
    assert board.loc[0.001, "p_value"] == pytest.approx(expected) and expected >= 0.05
    assert board.loc[0.1, "p_value"] == pytest.approx(stats.ttest_ind(worse, best, equal_var=False).pvalue)
    assert board.loc[0.1, "p_value"] < 0.05
    assert board.loc[0.01, "test_mean"] == pytest.approx(np.mean(best) - 0.02)
    assert math.isnan(welch_p([0.5], [0.5, 0.6])) and welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0

    one_seed = leaderboard(pd.DataFrame([trial(f"x{i}", "r18", lr, 0, 0.5 + i / 10)
                                         for i, lr in enumerate((0.1, 0.01, 0.001))]))
    assert one_seed["tied"].isna().all() and one_seed.attrs["testable"] is False


def _tied_row_marks(page: str) -> list[str]:
    table = re.search(r'<table id="leaderboard">(.*?)</table>', page, re.S).group(1)
    return re.findall(r'<tr class="(\w+)">', table)


def test_report_shows_test_metrics_and_welch_marks(tmp_path):
    study = write_tables(synthetic_tables(n_trials=24, n_epochs=6, seeds=3, seed=4), tmp_path / "with_test")
    page, notice = render(study)
    assert notice is None
    head = re.search(r'<table id="leaderboard">(.*?)</tr>', page, re.S).group(1)
    assert "test_acc: mean ± 95% CI" in head and "best trial&#x27;s test_acc" in head
    assert "vs #1 (Welch)" in head and "stopped earlier" in head
    winner = re.search(r'<span id="summary-winner">(.*?)</span>', page).group(1)
    assert "val_acc" in winner and "test_acc" in winner
    metrics = re.search(r'<table id="winner-metrics">(.*?)</table>', page, re.S).group(1)
    assert "<th>val</th><th>test</th>" in metrics
    assert "Welch" in re.search(r'<p class="muted" id="leaderboard-note">(.*?)</p>', page, re.S).group(1)
    marks = _tied_row_marks(page)
    assert marks[0] == "best" and set(marks[1:]) <= {"tied", "worse", "untestable"}
    assert 'id="fig-per_class_heatmaps_test"' in page and 'id="fig-confusion_matrices_test"' in page

    plain = write_tables(synthetic_tables(n_trials=12, n_epochs=4, seed=4, test_per_class=0), tmp_path / "no_test")
    page, _ = render(plain)
    head = re.search(r'<table id="leaderboard">(.*?)</tr>', page, re.S).group(1)
    assert "test_acc" not in head and 'id="fig-per_class_heatmaps_test"' not in page
    assert "cannot be run here" in page                             # one seed per configuration: no marks
    assert set(_tied_row_marks(page)[1:]) == {"untestable"}


def test_test_split_figures_use_the_trials_chosen_on_validation():
    t = synthetic_tables(n_trials=30, n_epochs=5, seeds=2, seed=7)
    val, test = per_class_matrix(t, split="val"), per_class_matrix(t, split="test")
    assert list(val.columns) == list(test.columns) and not val.equals(test)
    assert "test results" in FIGURES["per_class_heatmaps_test"].fn(t)._suptitle.get_text()
    assert FIGURES["confusion_matrices_test"].fn(t) is not None
    gain = per_class_gain_table(t, split="test")
    assert gain.attrs["split"] == "test" and gain.attrs["transferred"] == per_class_gain_table(t).attrs["transferred"]


def test_importance_figure_states_how_many_trials_it_rests_on():
    t = synthetic_tables(n_trials=40, n_epochs=6, seed=2)
    ok = t.trials[(t.trials["status"] == "TERMINATED") & t.trials["best_val_acc"].notna()]
    table = importance_table(t.trials)
    assert table.attrs["n_trials"] == len(ok) and table.attrs["n_left_out"] == len(t.trials) - len(ok)
    title = hparam_importance(t)._suptitle.get_text()
    assert f"over {len(ok)} finished trials" in title
    assert f"{int(ok['stopped_early'].sum())} of them stopped early" in title
    assert f"{len(t.trials) - len(ok)} errored or unfinished left out" in title
