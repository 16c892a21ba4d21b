"""Transferability scores on constructed features whose answer is known, and the study-level views of them."""
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import transferability as T
from analysis.figures import FIGURES
from analysis.load import load

FEATURE_SCORES = ["hscore", "hscore_shrunk", "knn", "linear_probe", "logme"]


def blobs(n_per_class=20, classes=4, dims=6, spread=4.0, seed=0):
    """Well-separated classes: class means ``spread`` apart along their own axes, unit noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    means = np.zeros((classes, dims))
    means[np.arange(classes), np.arange(classes)] = spread
    return means[y] + rng.normal(size=(len(y), dims)), y


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_separated_classes_score_above_random_features(name):
    f, y = blobs()
    noise = np.random.default_rng(1).normal(size=f.shape)
    score = T.SCORES.get(name)
    assert score(f, y) > score(noise, y)


def test_leep_prefers_a_source_head_that_tells_the_classes_apart():
    f, y = blobs()
    rng = np.random.default_rng(2)
    informative = 4.0 * np.eye(7)[(y * 2) % 7] + rng.normal(size=(len(y), 7))  # each class its own source label
    random = rng.normal(size=(len(y), 7))
    assert T.leep(f, y, informative) > T.leep(f, y, random)
    assert T.leep(f, y, informative) <= 0  # a mean log probability
    with pytest.raises(ValueError, match="source"):
        T.leep(f, y)


@pytest.mark.parametrize("name", FEATURE_SCORES + ["leep"])
def test_scores_do_not_depend_on_the_order_of_the_samples(name):
    f, y = blobs(n_per_class=9, classes=3, dims=5, spread=2.0, seed=3)
    logits = np.random.default_rng(4).normal(size=(len(y), 4))
    order = np.random.default_rng(5).permutation(len(y))
    score = T.SCORES.get(name)
    assert score(f[order], y[order], logits[order]) == pytest.approx(score(f, y, logits), rel=1e-9, abs=1e-12)


def test_labels_need_not_be_0_to_c_minus_1():
    f, y = blobs(classes=3)
    assert T.logme(f, y + 5) == pytest.approx(T.logme(f, y))
    assert T.hscore(f, np.array(["a", "b", "c"])[y]) == pytest.approx(T.hscore(f, y))


def test_evidence_is_the_gaussian_marginal_likelihood():
    rng = np.random.default_rng(6)
    f, t = rng.normal(size=(7, 3)), rng.normal(size=7)
    alpha, beta = 0.7, 2.5
    cov = np.eye(7) / beta + f @ f.T / alpha  # y ~ N(0, I / beta + F F' / alpha)
    direct = -0.5 * (7 * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + t @ np.linalg.solve(cov, t))
    assert T.evidence(f, t, alpha, beta) == pytest.approx(direct, rel=1e-10)


def test_logme_is_the_evidence_at_its_maximum_over_alpha_and_beta():
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(3), 4)
    f = np.eye(3)[y] @ rng.normal(size=(3, 4)) + 0.5 * rng.normal(size=(12, 4))
    grid = np.exp(np.linspace(-5, 6, 221))  # alpha and beta on a log grid, each column maximised on its own
    best = [max(T.evidence(f, col, a, b) for a in grid for b in grid) / len(y) for col in np.eye(3)[y].T]
    assert T.logme(f, y) == pytest.approx(np.mean(best), abs=2e-4)
    assert T.logme(f, y) >= np.mean(best) - 1e-9  # the fixed point is the maximum, not just near the grid's


def test_logme_with_more_dimensions_than_images_is_finite():
    f, y = blobs(n_per_class=3, classes=3, dims=50)
    assert math.isfinite(T.logme(f, y)) and math.isfinite(T.hscore_shrunk(f, y))


def test_plain_hscore_saturates_with_few_images_and_the_shrunk_one_does_not():
    f, y = blobs(n_per_class=3, classes=3, dims=50)
    noise = np.random.default_rng(8).normal(size=f.shape)
    assert T.hscore(noise, y) == pytest.approx(2.0) == T.hscore(f, y)  # classes - 1, whatever the features
    assert T.hscore_shrunk(f, y) > T.hscore_shrunk(noise, y)


def test_kendall_fallback_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=8), rng.normal(size=8)
    assert T._kendall_fallback(x, y, False) == pytest.approx(scipy_stats.kendalltau(x, y).statistic)
    assert T._kendall_fallback(x, y, True) == pytest.approx(scipy_stats.weightedtau(x, y).statistic)


def test_score_all_leaves_out_scores_that_need_a_source_head():
    f, y = blobs()
    assert "leep" not in T.score_all(f, y)
    scored = T.score_all(f, y, np.ones((len(y), 3)))
    assert set(scored) == set(T.SCORES.names()) and all(s >= 0 for _, s in scored.values())


def write(folder, table, rows):
    (folder / "results" / table).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "results" / table / "part.parquet")


def fake_study(folder):
    archs = ["a", "b", "c", "d"]
    write(folder, "trials", [{"trial_id": f"t{i}{j}", "status": "TERMINATED", "config.model.arch": arch,
                              "best_val_acc": 0.5 + 0.1 * i - 0.01 * j} for i, arch in enumerate(archs)
                             for j in range(2)])
    write(folder, "transferability", [
        {"arch": arch, "scored": True, "logme": -1.0 + 0.2 * i, "knn": [0.4, 0.3, 0.6, 0.5][i],
         "kept": i >= 2, "why": f"logme rank {4 - i} of 4", "preselect_score": "logme", "rank_seconds": 1.5}
        for i, arch in enumerate(archs)])


def test_score_vs_sweep_and_its_figure(tmp_path):
    fake_study(tmp_path)
    tables = load(tmp_path)
    taus = T.score_vs_sweep(T.read_scores(tmp_path), tables.trials).set_index("score")
    assert taus.loc["logme", "tau"] == pytest.approx(1.0) and taus.loc["logme", "weighted_tau"] == pytest.approx(1)
    assert taus.loc["knn", "tau"] == pytest.approx(1 / 3) and taus.loc["logme", "n"] == 4
    fig = FIGURES["transferability"].fn(tables)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "logme: tau 1.00, weighted 1.00" and titles[1].startswith("knn: tau 0.33, weighted")


def test_the_figure_needs_both_tables(tmp_path):
    write(tmp_path, "trials", [{"trial_id": "t", "status": "TERMINATED", "config.model.arch": "a",
                                "best_val_acc": 0.5}])
    assert FIGURES["transferability"].fn(load(tmp_path)) is None
    assert T.read_scores(tmp_path).empty and T.preselect_lines(tmp_path) == []


def test_preselect_lines_say_what_was_left_out_and_why(tmp_path):
    fake_study(tmp_path)
    assert T.preselect_lines(tmp_path) == [
        "preselect by logme (1.5s to rank): swept c, d",
        "  left out a: logme -1, logme rank 4 of 4",
        "  left out b: logme -0.8, logme rank 3 of 4"]
    assert T.score_vs_sweep(pd.DataFrame(), load(tmp_path).trials).empty


def test_stage_rows_of_rank_stages_stay_out_of_the_final_layer_views(tmp_path):
    fake_study(tmp_path)
    stages = [{"arch": arch, "freeze_depth": (k + 1) / 2, "stage": k + 1, "stage_module": f"layer{k + 1}",
               "n_images": 50, "n_features": 8, "logme": 5.0 - i, "knn": 0.9 - 0.1 * i}  # the reverse order
              for i, arch in enumerate(["a", "b", "c", "d"]) for k in range(2)]
    pq.write_table(pa.Table.from_pylist(stages), tmp_path / "results" / "transferability" / "stages.parquet")
    final = T.read_scores(tmp_path)
    assert list(final["arch"]) == ["a", "b", "c", "d"] and not set(T.STAGE_COLUMNS) & set(final.columns)
    taus = T.score_vs_sweep(final, load(tmp_path).trials).set_index("score")
    assert taus.loc["logme", "tau"] == pytest.approx(1.0)
    assert FIGURES["transferability"].fn(load(tmp_path)).axes[0].get_title() == "logme: tau 1.00, weighted 1.00"
    per_stage = T.read_stage_scores(tmp_path)
    assert len(per_stage) == 8 and list(per_stage["stage"]) == [1, 2] * 4 and "kept" not in per_stage.columns
    assert T.read_stage_scores(tmp_path / "nowhere").empty
