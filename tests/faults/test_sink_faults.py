"""The Parquet sink under faults that need no Ray: a full disk, and a study of many trials (driver memory).

The sink is a Tune callback that runs in the driver, so these tests drive it with fake trials, as Ray's own tests
drive schedulers with fake results.
"""
import errno
import gc
import tracemalloc
from pathlib import Path

import pytest

import orchestrator.sink as sink_module
from analysis.load import load
from orchestrator.sink import ParquetSink, ResultsWriteError
from tests.conftest import FakeTrial

TRIALS = 1000
EPOCHS = 2
BOUND_PER_TRIAL = 1024   # bytes the driver may keep per finished trial (measured: well under, see the test)


def make_sink(root: Path) -> ParquetSink:
    def view(config):
        return {"training": {"lr": config["training.lr"], "epochs": EPOCHS}, "seed": 0}, {"training.lr": None}
    sink = ParquetSink(str(root / "results"), "faults", view, lambda nested: nested["training"]["epochs"])
    sink.setup()
    return sink


def run_trial(sink: ParquetSink, i: int) -> None:
    trial = FakeTrial(f"t{i:05d}", 10 ** -(i % 5))
    sink.on_trial_start(0, [], trial)
    for epoch in range(1, EPOCHS + 1):
        sink.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": 0.1 * epoch, "train_loss": 1.0 / epoch,
                                            "time_total_s": float(epoch)})
    sink.on_trial_complete(0, [], trial)


def test_driver_memory_stays_flat_over_1000_trials(tmp_path):
    sink = make_sink(tmp_path)
    tracemalloc.start()
    try:
        for i in range(100):  # warm-up: imports, caches, the first parts
            run_trial(sink, i)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100, TRIALS):
            run_trial(sink, i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = (after - before) / (TRIALS - 100)
    print(f"driver memory growth per finished trial: {growth:.1f} bytes over {TRIALS - 100} trials")
    assert growth < BOUND_PER_TRIAL
    assert not sink.epochs and not sink.trials and not sink.started, "finished trials leave memory"
    t = load(tmp_path)
    assert len(t.trials) == TRIALS and len(t.epochs) == TRIALS * EPOCHS
    assert not t.epochs.duplicated(["trial_id", "epoch"]).any()


def test_full_disk_is_a_clear_error_and_earlier_parts_stay_readable(tmp_path, monkeypatch):
    sink = make_sink(tmp_path)
    run_trial(sink, 0)
    trial = FakeTrial("t00001", 0.1)
    sink.on_trial_start(0, [], trial)
    sink.on_trial_result(0, [], trial, {"epoch": 1, "val_acc": 0.5, "time_total_s": 1.0})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(sink_module.pq, "write_table", full)
    with pytest.raises(ResultsWriteError, match=r"cannot write results to .*epochs/t00001.parquet: No space left "
                                                r"on device.*intact.*tlsweep resume"):
        sink.on_trial_result(0, [], trial, {"epoch": 2, "val_acc": 0.6, "time_total_s": 2.0})
    monkeypatch.undo()

    assert not list(tmp_path.rglob("*.tmp")), "no half-written temporary file is left"
    t = load(tmp_path)
    assert sorted(t.epochs["trial_id"]) == ["t00000", "t00000", "t00001"]   # all that was written before
    assert set(t.trials["trial_id"]) == {"t00000", "t00001"}


def test_permission_error_names_the_path(tmp_path, monkeypatch):
    sink = make_sink(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(sink_module.pq, "write_table", denied)
    with pytest.raises(ResultsWriteError, match=r"trials/t00000.parquet: Permission denied"):
        run_trial(sink, 0)
