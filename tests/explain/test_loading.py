"""Finding and loading a trial's model: best / by id / by checkpoint path, and clear errors when it is missing."""
import shutil
import subprocess
import sys

import pytest

from analysis.load import load
from explain.loading import best_per_configuration, load_checkpoint, load_trial, resolve_checkpoint
from trainables.errors import ConfigError, DataError


def test_best_is_the_best_finished_trial_and_reproduces_its_val_acc(small_study):
    trials = load(small_study).trials
    best = trials.sort_values(["best_val_acc", "trial_id"], ascending=[False, True]).iloc[0]
    tm = load_trial(small_study, "best")
    assert tm.trial_id == best["trial_id"]
    assert tm.checkpoint.name == "state.pt" and tm.checkpoint.parent.name.startswith("checkpoint_")
    assert tm.image_size == 32 and tm.class_names == ["0", "1", "2", "3", "4"]
    # the loaded weights give the accuracy the trial reported for its checkpoint's epoch
    from trainables.data import load_raw, prepare
    val = prepare(load_raw(tm.config.data), tm.config.data, tm.image_size).splits["val"]
    acc = (tm.probabilities(val.images).argmax(1) == val.labels).float().mean().item()
    assert acc == pytest.approx(tm.metrics["val_acc"], abs=1e-6)


def test_one_best_trial_per_architecture_and_strategy(small_study):
    pairs = best_per_configuration(small_study)
    assert sorted(label for _, label in pairs) == ["resnet18 / full", "resnet18 / linear_probe",
                                                   "scratch_cnn / full", "scratch_cnn / linear_probe"]


def test_checkpoint_by_file_or_folder(small_study, quadrant_model):
    tm = load_trial(small_study, "best")
    assert resolve_checkpoint(tm.checkpoint.parent) == tm.checkpoint        # checkpoint_00000k/
    assert resolve_checkpoint(tm.checkpoint.parent.parent) == tm.checkpoint  # the trial's folder: newest
    standalone = resolve_checkpoint(quadrant_model.checkpoint)              # tlsweep train --checkpoint-dir
    assert standalone.name == "ckpt-0008.pt"
    assert load_checkpoint(standalone).class_names == ["bottom_left", "bottom_right", "top_left", "top_right"]


def test_training_keys_of_another_version_do_not_matter(quadrant_model, tmp_path):
    import torch
    state = torch.load(resolve_checkpoint(quadrant_model.checkpoint), weights_only=True)
    state["config"]["training"]["from_a_newer_version"] = 1
    torch.save(state, tmp_path / "newer.pt")
    assert load_checkpoint(tmp_path / "newer.pt").config.model.kernel_size == 5


def test_missing_checkpoints_and_trials_are_clear_errors(small_study, tmp_path):
    with pytest.raises(DataError, match=r"nowhere.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(DataError, match=r"empty: no checkpoint in this folder"):
        (tmp_path / "empty").mkdir()
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"junk.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    import torch
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match=r"plain.pt: not a tlsweep checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"config": {"task": "segmentation"}, "model": {}}, tmp_path / "seg.pt")
    with pytest.raises(ConfigError, match=r"seg.pt: a segmentation trial; .* handle classification trials"):
        load_checkpoint(tmp_path / "seg.pt")
    with pytest.raises(ConfigError, match=r"--trial: no trial 'nope'"):
        load_trial(small_study, "nope")
    # results copied without the trial folders: the tables say which trial, the checkpoint is not there
    copy = tmp_path / "copied"
    shutil.copytree(small_study / "results", copy / "results")
    shutil.copy(small_study / "study.yaml", copy / "study.yaml")
    trial = load(small_study).trials["trial_id"].iloc[0]
    with pytest.raises(DataError, match=rf"no checkpoint of trial {trial}"):
        load_trial(copy, trial)


def test_explain_runs_without_ray():
    code = ("import sys, explain.study, explain.predict, explain.methods\n"
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
