"""Shared test setup: offline hub, few threads, small shared fixtures."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def tiny_config(**sections) -> dict:
    """A digits trial at 16 px with a 2-layer scratch CNN: a few seconds per epoch on CPU."""
    cfg = {"data": {"name": "digits", "image_size": 16},
           "model": {"arch": "scratch_cnn", "conv_layers": 2, "first_layer_filters": 8, "dense_units": 32},
           "training": {"epochs": 2, "batch_size": 64, "lr": 3e-3}, "seed": 0}
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def tiny():
    return tiny_config
