"""One objective decides "best": with scripted validation metrics, the best epoch, early stopping, the per-class
and confusion payloads, the test metrics and the weights explain / predict load all follow the same epoch."""
import hashlib

import pytest
import torch

from trainables.checkpoint import DirCheckpoints
from trainables.classification import ClassificationTask
from trainables.loop import Trainer, train
from trainables.objective import Objective
from trainables.segmentation.trainer import SegmentationTask
from trainables.tasks import Evaluation
from trainables.trial_state import best_state

# epoch:          1    2    3    4    5     6    7    8
VAL_LOSS = [0.90, 0.50, 0.70, 0.40, 0.60, 0.80, 0.85, 0.95]  # lowest at 4; then 2 worse epochs
VAL_ACC = [0.50, 0.90, 0.60, 0.70, 0.95, 0.30, 0.20, 0.10]   # highest at 2 (5 comes after patience ran out)
VAL_MIOU = [0.10, 0.30, 0.20, 0.25, 0.50, 0.10, 0.05, 0.01]  # highest at 2 (same)


def fingerprint(state: dict) -> str:
    h = hashlib.sha1()
    for k in sorted(state):
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Scripted:
    """The task's real data, model and training; its evaluation reads the script at the epoch whose weights are
    in the model (each validation pass sees a new epoch's weights), so the test split tells which weights ran."""

    script: dict = {}

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.epoch_of: dict[str, int] = {}

    def evaluate(self, inputs, split, prefix):
        fp = fingerprint(self.model.state_dict())
        if split == "val":
            self.epoch_of[fp] = len(self.epoch_of) + 1
        e = self.epoch_of.get(fp, 0)  # 0: weights of an epoch before a resume
        metrics = {f"{prefix}{k}": v[e - 1] for k, v in self.script.items()}
        metrics[f"{prefix}weights_of_epoch"] = e
        return Evaluation(metrics, lambda: {"per_class": {"class_index": [0], "class_name": ["a"], "epoch": [e]},
                                            "confusion": [[e]]})


def scripted(base: type, **script) -> type:
    return type(f"Scripted{base.__name__}", (Scripted, base), {"script": script})


CLASSIFICATION = scripted(ClassificationTask, loss=VAL_LOSS, acc=VAL_ACC)
SEGMENTATION = scripted(SegmentationTask, loss=VAL_LOSS, miou=VAL_MIOU)


def config(tiny, task: str, objective, mode, scheduler="cosine") -> dict:
    training = {"epochs": 8, "early_stop_patience": 2, "objective": objective, "objective_mode": mode,
                "scheduler": scheduler, "max_steps_per_epoch": 2}
    if task == "classification":
        return tiny(training=training, data={"test_fraction": 0.2})
    return {"task": "segmentation", "data": {"name": "shapes", "image_size": 16, "shapes_count": 24,
                                             "test_fraction": 0.2},
            "model": {"arch": "scratch_cnn", "decoder": "unet", "conv_layers": 2, "first_layer_filters": 8},
            "training": {**training, "batch_size": 8}}


CASES = [  # task, objective, mode, best epoch, last epoch run (early stopping, patience 2)
    ("classification", "val_loss", "min", 4, 6),
    ("classification", "val_acc", "max", 2, 4),
    ("classification", None, None, 2, 4),          # the task's default: val_acc, max
    ("segmentation", "val_miou", "max", 2, 4),
    ("segmentation", "val_loss", "min", 4, 6),
]


