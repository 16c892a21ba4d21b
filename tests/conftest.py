"""Shared test setup: offline hub, few threads, small shared fixtures."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the frozen-feature and decoded caches of every test (and of the Ray workers they start) live in fresh folders,
# never the user's
# (once per test session: test modules, and the processes they spawn, import this file again as tests.conftest)
if not os.environ.get("TLSWEEP_TEST_SESSION"):
    os.environ["TLSWEEP_TEST_SESSION"] = "1"
    os.environ["TLSWEEP_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="tlsweep-test-features-")
    atexit.register(shutil.rmtree, os.environ["TLSWEEP_FEATURE_CACHE"], True)
    os.environ["TLSWEEP_DECODED_CACHE"] = tempfile.mkdtemp(prefix="tlsweep-test-decoded-")  # trainables.decoded_cache
    atexit.register(shutil.rmtree, os.environ["TLSWEEP_DECODED_CACHE"], True)

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


class FakeTrial:
    """What the Parquet sink reads of a Tune trial, for driving it with fake results (no Ray)."""

    def __init__(self, tid: str, lr: float):
        self.trial_id, self.config = tid, {"training.lr": lr}
        self.placement_group_factory = None

    def get_error(self):
        return None


@pytest.fixture
def tiny():
    return tiny_config


class Interrupted(Exception):
    """Raised from ``report`` to stop a training run after an epoch, as a killed trial would."""


def train_until(train, config, epoch: int, checkpoints) -> None:
    """Run ``train(config, report, checkpoints)`` and interrupt it once epoch ``epoch`` is reported."""
    def report(m):
        if m["epoch"] == epoch:
            raise Interrupted
    with pytest.raises(Interrupted):
        train(config, report, checkpoints)


@pytest.fixture(scope="session")
def _ray_teardown():
    import ray
    yield
    ray.shutdown()


@pytest.fixture
def ray_session(_ray_teardown):
    """One local Ray (2 CPUs, no dashboard) shared by the tests, started on first use and shut down at the end.

    Tests that need another cluster (tests/orchestrator/test_multinode.py) shut it down; the next test that
    asks for this fixture starts it again.
    """
    import ray
    if not ray.is_initialized():
        # address="local": a Ray of its own, even while another `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


def tiny_study(name: str, **overrides) -> dict:
    """A study dict of tiny digits trials (16 px, 2-layer CNN): a few seconds per trial."""
    study = {"name": name, "task": "classification",
             "data": {"name": "digits", "image_size": 16},
             "model": {"arch": "scratch_cnn", "conv_layers": 2, "first_layer_filters": 8, "dense_units": 32},
             "training": {"epochs": 2, "batch_size": 128, "lr": 0.003},
             "search": {"algorithm": "grid", "metric": "val_acc", "mode": "max", "max_concurrent": 2,
                        "scheduler": "none"},
             "resources": {"cpu": 1, "gpu": 0, "max_failures": 0, "keep": 1}, "seeds": 1}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(study.get(key), dict):
            study[key].update(value)
        else:
            study[key] = value
    return study
