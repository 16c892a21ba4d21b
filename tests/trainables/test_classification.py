"""The classification loop: real learning on digits, resume equivalence, phases, per-class output."""
import math

import pytest
import torch

from tests.conftest import train_until
from trainables.checkpoint import DirCheckpoints
from trainables.classification import train


def test_scratch_cnn_learns_digits():
    rows = []
    cfg = {"data": {"name": "digits", "image_size": 32},
           "model": {"arch": "scratch_cnn", "conv_layers": 3},
           "training": {"epochs": 5, "lr": 3e-3, "batch_size": 64}, "seed": 0}
    result = train(cfg, rows.append)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert result["best_val_acc"] >= 0.90, rows[-1]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_report_has_the_documented_metrics(tiny):
    rows = []
    train(tiny(), rows.append)
    keys = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_macro_f1",
            "val_precision", "val_recall", "lr", "epoch_seconds", "train_images_per_s", "trainable_params"}
    for r in rows:
        assert keys <= set(r)
        assert all(math.isfinite(r[k]) for k in keys)
    best = [r for r in rows if "per_class" in r][-1]
    pc = best["per_class"]
    n_val = sum(pc["support"])
    assert len(pc["class_name"]) == 10
    assert sum(map(sum, best["confusion"])) == n_val == 359  # 20% of each digit class, rounded per class
    correct = sum(best["confusion"][i][i] for i in range(10))
    assert correct / n_val == pytest.approx(best["val_acc"])


def test_checkpoint_resume_matches_uninterrupted_run(tiny, tmp_path):
    cfg = tiny(training={"epochs": 3, "scheduler": "cosine"}, data={"augment": "standard"},
               model={"dropout": 0.3})
    full = []
    train(cfg, full.append)
    train_until(train, cfg, 2, DirCheckpoints(tmp_path))
    resumed = []
    train(cfg, resumed.append, DirCheckpoints(tmp_path))
    assert [r["epoch"] for r in resumed] == [3]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert resumed[0][key] == pytest.approx(full[2][key], rel=1e-6, abs=1e-7), key


def test_two_phase_switches_in_the_loop(tiny):
    rows = []
    cfg = tiny(model={"arch": "resnet18", "strategy": "two_phase", "head_epochs": 1, "freeze_depth": 0.5,
                      "backbone_lr_mult": 0.1},
               training={"epochs": 2, "max_steps_per_epoch": 2, "scheduler": "none", "lr": 1e-3})
    train(cfg, rows.append)
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]
    assert rows[1]["lr"] == pytest.approx(1e-3)


def test_test_split_metrics_come_from_the_best_epoch(tiny):
    rows = []
    train(tiny(data={"test_fraction": 0.2}, training={"epochs": 2}), rows.append)
    # evaluated at each new best epoch (the epochs that carry the val per-class table), so the last is the best's
    tested = [r for r in rows if "test_acc" in r]
    assert [r["epoch"] for r in tested] == [r["epoch"] for r in rows if "per_class" in r]
    last = tested[-1]
    assert last["epoch"] == rows[-1]["best_epoch"] and "test_per_class" in last
    assert sum(last["test_per_class"]["support"]) == sum(map(sum, last["test_confusion"]))


def test_early_stopping_patience(tiny):
    rows = []
    # lr so small nothing improves after the first epoch
    train(tiny(training={"epochs": 10, "lr": 1e-9, "early_stop_patience": 2, "scheduler": "none"}), rows.append)
    assert len(rows) < 10


def test_nan_loss_names_epoch_and_step(tiny):
    with pytest.raises(FloatingPointError, match=r"loss became (NaN|inf) at epoch 1, step \d+"):
        train(tiny(training={"lr": 1e30, "optimizer": "sgd", "momentum": 0.0, "scheduler": "none", "epochs": 1}),
              lambda m: None)


def test_samples_per_class_and_classes_subset(tiny):
    rows = []
    train(tiny(data={"classes": [5, 6, 7, 8, 9], "samples_per_class": 4}, training={"epochs": 1}), rows.append)
    assert rows[0]["per_class"]["class_name"] == ["5", "6", "7", "8", "9"]
    assert "val_top5" not in rows[0]  # fewer than 10 classes


def test_timm_and_torchvision_models_train_a_step(tiny):
    for arch in ("mobilenetv3_small_100", "tv:mobilenet_v2", "vit_tiny_patch16_224"):
        rows = []
        train(tiny(model={"arch": arch, "strategy": "partial", "freeze_depth": 0.5},
                   data={"image_size": 32}, training={"epochs": 1, "max_steps_per_epoch": 1}), rows.append)
        assert math.isfinite(rows[0]["val_loss"])


def test_grad_accumulation_and_clipping_run(tiny):
    rows = []
    train(tiny(training={"epochs": 1, "grad_accum": 2, "grad_clip": 1.0, "optimizer": "sgd",
                         "scheduler": "step", "label_smoothing": 0.1}), rows.append)
    assert math.isfinite(rows[0]["train_loss"])
    assert torch.get_num_threads() >= 1
