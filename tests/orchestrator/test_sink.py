"""The sink with fake results (no Ray): a trial that continues from another trial's checkpoint (a PBT exploit)
re-reports epochs it had reported; rows stay one per (trial, epoch), the later report replacing the earlier."""
from analysis.load import load
from orchestrator.sink import ParquetSink, read_part, write_part
from tests.conftest import FakeTrial


def make_sink(root) -> ParquetSink:
    def view(config):
        return {"training": {"lr": config["training.lr"], "epochs": 4}, "seed": 0}, dict(config)
    sink = ParquetSink(str(root / "results"), "pbt", view, lambda nested: nested["training"]["epochs"])
    sink.setup()
    return sink


def report(sink, trial, epoch, val_acc, donor=None):
    sink.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": val_acc, "time_total_s": float(epoch),
                                        "exploited_from": donor})


def test_an_exploited_trial_replaces_the_epochs_it_reports_again(tmp_path):
    sink = make_sink(tmp_path)
    a, b = FakeTrial("a", 0.01), FakeTrial("b", 1e-6)
    for t in (a, b):
        sink.on_trial_start(0, [], t)
    for epoch in (1, 2, 3):
        report(sink, a, epoch, 0.3 * epoch)
        report(sink, b, epoch, 0.1)
    # b continues from a's checkpoint of epoch 2 with a's (perturbed) config: it reports epoch 3 again, then 4
    b.config = {"training.lr": 0.012}
    report(sink, b, 3, 0.88, donor="a")
    report(sink, b, 4, 0.9)
    report(sink, a, 4, 0.95)
    for t in (a, b):
        sink.on_trial_complete(0, [], t)
    t = load(tmp_path)
    ep = t.epochs.sort_values(["trial_id", "epoch"])
    assert not ep.duplicated(["trial_id", "epoch"]).any()
    rows = ep[ep["trial_id"] == "b"].set_index("epoch")
    assert rows["val_acc"].tolist() == [0.1, 0.1, 0.88, 0.9]          # the later epoch 3 replaced the earlier
    assert rows["exploited_from"].fillna("").tolist() == ["", "", "a", ""]
    trials = t.trials.set_index("trial_id")
    assert trials.loc["b", "config.training.lr"] == 0.012 and trials.loc["b", "epochs_run"] == 4
    assert trials.loc["b", "best_val_acc"] == 0.9


def test_a_column_first_reported_in_a_later_row_is_kept(tmp_path):
    path = str(tmp_path / "part.parquet")
    write_part(path, [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.6, "test_acc": 0.55}])
    assert read_part(path) == [{"epoch": 1, "val_acc": 0.5, "test_acc": None},
                               {"epoch": 2, "val_acc": 0.6, "test_acc": 0.55}]


def test_heterogeneous_rows_through_the_sink_read_back_with_every_column(tmp_path):
    # each epoch reports a different set of keys (the test split at best epochs only, a metric of one epoch, a
    # string column late): every key of every row comes back, missing ones empty, types kept
    sink = make_sink(tmp_path)
    t = FakeTrial("a", 0.01)
    sink.on_trial_start(0, [], t)
    reported = [{"epoch": 1, "val_acc": 0.5, "time_total_s": 1.0},
                {"epoch": 2, "val_acc": 0.7, "time_total_s": 2.0, "test_acc": 0.66, "test_macro_f1": 0.6},
                {"epoch": 3, "val_acc": 0.6, "time_total_s": 3.0, "val_top5": 0.99},
                {"epoch": 4, "val_acc": 0.8, "time_total_s": 4.0, "test_acc": 0.77, "exploited_from": "b"}]
    for row in reported:
        sink.on_trial_result(0, [], t, row)
    sink.on_trial_complete(0, [], t)
    epochs = load(tmp_path).epochs.set_index("epoch").sort_index()
    for row in reported:
        for key, value in row.items():
            if key != "epoch":
                assert epochs.loc[row["epoch"], key] == value, (row["epoch"], key)
    assert epochs["test_acc"].isna().tolist() == [True, False, True, False]
    assert epochs.loc[[1, 2, 4], "val_top5"].isna().all() and epochs["test_macro_f1"].notna().sum() == 1
