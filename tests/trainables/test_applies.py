"""trainables.applies: which settings a trial reads, checked against the code that reads them."""
import dataclasses

from trainables.applies import CONDITIONS, LOCAL_ARCHS, SCRATCH_CNN_FIELDS, applicable, applies
from trainables.config import ModelConfig, TrainingConfig


def test_local_architectures_match_the_model_registry():
    from trainables.models.scratch import LOCAL_MODELS
    assert set(LOCAL_ARCHS) == set(LOCAL_MODELS)


def test_every_condition_names_a_config_field():
    fields = {f"model.{f.name}" for f in dataclasses.fields(ModelConfig)}
    fields |= {f"training.{f.name}" for f in dataclasses.fields(TrainingConfig)}
    fields |= {"data.ignore_index", "data.num_classes", "data.sample_images"}
    assert set(CONDITIONS) <= fields
    assert {f"model.{n}" for n in SCRATCH_CNN_FIELDS} <= set(CONDITIONS)


def test_settings_by_architecture_strategy_optimizer_and_task():
    resnet = {"model.arch": "resnet18", "model.strategy": "two_phase", "training.optimizer": "sgd",
              "training.scheduler": "step"}
    assert not applies("model.conv_layers", resnet) and applies("model.drop_rate", resnet)
    assert applies("model.head_epochs", resnet) and applies("model.freeze_depth", resnet)
    assert not applies("model.unfreeze_k", resnet) and applies("training.momentum", resnet)
    assert applies("training.gamma", resnet) and not applies("training.warmup_epochs", resnet)
    scratch = {"model.arch": "scratch_cnn"}   # defaults: strategy full, adamw, cosine
    assert applies("model.conv_layers", scratch) and applies("model.dropout", scratch)
    assert not applies("model.drop_rate", scratch) and not applies("model.freeze_depth", scratch)
    assert not applies("training.momentum", scratch) and applies("training.warmup_epochs", scratch)
    assert not applies("model.decoder", scratch) and applies("model.decoder", {**scratch, "task": "segmentation"})
    assert applicable({"model.arch": "hf:x", "model.drop_rate": 0.1, "training.lr": 0.1}) == {"model.arch": "hf:x",
                                                                                              "training.lr": 0.1}
