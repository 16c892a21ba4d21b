"""The sink's trials row carries the frozen share of the backbone (``frozen_fraction``) of the last epoch."""
from analysis.load import load
from orchestrator.sink import ParquetSink


class FakeTrial:
    def __init__(self, tid: str):
        self.trial_id, self.config = tid, {}
        self.placement_group_factory = None

    def get_error(self):
        return None


def test_trials_row_has_the_last_epochs_frozen_fraction(tmp_path):
    sink = ParquetSink(str(tmp_path / "results"), "s", lambda c: ({"training": {"epochs": 2}, "seed": 0}, {}),
                       lambda nested: nested["training"]["epochs"])
    sink.setup()
    for tid, fractions in (("two_phase", [1.0, 0.25]), ("old", [None, None])):
        trial = FakeTrial(tid)
        sink.on_trial_start(0, [], trial)
        for epoch, f in enumerate(fractions, start=1):
            result = {"epoch": epoch, "val_acc": 0.5 - 0.1 * epoch, "time_total_s": float(epoch)}
            if f is not None:
                result["frozen_fraction"] = f
            sink.on_trial_result(0, [], trial, result)
        sink.on_trial_complete(0, [], trial)
    tables = load(tmp_path)
    trials = tables.trials.set_index("trial_id")
    assert trials.loc["two_phase", "frozen_fraction"] == 0.25  # the last phase's, not the best epoch's
    assert trials["frozen_fraction"].isna()["old"]
    assert tables.epochs.set_index(["trial_id", "epoch"]).loc[("two_phase", 1), "frozen_fraction"] == 1.0
