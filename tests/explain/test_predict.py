"""``tlsweep predict``: the trial's own validation predictions from image files, class names, Grad-CAM, errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.load import load
from orchestrator.cli import main
from trainables.checkpoint import read


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def val_files(small_study, tmp_path_factory):
    """The trial's own validation logits (computed by the trainer's code) and a few val images as PNG files."""
    from trainables.classification import Trainer
    from trainables.config import trial_config
    from trainables.trial_state import best_state
    trials = load(small_study).trials
    trial = trials.loc[trials["config.model.arch"] == "resnet18"].iloc[0]["trial_id"]
    from explain.loading import load_trial
    state = read(load_trial(small_study, trial).checkpoint)
    trainer = Trainer(trial_config({**state["config"], "model": {**state["config"]["model"], "weights": "none"}}))
    trainer.model.load_state_dict(best_state(state))  # predict loads the best epoch's weights by default
    logits, labels = trainer.task.predict("val")
    assert state["objective"]["metric"] == "val_acc"
    assert (logits.argmax(1) == labels).float().mean().item() == pytest.approx(state["best"]["value"])
    folder = tmp_path_factory.mktemp("val_pngs")
    images = trainer.data.splits["val"].images
    paths = []
    for i in range(0, 60, 6):
        paths.append(folder / f"val{i}.png")
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(paths[-1])
    return trial, paths, logits[0:60:6]


def test_predict_gives_the_trials_own_validation_top1(capsys, small_study, val_files):
    trial, paths, logits = val_files
    code, out, err = run_cli(capsys, "predict", small_study, *paths, "--trial", trial, "--json", "--topk", "3")
    assert code == 0, err
    result = json.loads(out)
    assert result["trial"] == trial and result["model"].startswith("resnet18")
    top1 = [p["top"][0]["class"] for p in result["predictions"]]
    assert top1 == [str(i) for i in logits.argmax(1).tolist()]
    probs = torch.softmax(logits, 1)
    for p, row in zip(result["predictions"], probs):
        assert len(p["top"]) == 3
        assert p["top"][0]["probability"] == pytest.approx(row.max().item(), abs=1e-4)


def test_predict_from_a_checkpoint_path_prints_class_names(capsys, quadrant_model):
    image = next((quadrant_model.root / "val" / "top_right").glob("*.png"))
    code, out, err = run_cli(capsys, "predict", quadrant_model.checkpoint, image, "--topk", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(image) and lines[1].split()[:2] == ["1.", "top_right"] and len(lines) == 3


def test_predict_gradcam_writes_a_png_and_prints_its_path(capsys, quadrant_model, tmp_path):
    image = next((quadrant_model.root / "val" / "bottom_left").glob("*.png"))
    code, out, err = run_cli(capsys, "predict", quadrant_model.checkpoint, image, "--gradcam", "--out", tmp_path)
    assert code == 0, err
    png = tmp_path / f"{image.stem}-gradcam.png"
    assert f"gradcam: {png}" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bad_inputs(tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    np.save(tmp_path / "four.npy", np.zeros((32, 32, 4), np.uint8))
    np.save(tmp_path / "two.npy", np.zeros((2, 32, 32), np.float32))
    return tmp_path


@pytest.mark.parametrize("name, message", [("corrupt.png", r"corrupt.png: cannot read image"),
                                           ("four.npy", r"four.npy: 4 channels; expected 1 \(grayscale\) or 3"),
                                           ("two.npy", r"two.npy: 2 channels"),
                                           ("absent.png", r"absent.png: no such image file")])
def test_bad_images_exit_2_with_one_line_naming_the_file(capsys, quadrant_model, tmp_path, name, message):
    import re
    code, out, err = run_cli(capsys, "predict", quadrant_model.checkpoint, bad_inputs(tmp_path) / name)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("tlsweep: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_missing_checkpoint_exits_2_naming_it(capsys, tmp_path):
    gone = tmp_path / "gone" / "state.pt"
    code, _, err = run_cli(capsys, "predict", gone, tmp_path / "x.png")
    assert code == 2 and err.strip() == f"tlsweep: error: {gone}: no such checkpoint or study folder"
    (tmp_path / "ckpt").mkdir()
    code, _, err = run_cli(capsys, "predict", tmp_path / "ckpt", tmp_path / "x.png")
    assert code == 2 and f"{tmp_path / 'ckpt'}: no checkpoint in this folder" in err
