"""The sink records the best epoch the trial reported (its objective decided it, trainables.loop), not its own."""
import pyarrow.parquet as pq

from orchestrator.sink import ParquetSink


class FakeTrial:
    trial_id, config, placement_group_factory = "t00001", {}, None

    def get_error(self):
        return None


def view(config):
    return {"training": {"epochs": 3}, "seed": 0}, {}


def trials_row(tmp_path, results: list[dict]) -> dict:
    sink = ParquetSink(str(tmp_path / "results"), "best", view, lambda nested: 3, metric="val_loss", mode="min")
    sink.setup()
    trial = FakeTrial()
    sink.on_trial_start(0, [], trial)
    for r in results:
        sink.on_trial_result(0, [], trial, r)
    sink.on_trial_complete(0, [], trial)
    return pq.read_table(tmp_path / "results" / "trials" / "t00001.parquet").to_pylist()[0]


def test_the_reported_best_epoch_is_recorded(tmp_path):
    # the trial's objective chose epoch 2 (e.g. a tie broken towards the earlier epoch, or a restored trial whose
    # best weights came from before its last epochs); the sink must not re-decide it from val_loss
    rows = [{"epoch": 1, "val_loss": 0.9, "val_acc": 0.5, "best_epoch": 1},
            {"epoch": 2, "val_loss": 0.4, "val_acc": 0.7, "best_epoch": 2},
            {"epoch": 3, "val_loss": 0.4, "val_acc": 0.8, "best_epoch": 2}]
    row = trials_row(tmp_path, rows)
    assert row["best_epoch"] == 2 and row["best_val_acc"] == 0.7 and row["last_val_acc"] == 0.8


def test_rows_without_a_reported_best_epoch_are_scored_by_the_study_metric(tmp_path):
    rows = [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.3}, {"epoch": 3, "val_loss": 0.5}]
    assert trials_row(tmp_path, rows)["best_epoch"] == 2
