"""Study files: domains, conditions, overrides, round trips, and one clear line per mistake (no training)."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search_spaces import (DOMAIN_KINDS, KNOWN_METRICS, Domain, PretrainSpec, SchedulerSpec, find_study,
                           list_studies, load_study, study_from_dict)
from search_spaces.spec import STUDY_DIR
from trainables.errors import ConfigError

GOOD = """\
name: all_kinds
description: a test study
data:
  name: digits
  image_size: {choice: [16, 24]}
model:
  arch: {grid: [scratch_cnn, resnet18]}
  strategy: {choice: [full, partial, two_phase]}
  freeze_depth: {choice: [0.25, 0.5, 0.75], when: {model.strategy: [partial, two_phase]}}
  dropout: {uniform: [0.0, 0.5]}
  dense_units: {randint: [32, 129]}
training:
  epochs: 4
  lr: {loguniform: [1e-4, 1.0e-2]}
  weight_decay: {quniform: [0.0, 0.1, 0.01]}
seed: 7
search:
  num_samples: 3
  metric: val_macro_f1
  max_concurrent: 2
  scheduler: {grace_period: 2, reduction_factor: 3}
resources: {cpu: 2, gpu: 0.5}
seeds: 2
"""


def base() -> dict:
    return yaml.safe_load(GOOD)


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_study_with_every_domain_kind_and_a_condition(tmp_path):
    s = load_study(write(tmp_path, GOOD))
    assert s.name == "all_kinds" and s.task == "classification" and s.description == "a test study"
    assert s.trial == {"data": {"name": "digits"}, "model": {}, "training": {"epochs": 4}, "seed": 7}
    kinds = {d.path: d.kind for d in s.domains}
    assert set(kinds.values()) == set(DOMAIN_KINDS)
    assert [d.path for d in s.domains] == ["data.image_size", "model.arch", "model.strategy", "model.freeze_depth",
                                           "model.dropout", "model.dense_units", "training.lr",
                                           "training.weight_decay"]
    fd = s.domains[3]
    assert fd == Domain("model.freeze_depth", "choice", (0.25, 0.5, 0.75),
                        (("model.strategy", ("partial", "two_phase")),))
    assert fd.active({"model": {"strategy": "partial"}}) and not fd.active({"model": {"strategy": "full"}})
    assert s.domains[6].args == (1e-4, 1e-2)  # YAML 1.1 reads 1e-4 as a string; studies mean a float
    assert s.domains[5].candidates() == [32, 128]
    assert s.search.metric == "val_macro_f1" and s.search.mode == "max" and s.search.max_concurrent == 2
    assert s.search.scheduler == SchedulerSpec(grace_period=2, reduction_factor=3.0)
    assert (s.resources.cpu, s.resources.gpu, s.resources.keep) == (2.0, 0.5, 2)
    assert s.seeds == 2 and s.storage == "./results" and s.pretrain is None and s.max_epochs() == 4
    assert s.source == str(tmp_path / "study.yaml")


def test_defaults_and_scheduler_forms():
    s = study_from_dict({"name": "tiny"})
    assert s.trial == {"data": {}, "model": {}, "training": {}, "seed": 0} and s.domains == []
    assert s.search.algorithm == "random" and s.search.scheduler == SchedulerSpec() and s.max_epochs() == 10
    assert study_from_dict({"name": "t", "search": {"scheduler": "none"}}).search.scheduler is None
    assert study_from_dict({"name": "t", "search": {"scheduler": "asha"}}).search.scheduler == SchedulerSpec()
    assert study_from_dict({"name": "t", "search": {"metric": "val_loss"}}).search.mode == "min"
    epochs = study_from_dict({"name": "t", "training": {"epochs": {"choice": [3, 9, 5]}}})
    assert epochs.max_epochs() == 9


def test_round_trip_through_dict_and_yaml():
    s = study_from_dict(base())
    assert study_from_dict(s.to_dict()) == s
    assert study_from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict(), sort_keys=False))) == s
    d = s.to_dict()
    assert d["model"]["freeze_depth"] == {"choice": [0.25, 0.5, 0.75],
                                          "when": {"model.strategy": ["partial", "two_phase"]}}
    assert d["search"]["scheduler"]["max_t"] is None and d["seeds"] == 2


def test_round_trip_keeps_a_seed_domain_and_no_scheduler():
    tree = {"name": "t", "model": {"arch": {"choice": ["resnet18", "vgg16"]}}, "seed": {"choice": [1, 2, 3]},
            "training": {"lr": {"choice": [0.1, 0.01], "when": {"seed": [1, 2]}}}, "search": {"scheduler": "none"}}
    s = study_from_dict(tree)
    assert "seed" not in s.trial and s.domains[1].path == "seed"
    assert study_from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict(), sort_keys=False))) == s


def test_pretrain_weights_become_a_pretrain_spec():
    tree = base()
    tree["model"]["weights"] = {"pretrain": {"data": {"name": "cifar100", "root": "./data/cifar100"},
                                             "training": {"lr": 0.01}}}
    s = study_from_dict(tree)
    assert s.trial["model"]["weights"] == "none"
    assert s.pretrain == PretrainSpec({"name": "cifar100", "root": "./data/cifar100"}, 3, {"lr": 0.01},
                                      ["scratch_cnn", "baseline_cnn"])
    assert study_from_dict(s.to_dict()) == s


def test_overrides_replace_a_domain_with_a_constant(tmp_path):
    p = write(tmp_path, GOOD)
    s = load_study(p, ["model.arch=resnet18", "model.strategy=partial", "search.num_samples=2",
                       "training.lr=1e-3", "seeds=1"])
    assert s.trial["model"] == {"arch": "resnet18", "strategy": "partial"}
    assert s.trial["training"]["lr"] == pytest.approx(1e-3)
    assert "model.arch" not in [d.path for d in s.domains] and s.search.num_samples == 2 and s.seeds == 1
    # the condition now refers to a constant, which is fine
    assert [d.when for d in s.domains if d.path == "model.freeze_depth"] == [(("model.strategy",
                                                                               ("partial", "two_phase")),)]
    with pytest.raises(ConfigError, match=r"^training\.epochs: expected int, got 'many'$"):
        load_study(p, ["training.epochs=many"])


DELETE = object()


def _set(tree: dict, dotted: str, value) -> dict:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return tree


BAD = [
    ("model.arhc", "resnet18", r"model\.arhc: unknown key \(did you mean: arch\?\)"),
    ("serach", {}, r"serach: unknown key \(did you mean: search\?\)"),
    ("search.scheduler.grace_period", "two", r"search\.scheduler\.grace_period: expected int, got 'two'"),
    ("search.scheduler.grace", 2, r"search\.scheduler\.grace: unknown key \(did you mean: .*grace_period"),
    ("search.scheduler", {"grace_period": 5, "max_t": 3},
     r"search\.scheduler\.grace_period: 5 is larger than max_t 3"),
    ("search.scheduler", {"grace_period": 5}, r"search\.scheduler\.grace_period: 5 is larger than max_t 4 "),
    ("search.scheduler", "hyperbnd", r"search\.scheduler: unknown name 'hyperbnd' \(did you mean: hyperband\?\)"),
    ("training.lr", {"loguniform": [0, 1]}, r"training\.lr: loguniform needs 0 < low < high, got \[0, 1\]"),
    ("training.lr", {"uniform": [0.1]}, r"training\.lr: uniform needs \[low, high\] numbers, got \[0\.1\]"),
    ("model.arch", {"choice": []}, r"model\.arch: choice is empty"),
    ("model.arch", {"chioce": ["resnet18"]}, r"model\.arch\.chioce: unknown domain key \(did you mean: choice\?\)"),
    ("model.arch", {"choice": ["a"], "grid": ["b"]}, r"model\.arch: a search domain needs exactly one of "),
    ("search.num_samples", {"choice": [1, 2]},
     r"search\.num_samples: search domains are only allowed in data, model, training and seed"),
    ("storage", {"grid": ["a", "b"]}, r"storage: search domains are only allowed in data, model, training and seed"),
    ("search.metric", "val_accuracy", r"search\.metric: 'val_accuracy' is not reported by trials "
                                      r"\(did you mean: val_acc\?\)"),
    ("search.mode", "max", None),  # with metric val_macro_f1: fine
    ("model.freeze_depth.when", {"model.stratgy": "partial"},
     r"model\.freeze_depth\.when: refers to model\.stratgy, which is not set before this field "
     r"\(did you mean: model\.strategy"),
    ("model.freeze_depth.when", {"training.lr": 0.1},
     r"model\.freeze_depth\.when: refers to training\.lr, which is not set before this field"),
    ("model.freeze_depth.when", {"model.strategy": "parital"},
     r"model\.freeze_depth\.when: model\.strategy can never be 'parital' .*did you mean: partial\?"),
    ("model.freeze_depth.when", {"model.dropout": 0.1}, r"model\.freeze_depth\.when: refers to model\.dropout"),
    ("search.algorithm", "optuna", r"search\.algorithm: optuna cannot sample grid domains \(model\.arch\); use choice"),
    ("search.algorithm", "bayse", r"search\.algorithm: unknown name 'bayse'"),
    ("training.epochs", {"choice": [2, "x"]}, r"training\.epochs: expected int, got 'x'"),
    ("model.freeze_depth.choice", [0.5, 1.5], r"model\.freeze_depth: must be in \[0, 1\], got 1\.5"),
    ("model.dense_units", {"uniform": [32, 64]}, r"model\.dense_units: uniform samples floats"),
    ("model.dense_units", {"randint": [32.0, 64]}, r"model\.dense_units: randint needs integer"),
    ("name", DELETE, r"name: required"),
    ("name", "my study", r"name: 'my study' names the results folder"),
    ("task", "detection", r"task: unknown name .detection. \(did you mean: segmentation\?\)"),
    ("resources.gpu", -1, r"resources\.gpu: must be >= 0, got -1"),
    ("resources.cpu", "four", r"resources\.cpu: expected a number, got 'four'"),
    ("resources.gpus", 1, r"resources\.gpus: unknown key \(did you mean: gpu"),
    ("seeds", 0, r"seeds: must be >= 1, got 0"),
    ("seed", {"randint": [0, 10]}, r"seeds: cannot repeat over seeds when seed is itself a search domain"),
    ("data", "digits", r"data: expected a mapping, got 'digits'"),
    ("model.weights", {"pretrian": {}}, r"model\.weights\.pretrian: unknown key \(did you mean: pretrain\?\)"),
    ("model.weights", {"pretrain": {"data": {"nmae": "x"}}},
     r"model\.weights\.pretrain\.data\.nmae: unknown key \(did you mean: name\b"),
    ("model.weights", {"pretrain": {"data": {"name": "cifar10"}, "epoch": 2}},
     r"model\.weights\.pretrain\.epoch: unknown key \(did you mean: epochs\?\)"),
    ("model.weights", {"pretrain": {"epochs": 2}}, r"model\.weights\.pretrain\.data: required"),
]


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_each_mistake_is_one_line_naming_the_key(key, value, message):
    tree = _set(base(), key, value)
    if message is None:
        study_from_dict(tree)
        return
    with pytest.raises(ConfigError) as info:
        study_from_dict(tree)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(key.split(".")[0]) or text.startswith("seeds")
    assert re.match(message, text), text


def test_mistakes_that_need_two_keys():
    with pytest.raises(ConfigError, match=r"^seeds: optuna cannot repeat a configuration over 2 seeds"):
        study_from_dict(_set(_set(base(), "search.algorithm", "optuna"), "model.arch", {"choice": ["resnet18"]}))
    with pytest.raises(ConfigError, match=r"^search\.mode: max would select the worst trials by val_loss; use min"):
        study_from_dict(_set(_set(base(), "search.metric", "val_loss"), "search.mode", "max"))
    later = base()
    later["model"] = {"freeze_depth": {"choice": [0.5], "when": {"model.strategy": "partial"}}, "strategy": "partial"}
    with pytest.raises(ConfigError, match=r"^model\.freeze_depth\.when: refers to model\.strategy, which is not "
                                          r"set before this field$"):
        study_from_dict(later)
    with pytest.raises(ConfigError, match=r"^model\.freeze_depth\.when: data\.name: expected str, got 5$"):
        study_from_dict(_set(base(), "model.freeze_depth.when", {"data.name": 5}))


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = write(tmp_path, "name: broken\nmodel:\n  arch: [resnet18\ntraining: {}\n")
    with pytest.raises(ConfigError, match=r"line \d+: invalid YAML") as info:
        load_study(p)
    assert str(info.value).startswith(str(p)) and "\n" not in str(info.value)
    p = write(tmp_path, "name: broken\nmodel:\n  arch: resnet18\n   bad: 1\n", "indent.yaml")
    with pytest.raises(ConfigError, match=r"line 4: invalid YAML"):
        load_study(p)
    with pytest.raises(ConfigError, match=r"expected a mapping at the top level"):
        load_study(write(tmp_path, "- a\n- b\n", "list.yaml"))


def test_find_and_list_studies(tmp_path):
    names = list_studies()
    assert {"cifar100_architectures", "inaturalist_scratch_cnn", "inaturalist_freezing", "cifar10_frozen_backbones",
            "dogs_vs_cats_two_phase"} <= set(names)
    assert list_studies("inat*") == ["inaturalist_freezing", "inaturalist_scratch_cnn"]
    assert find_study("inaturalist_freezing") == STUDY_DIR / "inaturalist_freezing.yaml"
    assert find_study("inaturalist_freezing.yaml") == STUDY_DIR / "inaturalist_freezing.yaml"
    p = write(tmp_path, GOOD)
    assert find_study(str(p)) == p
    with pytest.raises(ConfigError, match=r"^inaturalist_freezin: no such study file or shipped study "
                                          r"\(did you mean: inaturalist_freezing"):
        find_study("inaturalist_freezin")
    with pytest.raises(ConfigError, match=r"shipped studies: "):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", list_studies())
def test_every_shipped_study_loads_and_round_trips(name):
    s = load_study(name)
    assert s.name == name and s.description, "a shipped study says what it needs in its description"
    assert s.search.metric in KNOWN_METRICS
    assert study_from_dict(copy.deepcopy(s.to_dict())) == s


def test_the_loader_imports_neither_torch_nor_ray():
    code = ("import sys, search_spaces; search_spaces.load_study('inaturalist_freezing'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'timm')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_the_study_objective_is_search_metric_for_its_task():
    with pytest.raises(ConfigError, match=r"^training.objective: a study's trials optimise search.metric"):
        study_from_dict({"name": "x", "training": {"objective": "val_loss"}})
    with pytest.raises(ConfigError, match=r"^search.metric: 'val_miou' is not reported by classification trials"):
        study_from_dict({"name": "x", "search": {"metric": "val_miou"}})
    s = study_from_dict({"name": "x", "task": "segmentation", "data": {"name": "shapes"},
                         "model": {"decoder": "unet"}, "search": {"metric": "val_miou"}})
    assert (s.search.metric, s.search.mode) == ("val_miou", "max")
