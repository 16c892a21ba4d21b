"""Figures of a study, checked through the data they draw, on small hand-made tables."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.figures import FIGURES, save_all
from analysis.figures.asha import asha_data, epochs_saved
from analysis.figures.comparison import arch_strategy_heatmap, arch_strategy_matrix
from analysis.figures.confusion import confusion_matrix
from analysis.figures.importance import importance_table
from analysis.figures.perclass import per_class_gain_table, per_class_matrix
from analysis.load import StudyTables

CLASSES = {"cat": 0.05, "dog": 0.10, "bird": -0.25, "fish": -0.10}   # per-class offset from the trial's accuracy
ARCH_BASE = {"resnet18": 0.70, "mobilenetv3_small_100": 0.62, "scratch_cnn": 0.40}
STRATEGY_BONUS = {"linear_probe": 0.0, "partial": 0.08, "full": 0.12}
MAX_EPOCHS = 5


def _trial(tid, arch, strategy, depth, lr, seed, quality, epochs_run=MAX_EPOCHS, status="TERMINATED"):
    return {"study": "demo", "trial_id": tid, "status": status, "error": None, "failures": 0, "seed": seed,
            "epochs_run": epochs_run, "max_epochs": MAX_EPOCHS,
            "stopped_early": status == "TERMINATED" and epochs_run < MAX_EPOCHS,
            "config.model.arch": arch, "config.model.strategy": strategy, "config.model.freeze_depth": depth,
            "config.training.lr": lr, "config.training.epochs": MAX_EPOCHS, "_quality": quality,
            "wall_seconds": 10.0 * epochs_run * (2 if arch == "resnet18" else 1), "cpu_seconds": 0.0,
            "gpu_seconds": 0.0}


def _tables(rows) -> StudyTables:
    """Trials from ``rows`` plus consistent epochs, per_class and confusion tables."""
    trials, epochs, per_class, confusion = [], [], [], []
    for row in rows:
        row = dict(row)
        q = row.pop("_quality")
        curve = [round(q * (e / MAX_EPOCHS) ** 0.3, 6) for e in range(1, row["epochs_run"] + 1)]
        for e, v in enumerate(curve, start=1):
            epochs.append({"study": "demo", "trial_id": row["trial_id"], "epoch": e, "val_acc": v,
                           "train_acc": min(1.0, v + 0.05), "val_loss": 1 - v, "train_loss": 0.9 - v})
        if curve:
            row.update(best_val_acc=max(curve), best_epoch=int(np.argmax(curve)) + 1,
                       best_train_acc=min(1.0, max(curve) + 0.05))
        if row["status"] == "TERMINATED" and curve:
            for i, (name, offset) in enumerate(CLASSES.items()):
                acc = round(min(1.0, max(0.0, max(curve) + offset)) * 10) / 10
                per_class.append({"study": "demo", "trial_id": row["trial_id"], "split": "val",
                                  "epoch": row["best_epoch"], "class_index": i, "class_name": name,
                                  "precision": acc, "recall": acc, "f1": acc, "accuracy": acc, "support": 10})
                right = int(round(acc * 10))
                confusion.append({"study": "demo", "trial_id": row["trial_id"], "split": "val",
                                  "epoch": row["best_epoch"], "true": i, "predicted": i, "count": right})
                if right < 10:
                    confusion.append({"study": "demo", "trial_id": row["trial_id"], "split": "val",
                                      "epoch": row["best_epoch"], "true": i, "predicted": (i + 1) % 4,
                                      "count": 10 - right})
        trials.append(row)
    return StudyTables(pd.DataFrame(trials), pd.DataFrame(epochs), pd.DataFrame(per_class),
                       pd.DataFrame(confusion))


def rich_rows():
    rows, n = [], 0
    for arch in ARCH_BASE:
        combos = ([(s, d) for s in ("linear_probe", "full") for d in [None]] + [("partial", d) for d in
                  (0.25, 0.5, 0.75)]) if arch != "scratch_cnn" else [(None, None)]
        for strategy, depth in combos:
            for lr in (1e-3, 1e-2):
                for seed in (0, 1):
                    q = (ARCH_BASE[arch] + STRATEGY_BONUS.get(strategy, 0) + (0.05 if lr == 1e-2 else 0)
                         + 0.02 * seed - 0.03 * (depth or 0))
                    stopped = strategy == "linear_probe" and lr == 1e-3
                    rows.append(_trial(f"t{n:03d}", arch, strategy, depth, lr, seed, q,
                                       epochs_run=2 if stopped else MAX_EPOCHS))
                    n += 1
    rows.append(_trial(f"t{n:03d}", "resnet18", "full", None, 1e-2, 0, 0.999, status="ERROR"))
    return rows


@pytest.fixture(scope="module")
def rich():
    return _tables(rich_rows())


def _best(trials, **where):
    ok = trials[(trials["status"] == "TERMINATED")]
    for col, value in where.items():
        ok = ok[ok[f"config.model.{col}"].isna()] if value is None else ok[ok[f"config.model.{col}"] == value]
    top = ok["best_val_acc"].max()
    return ok[ok["best_val_acc"] == top].sort_values("trial_id").iloc[0]


def test_heatmap_matrix_is_the_per_group_best_errors_never_win_ties_count_once():
    rows = [_trial("a", "resnet18", "full", None, 1e-3, 0, 0.80),
            _trial("b", "resnet18", "full", None, 1e-2, 0, 0.85),
            _trial("c", "resnet18", "full", None, 3e-2, 0, 0.99, status="ERROR"),
            _trial("d", "resnet18", "linear_probe", None, 1e-3, 0, 0.70),
            _trial("e", "mobilenet", "full", None, 1e-3, 0, 0.75),
            _trial("f", "mobilenet", "full", None, 1e-2, 0, 0.75),
            _trial("g", "mobilenet", "linear_probe", None, 1e-3, 0, 0.60),
            _trial("h", "scratch_cnn", None, None, 1e-3, 0, 0.50)]
    trials = _tables(rows).trials
    matrix = arch_strategy_matrix(trials)
    assert list(matrix.index) == ["resnet18", "mobilenet", "scratch_cnn"]        # best architecture first
    assert list(matrix.columns) == ["linear_probe", "full", "n/a"]
    top = trials.set_index("trial_id")["best_val_acc"]
    expected = pd.DataFrame({"linear_probe": [top["d"], top["g"], np.nan], "full": [top["b"], top["e"], np.nan],
                             "n/a": [np.nan, np.nan, top["h"]]}, index=matrix.index)
    pd.testing.assert_frame_equal(matrix, expected, check_names=False)
    assert matrix.loc["resnet18", "full"] < top["c"]                             # the errored trial lost


def test_heatmap_with_seeds_uses_the_best_seed_mean_and_annotates_the_ci():
    rows = [_trial("a", "r18", "full", None, 1e-3, 0, 0.80), _trial("b", "r18", "full", None, 1e-3, 1, 0.90),
            _trial("c", "r18", "full", None, 1e-2, 0, 0.95), _trial("d", "r18", "full", None, 1e-2, 1, 0.65),
            _trial("e", "r18", "linear_probe", None, 1e-3, 0, 0.5),
            _trial("f", "r18", "linear_probe", None, 1e-3, 1, 0.6)]
    tables = _tables(rows)
    acc = tables.trials.set_index("trial_id")["best_val_acc"]
    matrix = arch_strategy_matrix(tables.trials)
    assert matrix.loc["r18", "full"] == pytest.approx((acc["a"] + acc["b"]) / 2)   # not the single best seed
    fig = arch_strategy_heatmap(tables)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("±" in t for t in texts) and f"{matrix.loc['r18', 'full']:.3f}" in " ".join(texts)


def test_asha_data_marks_exactly_the_stopped_trials(rich):
    data = asha_data(rich.trials, rich.epochs)
    stopped = set(rich.trials.loc[rich.trials["stopped_early"], "trial_id"])
    assert stopped and set(data.loc[data["stopped_early"], "trial_id"]) == stopped
    runs = rich.trials.set_index("trial_id")["epochs_run"]
    assert (data.set_index("trial_id")["last_epoch"] == runs).all()
    assert epochs_saved(rich.trials) == len(stopped) * (MAX_EPOCHS - 2)
    assert str(len(stopped)) in FIGURES["asha"].fn(rich).axes[0].get_title()


def test_per_class_matrix_is_the_per_class_accuracy_of_the_best_trials_in_label_order(rich):
    matrix = per_class_matrix(rich)
    trials = rich.trials
    assert len(matrix.columns) == 2 * 3 + 1
    for label, arch, strategy in (("resnet18 / full", "resnet18", "full"),
                                  ("mobilenetv3_small_100 / partial", "mobilenetv3_small_100", "partial"),
                                  ("scratch_cnn", "scratch_cnn", None)):
        best = _best(trials, arch=arch, strategy=strategy)
        rows = rich.per_class[rich.per_class["trial_id"] == best["trial_id"]].set_index("class_name")["accuracy"]
        pd.testing.assert_series_equal(matrix[label], rows.reindex(matrix.index), check_names=False)
    assert list(matrix.index) == list(CLASSES)                     # class_index order, not names or difficulty
    hardest = per_class_matrix(rich, order="hardest")
    means = hardest.mean(axis=1).to_numpy()
    assert (np.diff(means) >= 0).all() and hardest.index[0] == "bird"
    pd.testing.assert_frame_equal(hardest, matrix.loc[hardest.index])
    assert list(matrix.columns[:3]) == ["mobilenetv3_small_100 / linear_probe", "mobilenetv3_small_100 / partial",
                                        "mobilenetv3_small_100 / full"]


def test_per_class_gain_is_best_transferred_config_minus_baseline_config_over_seeds(rich):
    table = per_class_gain_table(rich)
    trials, pc = rich.trials, rich.per_class.set_index(["trial_id", "class_name"])["accuracy"]
    base = _best(trials, arch="scratch_cnn")
    best = _best(trials[trials["config.model.arch"] != "scratch_cnn"])
    key = ["config.model.arch", "config.model.strategy", "config.model.freeze_depth", "config.training.lr"]

    def seeds(row):   # the trials of the same configuration (every seed ran to the end here)
        same = trials[(trials["status"] == "TERMINATED")]
        for c in key:
            same = same[same[c].isna()] if pd.isna(row[c]) else same[same[c] == row[c]]
        return sorted(same["trial_id"])

    assert table.attrs["transferred"] == seeds(best) and table.attrs["baseline"] == seeds(base)
    assert len(seeds(best)) == 2
    for _, row in table.iterrows():
        a = [pc[(t, row["class_name"])] for t in seeds(best)]
        b = [pc[(t, row["class_name"])] for t in seeds(base)]
        assert row["gain"] == pytest.approx(np.mean(a) - np.mean(b))
        assert row["n_transferred"] == 2 and row["n_baseline"] == 2
    assert set(table["class_name"]) == set(CLASSES) and table["gain"].is_monotonic_decreasing
    no_baseline = _tables([r for r in rich_rows() if r["config.model.arch"] != "scratch_cnn"])
    assert per_class_gain_table(no_baseline).empty and FIGURES["per_class_gain"].fn(no_baseline) is None


def test_confusion_matrix_rows_are_normalised_and_named(rich):
    tid = _best(rich.trials, arch="resnet18")["trial_id"]
    matrix = confusion_matrix(rich, tid)
    assert list(matrix.index) == list(CLASSES) and np.allclose(matrix.sum(axis=1), 1.0)
    acc = rich.per_class[rich.per_class["trial_id"] == tid].set_index("class_name")["accuracy"]
    assert np.allclose(np.diag(matrix), acc.reindex(matrix.index))


def test_importance_table_has_a_row_per_swept_parameter_and_sensible_signs(rich):
    table = importance_table(rich.trials)
    assert set(table["param"]) == {"config.model.arch", "config.model.strategy", "config.model.freeze_depth",
                                   "config.training.lr"}
    assert table.set_index("param").loc["config.training.lr", "spearman"] > 0
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        lr, batch = 10 ** rng.uniform(-4, -1), int(rng.choice([16, 32, 64, 128]))
        row = _trial(f"n{i:02d}", "r18", "full", None, lr, 0, 0.5)
        row.update({"config.training.batch_size": batch, "status": "TERMINATED",
                    "best_val_acc": 0.5 + 0.1 * math.log10(lr) / 4 + 0.2 - 0.0005 * batch})
        rows.append(row)
    numeric = importance_table(pd.DataFrame(rows)).set_index("param")
    assert numeric.loc["config.training.lr", "spearman"] > 0 > numeric.loc["config.training.batch_size", "spearman"]
    assert numeric["importance"].sum() == pytest.approx(1.0) and (numeric["importance"] >= 0).all()
    assert importance_table(pd.DataFrame(rows[:3])).empty


@pytest.mark.parametrize("with_epochs", [True, False])
def test_a_one_trial_study_draws_nothing_and_raises_nothing(with_epochs):
    one = _tables([_trial("solo", "resnet18", "full", None, 1e-3, 0, 0.7, epochs_run=3 if with_epochs else 0)])
    one = StudyTables(one.trials, one.epochs, pd.DataFrame(), pd.DataFrame())
    for name, spec in FIGURES.items():
        assert spec.fn(one) is None, name
    empty = StudyTables(*(pd.DataFrame() for _ in range(4)))
    assert all(spec.fn(empty) is None for spec in FIGURES.values())


def test_every_figure_draws_a_rich_study_and_save_all_writes_pngs(rich, tmp_path):
    # (the Transferability figures read the study folder's own table: tests/analysis/test_transferability.py)
    names = [n for n, spec in FIGURES.items() if spec.section not in ("Segmentation", "Transferability")]
    assert names[:2] == ["learning_curves", "arch_strategy_heatmap"] and names[-1] == "confusion_matrices_test"
    paths = save_all(rich, tmp_path, dpi=40)
    # every classification figure applies to the rich study, except the test split's (it has none)
    assert list(paths) == [n for n in names if not n.endswith("_test")]
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_freeze_figure_plots_the_frozen_fraction_and_falls_back_to_depth(rich):
    from analysis.figures.sweep import freeze_points
    from analysis.synthetic import synthetic_tables
    t = synthetic_tables(n_trials=60, n_epochs=4)
    ok, label = freeze_points(t)
    assert label.startswith("frozen fraction")
    trials = t.trials.set_index("trial_id")
    assert ok["_x"].tolist() == trials.loc[ok["trial_id"], "frozen_fraction"].tolist()
    assert ok["config.model.strategy"].notna().all()  # the from-scratch baseline is left out
    lp = ok[ok["config.model.strategy"] == "linear_probe"]
    assert len(lp) and (lp["_x"] == 1.0).all() and (ok.loc[ok["config.model.strategy"] == "full", "_x"] == 0).all()
    fig = FIGURES["metric_vs_freeze_depth"].fn(t)
    assert "frozen fraction" in fig.axes[0].get_xlabel()

    # a trials table without the column: the last epoch's value from the epochs table
    from analysis.load import StudyTables
    no_col = StudyTables(t.trials.drop(columns=["frozen_fraction"]), t.epochs, t.per_class, t.confusion)
    again, _ = freeze_points(no_col)
    assert again["_x"].tolist() == ok["_x"].tolist()

    # an older study (no frozen_fraction anywhere): freeze_depth, with a note on the axis
    old, label = freeze_points(rich)
    assert "freeze depth" in label and "older study" in label
    assert sorted(old["_x"].unique()) == [0.25, 0.5, 0.75]
    assert "older study" in FIGURES["metric_vs_freeze_depth"].fn(rich).axes[0].get_xlabel()
