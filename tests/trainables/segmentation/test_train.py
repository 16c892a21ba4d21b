"""The segmentation loop end to end on shapes: reported keys, per-class and sample payloads, exact resume."""
import math

import numpy as np
import pytest

from tests.conftest import train_until
from trainables.checkpoint import DirCheckpoints
from trainables.errors import ConfigError
from trainables.segmentation import train
from trainables.segmentation.samples import decode_png

KEYS = {"epoch", "train_loss", "val_loss", "val_pixel_acc", "val_mean_acc", "val_miou", "val_dice", "lr",
        "trainable_params", "epoch_seconds", "best_val_miou", "best_epoch"}


def config(**training) -> dict:
    return {"task": "segmentation",
            "data": {"name": "shapes", "image_size": 32, "shapes_count": 48, "augment": "standard",
                     "test_fraction": 0.1, "sample_images": 3},
            "model": {"arch": "scratch_cnn", "decoder": "unet", "conv_layers": 3, "first_layer_filters": 8,
                      "decoder_width": 16},
            "training": {"epochs": 2, "batch_size": 8, "lr": 3e-3, **training}, "seed": 0}


@pytest.fixture(scope="module")
def uninterrupted():
    rows = []
    result = train(config(), rows.append)
    return rows, result


def test_two_epochs_report_every_key_and_payload(uninterrupted):
    rows, result = uninterrupted
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert KEYS <= set(r), KEYS - set(r)
        assert all(math.isfinite(r[k]) for k in ("train_loss", "val_loss", "val_miou", "val_pixel_acc"))
    best = rows[0]  # the first epoch always improves on nothing
    pc = best["per_class"]
    assert pc["class_name"] == ["background", "circle", "square", "triangle"]
    assert all(len(pc[k]) == 4 for k in ("class_index", "iou", "accuracy", "support"))
    assert len(best["confusion"]) == 4 and sum(map(sum, best["confusion"])) == sum(pc["support"])
    samples = best["samples"]
    assert samples["sample_index"] == [0, 1, 2]
    image, target, pred = (decode_png(samples[k][0]) for k in ("image_png", "target_png", "pred_png"))
    assert image.shape == (32, 32, 3) and target.shape == (32, 32) and pred.shape == (32, 32)
    assert set(np.unique(target)) <= {0, 1, 2, 3} and set(np.unique(pred)) <= {0, 1, 2, 3}
    last = [r for r in rows if "test_miou" in r][-1]  # the test split at each new best epoch
    assert last["epoch"] == rows[-1]["best_epoch"]
    assert {"test_miou", "test_pixel_acc", "test_loss", "test_per_class", "test_confusion"} <= set(last)
    assert result["best_val_miou"] == max(r["val_miou"] for r in rows)


def test_resume_from_epoch_one_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    full, _ = uninterrupted
    train_until(train, config(), 1, DirCheckpoints(tmp_path))
    resumed = []
    train(config(), resumed.append, DirCheckpoints(tmp_path))
    assert [r["epoch"] for r in resumed] == [2]
    for key in ("train_loss", "val_loss", "val_miou", "val_pixel_acc", "val_dice", "lr", "best_val_miou"):
        assert resumed[0][key] == pytest.approx(full[1][key], rel=1e-6, abs=1e-7), key


def test_binary_loss_on_a_multiclass_set_fails_before_training():
    with pytest.raises(ConfigError, match="training.loss: bce is for binary tasks"):
        train(config(loss="bce"), lambda m: None)
    with pytest.raises(ConfigError, match="did you mean"):
        train(config(loss="dicee"), lambda m: None)
    cfg = config()
    cfg["data"]["classes"] = [1, 2]
    with pytest.raises(ConfigError, match="data.classes: a classification option"):
        train(cfg, lambda m: None)
