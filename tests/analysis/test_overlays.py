"""Segmentation overlays: decoded from the ``samples`` table, one column per configuration's best trial."""
import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from analysis.figures import FIGURES
from analysis.figures.overlays import IGNORE, colorize, decode_png, palette
from analysis.load import StudyTables


def png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _tables() -> StudyTables:
    rng = np.random.default_rng(0)
    trials, samples, per_class = [], [], []
    for tid, arch, strategy, miou in (("a", "unet", "linear_probe", 0.4), ("b", "unet", "full", 0.6),
                                      ("c", "unet", "full", 0.3)):
        trials.append({"study": "s", "trial_id": tid, "status": "TERMINATED", "config.model.arch": arch,
                       "config.model.strategy": strategy, "best_val_miou": miou, "val_miou": miou})
        for epoch in (1, 2):
            for i in range(3):
                target = rng.integers(0, 3, (8, 8)).astype(np.uint8)
                target[0, 0] = IGNORE
                samples.append({"study": "s", "trial_id": tid, "split": "val", "epoch": epoch, "sample_index": i,
                                "image_png": png(rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)),
                                "target_png": png(target), "pred_png": png((target + epoch) % 3)})
        per_class += [{"trial_id": tid, "split": "val", "epoch": 2, "class_index": c, "class_name": n, "iou": 0.5}
                      for c, n in enumerate(("background", "circle", "square"))]
    return StudyTables(pd.DataFrame(trials), pd.DataFrame(), pd.DataFrame(per_class), pd.DataFrame(),
                       samples=pd.DataFrame(samples))


def test_png_round_trip_and_colours():
    mask = np.array([[0, 1], [2, IGNORE]], dtype=np.uint8)
    assert (decode_png(png(mask)) == mask).all()
    rgb = colorize(mask, palette(3))
    assert rgb.shape == (2, 2, 3) and (rgb[1, 1] == 255).all()  # ignored pixels are white
    assert len({tuple(c) for c in palette(3)}) == 3


def test_overlay_figure_has_image_truth_and_one_column_per_best_configuration():
    fig = FIGURES["segmentation_overlays"].fn(_tables(), metric="val_miou", mode="max")
    axes = fig.get_axes()
    # 3 images x (image, ground truth, linear_probe's best, full's best = trial b, not c)
    assert len(axes) == 3 * 4
    titles = [ax.get_title() for ax in axes[:4]]
    assert titles[:2] == ["image", "ground truth"] and any("linear_probe" in t for t in titles)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["background", "circle", "square"]


def test_no_overlays_without_samples():
    t = _tables()
    t.samples = pd.DataFrame()
    assert FIGURES["segmentation_overlays"].fn(t) is None
