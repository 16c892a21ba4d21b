"""Checkpoints that hold only what changed from the trial's pretrained base (trainables.checkpoint_delta).

resnet18 at 16 px on a few digits, "pretrained" weights = a seeded random resnet18 saved to a file (offline).
"""
import pytest
import torch

from explain.loading import load_checkpoint
from tests.conftest import train_until
from trainables.checkpoint import DirCheckpoints, read, write_atomic
from trainables.checkpoint_delta import Base, full_weights
from trainables.classification import train
from trainables.config import ModelConfig, trial_config
from trainables.errors import DataError, WeightsError
from trainables.loop import Trainer
from trainables.models import build_model
from trainables.models.weights import read_state_dict

COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "best_val_acc", "best_epoch")


def pretrained_file(folder, seed: int) -> str:
    torch.manual_seed(seed)
    path = folder / f"resnet18-{seed}.pt"
    torch.save(build_model(ModelConfig(arch="resnet18"), 10).model.state_dict(), path)
    return f"file:{path}"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return pretrained_file(tmp_path_factory.mktemp("pretrained"), 1)


def config(weights: str, strategy: str, epochs: int = 2) -> dict:
    return {"data": {"name": "digits", "image_size": 16, "samples_per_class": 12, "augment": "none"},
            "model": {"arch": "resnet18", "weights": weights, "strategy": strategy, "freeze_depth": 0.5},
            "training": {"epochs": epochs, "batch_size": 16, "lr": 1e-2, "scheduler": "cosine",
                         "max_steps_per_epoch": 2}, "seed": 0}


def same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    diff = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k].cpu(), b[k].cpu())]
    assert not diff, diff[:5]


def run_recording(cfg: dict, checkpoints) -> tuple[list, dict, Trainer]:
    """Train all epochs; rows, each epoch's weights as reported (after its checkpoint) and the trainer."""
    trainer = Trainer(trial_config(cfg))
    rows, snaps = [], {}

    def report(m):
        rows.append(m)
        snaps[m["epoch"]] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.run(report, checkpoints)
    return rows, snaps, trainer


@pytest.mark.parametrize("strategy", ["linear_probe", "partial", "full"])
def test_resume_from_a_delta_checkpoint_is_exact(weights, strategy, tmp_path):
    cfg = config(weights, strategy)
    rows, snaps, whole = run_recording(cfg, DirCheckpoints(tmp_path / "whole", keep=5))
    state = read(tmp_path / "whole" / "ckpt-0001.pt")
    if strategy == "full":  # every tensor moved: a full checkpoint, as before
        assert "base" not in state
    else:
        assert state["base"]["keys"] and not set(state["base"]["keys"]) & set(state["model"])
        assert state["base"]["weights"] == weights
    fresh = Trainer(trial_config(cfg))  # restored: bit for bit the weights of epoch 1
    fresh.restore(state)
    same_weights(fresh.model.state_dict(), snaps[1])
    same_weights(full_weights(state, fresh.base.tensors), snaps[1])

    train_until(train, cfg, 1, DirCheckpoints(tmp_path / "cut"))
    resumed = Trainer(trial_config(cfg))
    after: list = []
    resumed.run(after.append, DirCheckpoints(tmp_path / "cut"))
    assert [r["epoch"] for r in after] == [2]
    assert {k: after[0][k] for k in COMPARED} == {k: rows[1][k] for k in COMPARED}
    same_weights(resumed.model.state_dict(), snaps[2])
    same_weights(resumed.best_model, whole.best_model)


def test_linear_probe_checkpoint_is_much_smaller_and_readers_get_full_weights(weights, tmp_path):
    cfg = config(weights, "linear_probe")
    rows, snaps, _ = run_recording(cfg, DirCheckpoints(tmp_path))
    path = tmp_path / "ckpt-0002.pt"
    state = read(path)
    assert set(state["model"]) == {"fc.weight", "fc.bias"}  # frozen BatchNorm is in eval mode: unchanged
    whole = tmp_path / "whole.pt"
    write_atomic({**{k: v for k, v in state.items() if k != "base"}, "model": snaps[2]}, whole)
    assert path.stat().st_size * 20 < whole.stat().st_size
    # explain / predict / export, and model.weights: file:<checkpoint>, see the full weights
    same_weights(load_checkpoint(path, torch.device("cpu"), epoch="last").model.state_dict(), snaps[2])
    same_weights(load_checkpoint(whole, torch.device("cpu"), epoch="last").model.state_dict(), snaps[2])
    best = max(rows, key=lambda r: r["val_acc"])["epoch"]
    same_weights(load_checkpoint(path, torch.device("cpu")).model.state_dict(), snaps[best])
    same_weights(read_state_dict(path), snaps[2])


