"""``tlsweep rank`` and ``search.preselect`` on a tiny transfer study: digits 0-4 pretrain the architectures,
digits 5-9 (10 labelled images per class, 16 px) are the target."""
import pytest

from analysis.load import load
from analysis.report import render
from analysis.transferability import SCORES, read_scores
from orchestrator.cli import main
from orchestrator.summary import summary
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study

ARCHS = ["scratch_cnn", "baseline_cnn", "test_resnet"]


def transfer_study(name: str, storage, **search) -> dict:
    return tiny_study(
        name, storage=str(storage),
        data={"name": "digits", "image_size": 16, "classes": [5, 6, 7, 8, 9], "samples_per_class": 10},
        model={"arch": {"grid": ARCHS}, "strategy": "linear_probe", "conv_layers": 2, "first_layer_filters": 8,
               "dense_units": 32,
               "weights": {"pretrain": {"data": {"name": "digits", "classes": [0, 1, 2, 3, 4],
                                                 "samples_per_class": 40},
                                        "epochs": 1, "skip": ["scratch_cnn"]}}},
        training={"epochs": 1, "batch_size": 32}, search={"scheduler": "none", **search})


@pytest.fixture(scope="module", autouse=True)
def pretrain_cache(tmp_path_factory):
    """One pretraining cache for the module: the architectures are pretrained once, by the first test."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TLSWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def test_rank_prints_the_ranked_table_and_writes_the_transferability_table(tmp_path, capsys):
    import yaml
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(transfer_study("ranked", tmp_path / "results")))
    assert main(["rank", str(path), "--score", "knn"]) == 0
    out = capsys.readouterr().out
    assert "rank scratch_cnn: no pretrained weights (trained from scratch): not scored" in out
    assert f"transferability table: {tmp_path / 'results' / 'ranked' / 'results' / 'transferability'}" in out
    table = read_scores(tmp_path / "results" / "ranked").set_index("arch")
    assert list(table.index) == ARCHS and list(table["scored"]) == [False, True, True]
    for name in SCORES.names():  # every score (LEEP too: the pretraining stage's checkpoints keep their head)
        assert table.loc[["baseline_cnn", "test_resnet"], name].notna().all()
        assert (table.loc[["baseline_cnn", "test_resnet"], f"{name}_seconds"] >= 0).all()
    assert (table.loc[["baseline_cnn", "test_resnet"], "n_images"] == 50).all()
    assert (table.loc[["baseline_cnn", "test_resnet"], "source_classes"] == 5).all()
    header = next(line for line in out.splitlines() if line.lstrip().startswith("rank  "))
    assert "logme s" in header and "knn s" in header
    assert main(["rank", str(path), "--score", "logmee"]) == 2
    assert "--score: unknown score 'logmee' (did you mean: logme" in capsys.readouterr().err


def test_preselect_sweeps_only_the_kept_architectures(ray_session, tmp_path):
    study = study_from_dict(transfer_study("pre", tmp_path, preselect={"score": "logme", "top_k": 1}))
    lines = []
    folder, grid = run_study(study, storage=str(tmp_path), log=lines.append)
    assert not grid.errors
    table = read_scores(folder).set_index("arch")
    scored = table[table["scored"]]
    winner = scored["logme"].idxmax()
    loser = scored["logme"].idxmin()
    assert list(table.index[table["kept"]]) == [a for a in ARCHS if a in ("scratch_cnn", winner)]
    assert table.loc[loser, "why"] == "logme rank 2 of 2 (search.preselect keeps the top 1)"
    assert table.loc["scratch_cnn", "why"] == "trained from scratch: not scored, kept as a baseline"
    trials = load(folder).trials
    assert sorted(trials["config.model.arch"]) == sorted(["scratch_cnn", winner])  # the loser never ran
    text = summary(folder)
    assert "preselect by logme" in text and f"left out {loser}: logme" in text
    assert any(line.startswith(f"preselect: sweeping scratch_cnn, {winner}; left out {loser}") for line in lines)
    page, _ = render(folder)
    assert 'id="preselect"' in page and f"left out {loser}" in page


def test_rank_stages_scores_every_selectable_freeze_depth_and_prints_the_hint(tmp_path, capsys):
    import math

    import yaml

    from analysis.transferability import read_stage_scores
    from trainables.config import ModelConfig
    from trainables.freezing import frozen_stages, stage_sizes
    from trainables.models import build_model
    from trainables.stage_features import depths
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(transfer_study("staged", tmp_path / "results")))
    assert main(["rank", str(path), "--stages"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "results" / "staged"
    stages = read_stage_scores(folder)
    assert set(stages["arch"]) == {"baseline_cnn", "test_resnet"}  # scratch_cnn has no weights
    final = read_scores(folder).set_index("arch")
    assert list(final.index) == ARCHS and "freeze_depth" not in final.columns  # the final-layer rows only
    for arch, rows in stages.groupby("arch"):
        bundle = build_model(ModelConfig(arch=arch, conv_layers=2, first_layer_filters=8, dense_units=32), 5, 16)
        n = len(bundle.stages)
        assert sorted(rows["stage"]) == list(range(1, n + 1))  # one row per depth that freezes 1..n stages
        by_params = depths(stage_sizes(bundle), "params")  # the same depths under freeze_unit: params
        assert [frozen_stages(bundle, ModelConfig(freeze_depth=d, freeze_unit="params")) for d in by_params] == \
            list(range(1, n + 1))
        params = dict(bundle.model.named_parameters())
        for row in rows.itertuples():
            assert frozen_stages(bundle, ModelConfig(freeze_depth=row.freeze_depth)) == row.stage
            assert row.n_images == 50
            if arch == "test_resnet":  # each stage ends in a BatchNorm: its width is the pooled output's
                assert row.n_features == params[bundle.stages[row.stage - 1][-1]].numel()
            for name in ("logme", "hscore", "hscore_shrunk", "knn", "linear_probe"):
                assert math.isfinite(getattr(row, name))
            assert "leep" not in rows.columns or rows["leep"].isna().all()
        deepest = rows.set_index("stage").loc[n]
        if arch == "test_resnet":  # freezing everything: the last stage pooled is the head's input
            assert deepest["freeze_depth"] == 1.0 and deepest["n_features"] == final.loc[arch, "n_features"]
    hint = out[out.index("freeze-depth hint"):].splitlines()
    assert "logme" in hint[1] and "leep" not in hint[1]
    assert [line.split()[0] for line in hint[2:4]] == ["baseline_cnn", "test_resnet"]
    best = stages.loc[stages.groupby("arch")["logme"].idxmax()].set_index("arch")["freeze_depth"]
    assert float(hint[3].split()[hint[1].split().index("logme")]) == pytest.approx(best["test_resnet"], abs=1e-3)
    assert main(["rank", str(path)]) == 0  # a ranking without --stages leaves no stage rows of an earlier one
    assert read_stage_scores(folder).empty and list(read_scores(folder)["arch"]) == ARCHS
