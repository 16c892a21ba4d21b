"""On resume the Parquet tables are the truth (orchestrator.resume), without Ray running: ASHA's rungs refilled from
the epochs table, and trials Tune's snapshot lost removed from the tables before they run again.

The driver-kill runs that prove the whole path are in tests/faults/test_random_kills.py.
"""
import json

from ray.tune.schedulers import TrialScheduler

from orchestrator import schedulers
from orchestrator.resume import History, forget_lost_trials, histories, seed_scheduler
from orchestrator.sink import list_parts, read_part, write_part
from orchestrator.storage import StudyStore
from search_spaces import study_from_dict
from tests.conftest import tiny_study

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


class Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def asha(epochs=8, grace=2, rf=2):
    study = study_from_dict(tiny_study("rungs", training={"epochs": epochs, "lr": {"choice": [0.001, 0.01]}},
                                       search={"algorithm": "random", "num_samples": 4,
                                               "scheduler": {"type": "asha", "grace_period": grace,
                                                             "reduction_factor": rf}}))
    s = schedulers.of(study).build(study)
    s.set_search_properties("val_acc", "max")
    return s


def result(epoch, acc, iteration=None):
    # ``training_iteration`` may differ from the epoch (a restored function trainable counts on its own)
    return {"epoch": epoch, "training_iteration": iteration or epoch, "val_acc": acc}


def test_a_resumed_trial_below_a_rung_cutoff_set_before_the_kill_is_stopped_there():
    s = asha()
    # before the kill: a and b finished (a kept at rung 2, stopped at 4; b ran to the end), c reached epoch 1
    s.seed({"a": History({1: .5, 2: .8, 3: .8, 4: .8}, ended_at=4),
            "b": History({e: .9 for e in range(1, 9)}, ended_at=8),
            "c": History({1: .3})})
    for tid in "abc":
        s.on_trial_add(None, Trial(tid))
    rung2 = dict(s._trial_info["c"]._rungs)[2]
    assert rung2 == {"a": .8, "b": .9}
    assert s.on_trial_result(None, Trial("c"), result(2, .6)) == STOP   # cutoff of rung 2: 0.85
    # without the tables (Ray's restore: empty rungs) the same result would have been kept
    plain = asha()
    plain.on_trial_add(None, Trial("c"))
    assert plain.on_trial_result(None, Trial("c"), result(2, .6)) == CONTINUE


def test_a_trial_resumed_mid_way_keeps_its_early_rungs_values():
    s = asha()
    s.seed({"a": History({1: .5, 2: .8, 3: .8, 4: .8, 5: .8}), "b": History({1: .1, 2: .2, 3: .3})})
    for tid in "ab":
        s.on_trial_add(None, Trial(tid))
    # b resumes from its epoch-3 checkpoint: epoch 4 is judged at rung 4 only, rung 2 keeps b's epoch-2 value
    assert s.on_trial_result(None, Trial("b"), result(4, .95, iteration=1)) == CONTINUE
    rungs = dict(s._trial_info["b"]._rungs)
    assert rungs[2]["b"] == .2 and rungs[4] == {"a": .8, "b": .95}


def test_a_trial_finished_in_the_tables_but_running_in_tunes_snapshot_stops_at_the_same_epoch():
    s = asha()
    s.seed({"a": History({1: .9, 2: .9, 3: .9, 4: .1}, ended_at=4)})
    s.on_trial_add(None, Trial("a"))
    assert s.on_trial_result(None, Trial("a"), result(3, .9)) == CONTINUE
    assert s.on_trial_result(None, Trial("a"), result(4, .1)) == STOP


def test_a_trial_last_seen_at_a_rung_is_decided_there_again():
    s = asha()
    s.seed({"a": History({1: .9, 2: .9}, ended_at=2), "b": History({1: .9, 2: .95}, ended_at=2),
            "c": History({1: .2, 2: .2})})   # killed right after its epoch-2 row: the decision is unknown
    for tid in "abc":
        s.on_trial_add(None, Trial(tid))
    assert "c" not in dict(s._trial_info["c"]._rungs)[2]
    assert s.on_trial_result(None, Trial("c"), result(2, .2)) == STOP


def write_study_tables(store: StudyStore, trials: dict) -> None:
    root = store.join("results")
    for tid, (status, accs) in trials.items():
        write_part(f"{root}/trials/{tid}.parquet", [{"trial_id": tid, "status": status}])
        write_part(f"{root}/epochs/{tid}.parquet",
                   [{"trial_id": tid, "epoch": e, "val_acc": a} for e, a in enumerate(accs, 1)])
        write_part(f"{root}/per_class/{tid}.parquet", [{"trial_id": tid, "split": "val", "epoch": 1}])


