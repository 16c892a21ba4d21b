"""``tlsweep resume`` when Tune's snapshot names a checkpoint Ray has already replaced (orchestrator.resume
``repair_checkpoints``): the trial continues from its newest checkpoint on storage instead of ending ERROR with
Ray's "Could not recover from checkpoint as it does not exist on storage anymore".

A real study (subprocess, its own Ray) whose one trial errors at epoch 5 leaves a snapshot naming its epoch-4
checkpoint; deleting that folder makes the snapshot lag behind Ray's deletions, as a driver killed after two cheap
epochs past its last snapshot does.
"""
import json
import os
import shutil
import subprocess
import sys

import yaml

from analysis.load import load
from orchestrator.resume import guard_tuner_state, newest_snapshot, repair_checkpoints
from orchestrator.storage import StudyStore
from tests.conftest import tiny_study

TLSWEEP = [os.path.join(os.path.dirname(sys.executable), "tlsweep")]


def snapshot_checkpoints(folder) -> list[str]:
    from ray.tune.experiment.trial import _TrainingRunMetadata
    state = json.loads(open(newest_snapshot(StudyStore(str(folder)))).read())
    return [_TrainingRunMetadata.from_json_state(e[1]).checkpoint_manager.latest_checkpoint_result.checkpoint.path
            for e in state["trial_data"]]


def test_a_trial_whose_snapshot_checkpoint_is_gone_resumes_from_its_newest(tmp_path):
    plan = [{"at": "trial.report", "epoch": 5, "action": "raise", "error": "error"}]
    study = tiny_study("repair", training={"epochs": 6, "max_steps_per_epoch": 2},
                       resources={"max_failures": 0, "keep": 1})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    first = subprocess.run(TLSWEEP + ["run", str(path), "--storage", str(tmp_path / "out")], capture_output=True,
                           text=True, timeout=600, env={**env, "TLSWEEP_FAULTS": json.dumps(plan)})
    folder = tmp_path / "out" / "repair"
    assert first.returncode == 0, first.stderr[-3000:]       # its only trial errored after 4 epochs
    assert load(folder).trials["status"].tolist() == ["ERROR"]
    assert sorted(load(folder).epochs["epoch"]) == [1, 2, 3, 4]

    (named,) = snapshot_checkpoints(folder)
    assert named.endswith("checkpoint_000003") and os.path.isdir(named)
    shutil.rmtree(named)                                      # what Ray's num_to_keep does after a lagging snapshot
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    lines = []
    assert len(repair_checkpoints(StudyStore(str(copy)), lines.append)) == 1
    assert snapshot_checkpoints(copy)[0].endswith("checkpoint_000002") and "newest checkpoint" in lines[0]
    assert repair_checkpoints(StudyStore(str(copy)), lines.append) == []   # nothing left to repair

    out = subprocess.run(TLSWEEP + ["resume", str(folder)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "newest checkpoint on storage" in out.stdout
    t = load(folder)
    assert t.trials["status"].tolist() == ["TERMINATED"] and t.trials["error"].isna().all()
    assert sorted(t.epochs["epoch"]) == [1, 2, 3, 4, 5, 6]   # every epoch once: epochs 3 and 4 were run again


def test_a_tuner_state_cut_by_a_kill_comes_back_from_its_copy(tmp_path):
    # Tuner.restore rewrites tuner.pkl in place; a driver killed then left it empty ("EOFError: Ran out of input"
    # on every later resume, seen in tests/faults/test_random_kills.py)
    import pickle
    store, said = StudyStore(str(tmp_path)), []
    assert guard_tuner_state(store, said.append) is False              # no tuner.pkl: nothing to do
    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    assert guard_tuner_state(store, said.append) is False              # a good one: copied
    assert pickle.loads((tmp_path / "tuner.pkl.good").read_bytes()) == {"tuner": 1}
    for damaged in (b"", pickle.dumps({"tuner": 1})[:5]):
        (tmp_path / "tuner.pkl").write_bytes(damaged)
        assert guard_tuner_state(store, said.append) is True
        assert pickle.loads((tmp_path / "tuner.pkl").read_bytes()) == {"tuner": 1}
    assert len(said) == 2 and "restored from" in said[0] and not list(tmp_path.glob("*.tmp"))
