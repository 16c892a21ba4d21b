"""Segmentation metrics against numbers worked out by hand, with the ignore index and an absent class."""
import math

import pytest
import torch

from trainables.segmentation.metrics import ConfusionMeter, confusion_matrix, per_class_table, segmentation_metrics

# 4 classes, ignore 255; class 3 is in neither the target nor the prediction.
TARGET = torch.tensor([[0, 0, 1, 1],
                       [0, 2, 2, 255]])
PREDS = torch.tensor([[0, 1, 1, 1],
                      [0, 2, 0, 3]])   # the last pixel predicts 3 but its target is ignored: it counts nowhere
# Kept pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (0,0) (2,2) (2,0)
# confusion (rows true, cols pred):
#   0: [2, 1, 0, 0]   1: [0, 2, 0, 0]   2: [1, 0, 1, 0]   3: [0, 0, 0, 0]
CONF = [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_confusion_matrix_leaves_out_ignored_pixels():
    assert confusion_matrix(PREDS, TARGET, 4, 255).tolist() == CONF


def test_metrics_by_hand():
    m = segmentation_metrics(torch.tensor(CONF), "val_")
    # pixel accuracy: diagonal 2 + 2 + 1 = 5 of 7 kept pixels
    assert m["val_pixel_acc"] == pytest.approx(5 / 7)
    # class accuracy: 0 -> 2/3, 1 -> 2/2, 2 -> 1/2, 3 -> no pixels (NaN, left out): mean of three
    assert m["val_mean_acc"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)  # 0.7222...
    # IoU = TP / (true + predicted - TP): 0 -> 2 / (3 + 3 - 2) = 0.5; 1 -> 2 / (2 + 3 - 2) = 2/3;
    # 2 -> 1 / (2 + 1 - 1) = 0.5; 3 -> 0/0 (absent from both: NaN, left out of the mean)
    assert m["val_miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)  # 0.5556
    # Dice = 2 TP / (true + predicted): 0 -> 4/6, 1 -> 4/5, 2 -> 2/3; mean over the three defined classes
    assert m["val_dice"] == pytest.approx((4 / 6 + 4 / 5 + 2 / 3) / 3)  # 0.7111


def test_per_class_table_marks_the_absent_class_nan():
    table, confusion = per_class_table(torch.tensor(CONF), ["a", "b", "c", "d"])
    assert table["class_name"] == ["a", "b", "c", "d"] and confusion == CONF
    assert table["iou"][:3] == pytest.approx([0.5, 2 / 3, 0.5]) and math.isnan(table["iou"][3])
    assert table["accuracy"][:3] == pytest.approx([2 / 3, 1.0, 0.5]) and math.isnan(table["accuracy"][3])
    assert table["support"] == [3, 2, 2, 0]


def test_predicted_but_absent_class_counts_as_zero_iou():
    # target all class 0; predictions: 3 x class 0, 1 x class 1
    # IoU 0 = 3 / (4 + 3 - 3) = 0.75; IoU 1 = 0 / (0 + 1 - 0) = 0 (counts); mIoU = 0.375
    m = segmentation_metrics(confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]), 2))
    assert m["miou"] == pytest.approx(0.375)
    # binary Dice is the foreground's: 2 * 0 / (0 + 1) = 0
    assert m["dice"] == 0.0
    assert m["mean_acc"] == pytest.approx(0.75)  # only class 0 has target pixels: 3/4


def test_binary_dice_is_the_foreground_dice():
    # target [1, 1, 0, 0], pred [1, 0, 0, 0]: foreground TP 1, true 2, predicted 1 -> 2 / 3
    m = segmentation_metrics(confusion_matrix(torch.tensor([1, 0, 0, 0]), torch.tensor([1, 1, 0, 0]), 2))
    assert m["dice"] == pytest.approx(2 / 3)
    # IoU background: 2 / (2 + 3 - 2) = 2/3; foreground: 1 / (2 + 1 - 1) = 1/2
    assert m["miou"] == pytest.approx((2 / 3 + 0.5) / 2)


def test_meter_accumulates_batches_from_logits():
    meter = ConfusionMeter(4, 255)
    for row in range(2):  # two batches of one row each, predictions given as one-hot logits
        logits = torch.nn.functional.one_hot(PREDS[row:row + 1], 4).permute(0, 2, 1).float().unsqueeze(2)
        meter.update(logits, TARGET[row:row + 1].unsqueeze(1))
    assert meter.matrix.tolist() == CONF
