"""``analysis.load``: one study or several, clear errors for missing folders, parts with differing columns."""
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import TABLES, StudyNotFound, load
from analysis.synthetic import synthetic_tables, write_tables


def test_one_study_round_trips(tmp_path):
    t = synthetic_tables(n_trials=12, n_epochs=5, seed=4)
    loaded = load(write_tables(t, tmp_path / "s"))
    for name in TABLES:
        assert len(getattr(loaded, name)) == len(getattr(t, name)), name
    assert set(loaded.trials["trial_id"]) == set(t.trials["trial_id"])
    assert loaded.epochs.groupby("trial_id").size().to_dict() == \
        t.trials.set_index("trial_id")["epochs_run"][lambda s: s > 0].to_dict()


def test_several_studies_concatenate_with_the_study_column(tmp_path):
    a = write_tables(synthetic_tables(n_trials=8, n_epochs=3, seed=1, study="a"), tmp_path / "a")
    b = write_tables(synthetic_tables(n_trials=5, n_epochs=3, seed=2, study="b"), tmp_path / "b")
    both = load([a, b])
    assert both.trials.groupby("study").size().to_dict() == {"a": 8, "b": 5}
    for name in TABLES:
        table = getattr(both, name)
        if name == "samples":  # segmentation only
            assert table.empty
            continue
        assert set(table["study"]) == {"a", "b"}, name
    assert len(both.epochs) == len(load(a).epochs) + len(load(b).epochs)


def test_missing_folder(tmp_path):
    with pytest.raises(StudyNotFound, match="no such study folder"):
        load(tmp_path / "nope")


def test_folder_without_results(tmp_path):
    (tmp_path / "study.yaml").write_text("name: x\n")
    with pytest.raises(StudyNotFound, match="no results yet"):
        load(tmp_path)


def test_parts_with_differing_columns_align(tmp_path):
    folder = tmp_path / "results" / "epochs"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"study": "s", "trial_id": "t1", "epoch": 1, "val_acc": 0.5}]),
                   folder / "t1.parquet")
    pq.write_table(pa.Table.from_pylist([{"study": "s", "trial_id": "t2", "epoch": 1, "val_acc": 0.6,
                                          "val_top5": 0.9}]), folder / "t2.parquet")
    (folder / ".t3.parquet.123.tmp").write_bytes(b"half-written")  # a part being written is ignored
    epochs = load(tmp_path).epochs.sort_values("trial_id").reset_index(drop=True)
    assert list(epochs["trial_id"]) == ["t1", "t2"]
    assert pd.isna(epochs.loc[0, "val_top5"]) and epochs.loc[1, "val_top5"] == 0.9
    assert load(tmp_path).trials.empty  # a table with no parts yet is an empty frame


def test_snapshot_is_used_only_while_the_parts_are_unchanged(tmp_path):
    import os

    import pandas as pd

    from analysis.load import compact, load
    from analysis.synthetic import synthetic_tables, write_tables
    folder = write_tables(synthetic_tables(n_trials=12, n_epochs=4), tmp_path / "s")
    before = load(folder)
    compact(folder)
    assert (folder / "results" / "epochs.snapshot.parquet").is_file()
    after = load(folder)
    for t in ("trials", "epochs", "per_class", "confusion"):
        pd.testing.assert_frame_equal(getattr(before, t), getattr(after, t))
    # a part rewritten after the snapshot (a resumed study): the parts win
    part = sorted((folder / "results" / "trials").glob("*.parquet"))[0]
    df = pd.read_parquet(part)
    df["status"] = "CHANGED"
    df.to_parquet(part)
    os.utime(part, ns=(1, 10**18))
    assert "CHANGED" in set(load(folder).trials["status"])
