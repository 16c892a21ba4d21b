"""The helpers every figure uses, on known numbers."""
import math

import pandas as pd
import pytest

from analysis.aggregate import aggregate_seeds, baseline, best_per_group, swept_columns, transferred


def trials(rows):
    cols = ["trial_id", "status", "seed", "config.model.arch", "config.model.strategy", "config.training.lr",
            "best_val_acc"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


T = trials([
    ("t0", "TERMINATED", 0, "resnet18", "full", 0.01, 0.80),
    ("t1", "TERMINATED", 1, "resnet18", "full", 0.01, 0.90),
    ("t2", "TERMINATED", 2, "resnet18", "full", 0.01, 0.85),
    ("t3", "TERMINATED", 0, "resnet18", "linear_probe", 0.01, 0.70),
    ("t4", "ERROR", 0, "resnet18", "linear_probe", 0.01, 0.99),      # errored: never the best
    ("t5", "TERMINATED", 0, "vgg11", "full", 0.01, 0.75),
    ("t6", "TERMINATED", 1, "vgg11", "full", 0.01, 0.75),            # tie with t5: lowest trial_id wins
    ("t7", "TERMINATED", 0, "scratch_cnn", None, 0.01, 0.40),
    ("t8", "TERMINATED", 0, "scratch_cnn", None, 0.01, None),        # no metric: ignored
])


def test_best_per_group_skips_errors_and_breaks_ties_by_trial_id():
    best = best_per_group(T, ["config.model.arch", "config.model.strategy"])
    got = dict(zip(zip(best["config.model.arch"], best["config.model.strategy"].fillna("-")), best["trial_id"]))
    assert got == {("resnet18", "full"): "t1", ("resnet18", "linear_probe"): "t3", ("vgg11", "full"): "t5",
                   ("scratch_cnn", "-"): "t7"}
    assert best_per_group(T, [], mode="min")["trial_id"].tolist() == ["t7"]


def test_seed_aggregation_mean_and_95_interval():
    agg = aggregate_seeds(T, by=["config.model.arch", "config.model.strategy"])
    row = agg[(agg["config.model.arch"] == "resnet18") & (agg["config.model.strategy"] == "full")].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.85)
    assert row["std"] == pytest.approx(0.05)
    # t(0.975, 2) = 4.302653: half-width = 4.302653 * 0.05 / sqrt(3)
    assert row["ci"] == pytest.approx(4.302653 * 0.05 / math.sqrt(3), rel=1e-5)
    assert row["low"] == pytest.approx(0.85 - row["ci"]) and row["high"] == pytest.approx(0.85 + row["ci"])
    single = agg[(agg["config.model.arch"] == "resnet18") & (agg["config.model.strategy"] == "linear_probe")].iloc[0]
    assert single["n"] == 1 and math.isnan(single["ci"])   # the errored seed does not count
    tie = agg[agg["config.model.arch"] == "vgg11"].iloc[0]
    assert tie["ci"] == pytest.approx(0.0)


def test_baseline_and_swept_columns():
    assert baseline(T)["trial_id"] == "t7"
    assert "scratch_cnn" not in set(transferred(T)["config.model.arch"])
    assert swept_columns(T) == ["config.model.arch", "config.model.strategy"]
    assert baseline(T[T["config.model.arch"] != "scratch_cnn"]) is None
