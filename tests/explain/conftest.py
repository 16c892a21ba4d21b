"""Two trained things the explain tests share: a CNN trained on the quadrant images (standalone, as
``tlsweep train`` does) and a small study of 4 trials run with the orchestrator under Ray."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from quadrants import write_quadrant_folder  # noqa: E402

# 2 conv layers with 5x5 kernels: the last map is 8 x 8 and each cell sees ~14 px, enough to tell how far
# the patch is from the image's edges (the only clue to its quadrant after global pooling) while keeping
# the evidence where the patch is. Deeper nets see everything from every cell and Grad-CAM blurs.
QUADRANT_TRIAL = {"model": {"arch": "scratch_cnn", "conv_layers": 2, "kernel_size": 5, "first_layer_filters": 16,
                            "dense_units": 32, "dropout": 0.0},
                  "training": {"epochs": 8, "batch_size": 32, "lr": 3e-3}, "seed": 0}


@pytest.fixture(scope="session")
def quadrant_model(tmp_path_factory):
    """A scratch CNN trained on 4 x 60 quadrant images (25 per class to validate); its checkpoint folder."""
    from trainables.checkpoint import DirCheckpoints
    from trainables.classification import train
    base = tmp_path_factory.mktemp("quadrants")
    root = write_quadrant_folder(base / "images", {"train": 60, "val": 25})
    config = {**QUADRANT_TRIAL, "data": {"name": "imagefolder", "root": str(root), "image_size": 32}}
    rows = []
    train(config, rows.append, DirCheckpoints(base / "ckpt", keep=1))
    return SimpleNamespace(root=root, checkpoint=base / "ckpt", val_acc=rows[-1]["val_acc"])


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, _ray_teardown):
    """scratch_cnn and resnet18 (no pretrained weights) x full / linear_probe on digits 0-4 at 32 px, 1 epoch."""
    import ray

    from orchestrator.tuner import run_study
    from search_spaces import study_from_dict
    from tests.conftest import tiny_study
    if not ray.is_initialized():
        # address="local": a Ray of its own, even while another `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    study = study_from_dict(tiny_study(
        "explain", data={"image_size": 32, "classes": [0, 1, 2, 3, 4], "samples_per_class": 10},
        model={"arch": {"grid": ["scratch_cnn", "resnet18"]}, "strategy": {"grid": ["full", "linear_probe"]},
               "weights": "none"},
        training={"epochs": 1, "batch_size": 32}))
    folder, grid = run_study(study, storage=str(tmp_path_factory.mktemp("studies")))
    assert not grid.errors
    return Path(folder)