def test_trials_tunes_snapshot_lost_leave_the_tables_and_the_rest_seed_the_rungs(tmp_path):
    store = StudyStore(tmp_path)
    write_study_tables(store, {"k_00000": ("TERMINATED", [.5, .7]), "k_00001": ("RUNNING", [.4]),
                               "lost1": ("RUNNING", [.6]), "lost2": ("TERMINATED", [.2, .3])})
    assert forget_lost_trials(store, log=lambda m: None) == []   # no snapshot yet: nothing is touched
    state = {"trial_data": [[json.dumps({"trial_id": t, "config": {}}), "{}"] for t in ("k_00000", "k_00001")]}
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    for tid in ("k_00000", "lost1"):   # trial folders: the lost trial's checkpoints are named by no snapshot
        (tmp_path / f"run_trial_{tid}_0_2026-01-01_00-00-00" / "checkpoint_000000").mkdir(parents=True)
    said = []
    assert forget_lost_trials(store, log=said.append) == ["lost1", "lost2"]
    assert [p.name for p in tmp_path.glob("run_trial_*")] == ["run_trial_k_00000_0_2026-01-01_00-00-00"]
    for table in ("trials", "epochs", "per_class"):
        assert [p.rsplit("/", 1)[1] for p in list_parts(store.join("results", table))] == \
            ["k_00000.parquet", "k_00001.parquet"]
    assert "lost1, lost2" in said[0]
    h = histories(store, "val_acc", "max")
    assert h["k_00000"].metrics == {1: .5, 2: .7} and h["k_00000"].ended_at == 2 and h["k_00001"].ended_at is None
    assert histories(store, "val_acc", "min")["k_00001"].metrics == {1: -.4}
    s = asha()
    seed_scheduler(s, store, "val_acc", "max")
    s.on_trial_add(None, Trial("k_00000"))
    assert dict(s._trial_info["k_00000"]._rungs)[2] == {"k_00000": .7}


def test_an_errored_trial_resumed_to_its_end_keeps_no_old_error_and_is_not_stopped_early(tmp_path):
    from tests.orchestrator.test_sink import FakeTrial, make_sink, report
    sink = make_sink(tmp_path)
    trial = FakeTrial("a", 0.01)
    trial.get_error = lambda: RuntimeError("injected failure")
    sink.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        report(sink, trial, epoch, 0.5)
    sink.on_trial_error(0, [], trial)
    sink = make_sink(tmp_path)   # tlsweep resume: a new driver; the errored trial continues from its checkpoint
    sink.on_trial_start(0, [], trial)
    for epoch in (3, 4):
        report(sink, trial, epoch, 0.6)
    sink.on_trial_complete(0, [], trial)
    row = read_part(str(tmp_path / "results" / "trials" / "a.parquet"))[0]
    assert row["status"] == "TERMINATED" and row["error"] is None and row["failures"] == 1
    assert row["epochs_run"] == 4 and row["stopped_early"] is False



class NoController:
    """What the median rule asks of Tune when it lacks samples: no trial waiting."""

    @staticmethod
    def get_live_trials():
        return []


def median(grace=2):
    study = study_from_dict(tiny_study("median", training={"epochs": 6, "lr": {"grid": [0.001, 0.01, 0.1]}},
                                       search={"scheduler": {"type": "median", "grace_period": grace,
                                                             "min_samples_required": 2}}))
    s = schedulers.of(study).build(study)
    s.set_search_properties("val_loss", "min")
    return s


def test_the_median_rule_resumed_takes_the_median_over_the_epochs_recorded_before_the_kill():
    # before the kill: a and b finished (val_loss 0.2 and 0.3 from epoch 2 on), c reached epoch 2 at 0.9. Signed
    # histories (larger is better: -loss), as histories() reads them for mode min
    history = {"a": History({e: -.2 for e in range(1, 7)}, ended_at=6),
               "b": History({e: -.3 for e in range(1, 7)}, ended_at=6), "c": History({1: -.9, 2: -.9})}
    s, trials = median(), {tid: Trial(tid) for tid in "abc"}
    s.seed(history)
    for t in trials.values():
        s.on_trial_add(NoController, t)
    # c resumes from its epoch-2 checkpoint: epoch 3 at 0.8 is above (worse than) the median of a and b, 0.25
    assert s.on_trial_result(NoController, trials["c"], {"epoch": 3, "training_iteration": 1, "val_loss": .8}) == STOP
    assert [r["val_loss"] for r in s._results[trials["c"]]] == [.9, .9, .8]
    # Ray's restore (empty): no completed trial to compare with, so c would go on
    plain, c = median(), Trial("c")
    plain.on_trial_add(NoController, c)
    assert plain.on_trial_result(NoController, c, {"epoch": 3, "training_iteration": 1, "val_loss": .8}) == CONTINUE


def test_the_median_rule_replaces_an_epoch_reported_again():
    s, c = median(), Trial("c")
    s.seed({"c": History({1: -.9, 2: -.9, 3: -.9})})
    s.on_trial_add(NoController, c)
    s.on_trial_result(NoController, c, {"epoch": 3, "val_loss": .5})   # the checkpoint was of epoch 2
    assert [(r["training_iteration"], r["val_loss"]) for r in s._results[c]] == [(1, .9), (2, .9), (3, .5)]