@pytest.mark.parametrize("task,objective,mode,best,last", CASES)
def test_everything_follows_the_objective(tiny, tmp_path, task, objective, mode, best, last):
    cls = CLASSIFICATION if task == "classification" else SEGMENTATION
    rows, ckpts = [], DirCheckpoints(tmp_path, keep=1)
    result = train(config(tiny, task, objective, mode), rows.append, ckpts, cls)
    metric = objective or cls.default_objective
    # the best epoch, decided once, reported with every epoch and returned
    assert result["best_epoch"] == best and result["objective"] == metric
    assert rows[-1]["best_epoch"] == best and rows[-1][f"best_{metric}"] == cls.script[metric[4:]][best - 1]
    # early stopping counts from it: patience 2 after the best epoch
    assert [r["epoch"] for r in rows] == list(range(1, last + 1))
    # the per-class table and confusion are reported at improving epochs only; the last ones are the best's
    improving = [r["epoch"] for r in rows if "per_class" in r]
    assert improving[-1] == best and all(r["per_class"]["epoch"] == [r["epoch"]] for r in rows if "per_class" in r)
    assert [r for r in rows if "confusion" in r][-1]["confusion"] == [[best]]
    # the test split is evaluated at each new best epoch with that epoch's weights (never choosing anything), so
    # the last test numbers reported are the best epoch's, whenever the trial stops
    assert [r["epoch"] for r in rows if "test_loss" in r] == improving
    assert all(r["test_weights_of_epoch"] == r["epoch"] for r in rows if "test_loss" in r)
    assert [r for r in rows if "test_confusion" in r][-1]["test_confusion"] == [[best]]
    # the checkpoint keeps the best weights next to the last ones
    state = ckpts.latest()
    assert state["best"]["epoch"] == best and state["objective"] == {"metric": metric, "mode": mode or "max"}
    if task == "classification":
        from explain.loading import load_checkpoint
        by_default = load_checkpoint(tmp_path, torch.device("cpu"))
        assert by_default.epoch == best
        assert fingerprint(by_default.model.state_dict()) == fingerprint(best_state(state))
        newest = load_checkpoint(tmp_path, torch.device("cpu"), epoch="last")
        assert newest.epoch == last
        assert fingerprint(newest.model.state_dict()) == fingerprint(state["model"])
        assert fingerprint(state["model"]) != fingerprint(best_state(state))


def test_the_plateau_schedule_follows_the_objectives_direction(tiny):
    from trainables.config import trial_config
    for objective, mode in (("val_loss", "min"), ("val_acc", "max")):
        cfg = trial_config(config(tiny, "classification", objective, None, scheduler="plateau"))
        trainer = Trainer(cfg, CLASSIFICATION)
        trainer.ensure_phase(0)
        assert trainer.objective == Objective(objective, mode)
        assert trainer.sched.sched.mode == mode


def test_an_objective_the_task_does_not_report_is_named(tiny):
    from trainables.errors import ConfigError
    with pytest.raises(ConfigError, match="training.objective: 'val_mIoU' is not reported .*val_miou"):
        train(config(tiny, "segmentation", "val_mIoU", "max"), lambda m: None)
    with pytest.raises(ConfigError, match="training.objective_mode: 'maximum'"):
        train(config(tiny, "classification", "val_acc", "maximum"), lambda m: None)


def test_resume_keeps_the_best_weights(tiny, tmp_path):
    """Killed after epoch 5 (best: 4), the resumed trial still tests epoch 4's weights."""
    cfg = config(tiny, "classification", "val_loss", "min")

    class Stop(Exception):
        pass

    def until5(m):
        if m["epoch"] == 5:
            raise Stop
    ckpts = DirCheckpoints(tmp_path, keep=2)
    with pytest.raises(Stop):
        train(cfg, until5, ckpts, CLASSIFICATION)
    first = fingerprint(best_state(ckpts.latest()))
    rows = []
    train(cfg, rows.append, ckpts, CLASSIFICATION)
    assert [r["epoch"] for r in rows] == [6]
    assert fingerprint(best_state(ckpts.latest())) == first


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_every_task_reports_the_objectives_it_offers(tiny, task):
    """trainables.tasks.OBJECTIVES (what validation accepts as search.metric) is what an epoch reports."""
    from trainables.tasks import OBJECTIVES, TASKS, task_class
    assert sorted(OBJECTIVES) == TASKS.names()
    cls = task_class(task)
    assert cls.default_objective in OBJECTIVES[task]
    rows = []
    cfg = config(tiny, task, None, None)
    cfg["training"].update(epochs=1, early_stop_patience=None)
    train(cfg, rows.append)
    offered = [m for m in OBJECTIVES[task] if m != "val_top5"]  # top-5 accuracy needs 10 classes or more
    assert [m for m in offered if m not in rows[0]] == []