def test_an_old_full_checkpoint_still_resumes(weights, tmp_path):
    cfg = config(weights, "linear_probe")
    rows, snaps, _ = run_recording(cfg, DirCheckpoints(tmp_path / "new", keep=5))
    state = read(tmp_path / "new" / "ckpt-0001.pt")
    old = {**{k: v for k, v in state.items() if k != "base"}, "model": snaps[1]}
    write_atomic(old, tmp_path / "old" / "ckpt-0001.pt")
    resumed = Trainer(trial_config(cfg))
    after: list = []
    resumed.run(after.append, DirCheckpoints(tmp_path / "old"))
    assert {k: after[0][k] for k in COMPARED} == {k: rows[1][k] for k in COMPARED}
    same_weights(resumed.model.state_dict(), snaps[2])


def test_another_base_is_a_clear_error_never_wrong_weights(weights, tmp_path):
    cfg = config(weights, "linear_probe", epochs=1)
    run_recording(cfg, DirCheckpoints(tmp_path / "ckpt"))
    path = tmp_path / "ckpt" / "ckpt-0001.pt"
    other = pretrained_file(tmp_path, 2)  # the "pretrained" weights changed since the checkpoint was written
    trainer = Trainer(trial_config(config(other, "linear_probe", epochs=2)))
    with pytest.raises(DataError, match=f"{path}: the .* tensors this checkpoint leaves out differ from its "
                                        "rebuilt base"):
        trainer.restore(read(path))
    state = torch.load(path, weights_only=True)
    state["config"]["model"]["weights"] = state["base"]["weights"] = other
    torch.save(state, tmp_path / "moved.pt")
    with pytest.raises(DataError, match="moved.pt: the .* tensors this checkpoint leaves out differ"):
        load_checkpoint(tmp_path / "moved.pt", torch.device("cpu"))
    with pytest.raises(WeightsError, match="moved.pt: the .* tensors this checkpoint leaves out differ"):
        read_state_dict(tmp_path / "moved.pt")
    state["base"]["weights"] = f"file:{tmp_path / 'gone.pt'}"
    torch.save(state, tmp_path / "gone.pt.ckpt")
    with pytest.raises(DataError, match=r"gone.pt.ckpt: holds only the weights that changed from its base; "
                                        r"rebuilding that base failed \(model.weights: file .*gone.pt does not exist"):
        load_checkpoint(tmp_path / "gone.pt.ckpt", torch.device("cpu"))


def test_a_random_init_is_never_left_out(tiny, tmp_path):
    train(tiny(model={"strategy": "linear_probe"}, training={"epochs": 1}), lambda m: None, DirCheckpoints(tmp_path))
    state = read(tmp_path / "ckpt-0001.pt")
    assert "base" not in state  # weights: none: the frozen random backbone is stored
    assert state["model"].keys() == build_model(ModelConfig(arch="scratch_cnn", conv_layers=2, first_layer_filters=8,
                                                            dense_units=32), 10).model.state_dict().keys()


def test_frozen_batchnorm_in_train_mode_is_stored_and_the_head_always():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.LazyLinear(2))
    net(torch.randn(2, 3, 5, 5))
    for p in net[:2].parameters():
        p.requires_grad_(False)
    base = Base.of(net, head=["3.weight", "3.bias"], weights="file:x.pt")
    assert not {"3.weight", "3.bias"} & set(base.tensors)
    net.train()(torch.randn(2, 3, 5, 5))  # no parameter moved, but the running statistics did
    model, record = base.split(net.state_dict())
    assert set(model) == {"1.running_mean", "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"}
    assert record["keys"] == ["0.bias", "0.weight", "1.bias", "1.weight"]
    same_weights(full_weights({"model": model, "base": record}, base.tensors), net.state_dict())
    model, record = Base.of(net, head=[], weights="none").split(net.state_dict())
    assert record is None and model.keys() == net.state_dict().keys()
