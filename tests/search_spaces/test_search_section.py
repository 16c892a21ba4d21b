"""``search.algorithm`` and ``search.scheduler``: every registered name, its options, its errors (no training,
no Ray). The names come from the registries (orchestrator.searchers / orchestrator.schedulers)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.schedulers import SCHEDULERS, HyperBandSpec, MedianSpec, PbtSpec
from orchestrator.searchers import SEARCHERS
from search_spaces import SchedulerSpec, study_from_dict
from trainables.errors import ConfigError


def study(search=None, training=None, model=None, **top):
    tree = {"name": "s", "data": {"name": "digits"},
            "model": {"arch": "scratch_cnn", **(model or {})},
            "training": {"epochs": 4, "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                         "weight_decay": {"uniform": [0.0, 0.1]}, **(training or {})},
            "search": search or {}, **top}
    return study_from_dict(tree)


def test_every_name_has_a_one_line_description():
    assert SEARCHERS.names() == ["cmaes", "grid", "optuna", "qmc", "random"]
    assert SCHEDULERS.names() == ["asha", "hyperband", "median", "none", "pbt"]
    for reg in (SEARCHERS, SCHEDULERS):
        for name in reg.names():
            about = reg.describe(name)
            assert about and "\n" not in about and about == reg.get(name).description, name


@pytest.mark.parametrize("raw, expected", [
    ("none", None), ({"type": "none"}, None), (None, None),
    ("asha", SchedulerSpec()), ({"grace_period": 2}, SchedulerSpec(grace_period=2)),
    ({"type": "asha", "grace_period": 2, "reduction_factor": 3, "max_t": 4, "brackets": 2},
     SchedulerSpec(grace_period=2, reduction_factor=3.0, max_t=4, brackets=2)),
    ("hyperband", HyperBandSpec()), ({"type": "hyperband", "max_t": 3, "reduction_factor": 2},
                                     HyperBandSpec(max_t=3, reduction_factor=2.0)),
    ("median", MedianSpec()), ({"type": "median", "grace_period": 2, "min_samples_required": 1},
                               MedianSpec(grace_period=2, min_samples_required=1)),
])
def test_scheduler_forms_and_options(raw, expected):
    s = study({"scheduler": raw, "max_concurrent": None})
    assert s.search.scheduler == expected
    assert study_from_dict(s.to_dict()) == s
    assert study_from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict(), sort_keys=False))) == s


def test_pbt_options_and_round_trip():
    s = study({"num_samples": 4, "scheduler": {"type": "pbt", "perturbation_interval": 2, "quantile": 0.5,
                                                "resample_probability": 0.0}})
    assert s.search.scheduler == PbtSpec(perturbation_interval=2, quantile=0.5, resample_probability=0.0)
    assert study({"num_samples": 2, "scheduler": "pbt"}).search.scheduler == PbtSpec()
    assert study_from_dict(s.to_dict()) == s


@pytest.mark.parametrize("algorithm", ["random", "optuna", "cmaes", "qmc"])
def test_sampling_algorithms_accept_ranges(algorithm):
    s = study({"algorithm": algorithm, "num_samples": 5})
    assert s.search.algorithm == algorithm and study_from_dict(s.to_dict()) == s


def test_grid_accepts_choices_grids_and_seeds():
    s = study({"algorithm": "grid"}, training={"lr": {"grid": [0.1, 0.01]}, "weight_decay": {"choice": [0.0, 0.1]}},
              seeds=3)
    assert s.search.algorithm == "grid" and s.search.num_samples == 1


BAD = [
    # search.algorithm
    ({"algorithm": "bayes"}, {}, r"search\.algorithm: unknown name 'bayes'"),
    ({"algorithm": "gird"}, {}, r"search\.algorithm: unknown name 'gird' \(did you mean: grid\?\)"),
    ({"algorithm": ["grid"]}, {}, r"search\.algorithm: expected str, got \['grid'\]"),
    ({"algorithm": "grid"}, {}, r"training\.lr: search\.algorithm grid cannot enumerate a loguniform range; use a "
                                r"choice or grid list, or algorithm random"),
    ({"algorithm": "grid", "num_samples": 2}, {"lr": {"grid": [0.1, 0.01]}, "weight_decay": {"choice": [0.0, 0.1]}},
     r"search\.num_samples: grid runs each of its 4 trials once; num_samples 2 would repeat them \(use seeds: 2"),
    ({"algorithm": "grid"}, {"lr": 0.1, "weight_decay": {"quniform": [0.0, 0.1, 0.01]}},
     r"training\.weight_decay: search\.algorithm grid cannot enumerate a quniform range"),
    ({"algorithm": "cmaes"}, {"weight_decay": 0.0},
     r"search\.algorithm: cmaes needs at least two numeric ranges without when .*got 1: training\.lr; use optuna"),
    ({"algorithm": "qmc"}, {"lr": {"grid": [0.1, 0.01]}},
     r"search\.algorithm: qmc cannot sample grid domains \(training\.lr\); use choice"),
    # search.scheduler
    ({"scheduler": "hyperbnd"}, {}, r"search\.scheduler: unknown name 'hyperbnd' \(did you mean: hyperband\?\)"),
    ({"scheduler": {"type": "meidan"}}, {}, r"search\.scheduler: unknown name 'meidan' \(did you mean: median\?\)"),
    ({"scheduler": {"type": 3}}, {}, r"search\.scheduler\.type: expected str, got 3"),
    ({"scheduler": 3}, {}, r"search\.scheduler: expected a mapping, got 3"),
    ({"scheduler": {"type": "none", "grace_period": 1}}, {}, r"search\.scheduler\.grace_period: unknown key"),
    ({"scheduler": {"type": "asha", "grace_period": "two"}}, {},
     r"search\.scheduler\.grace_period: expected int, got 'two'"),
    ({"scheduler": {"type": "hyperband", "grace_period": 1}}, {},
     r"search\.scheduler\.grace_period: unknown key \(valid keys: type, max_t, reduction_factor\)"),
    ({"scheduler": {"type": "hyperband", "reduction_factor": 1}}, {},
     r"search\.scheduler\.reduction_factor: must be > 1, got 1"),
    ({"scheduler": {"type": "hyperband", "max_t": 0}}, {}, r"search\.scheduler\.max_t: must be >= 1, got 0"),
    ({"scheduler": "hyperband", "max_concurrent": 2}, {},
     r"search\.max_concurrent: 2 is below the 3 trials hyperband needs live at once \(its largest bracket"),
    ({"scheduler": {"type": "median", "grace_period": 5}}, {},
     r"search\.scheduler\.grace_period: 5 is larger than training\.epochs 4"),
    ({"scheduler": {"type": "median", "min_samples_required": 0}}, {},
     r"search\.scheduler\.min_samples_required: must be >= 1, got 0"),
    ({"scheduler": {"type": "median", "grace": 1}}, {},
     r"search\.scheduler\.grace: unknown key \(did you mean: grace_period\?\)"),
    ({"scheduler": {"type": "pbt", "quantile": 0.6}, "num_samples": 4}, {},
     r"search\.scheduler\.quantile: must be <= 0\.5"),
    ({"scheduler": {"type": "pbt", "quantile": 0}, "num_samples": 4}, {}, r"search\.scheduler\.quantile: must be > 0"),
    ({"scheduler": {"type": "pbt", "resample_probability": 2}, "num_samples": 4}, {},
     r"search\.scheduler\.resample_probability: must be <= 1, got 2"),
    ({"scheduler": {"type": "pbt", "perturbation_interval": "one"}, "num_samples": 4}, {},
     r"search\.scheduler\.perturbation_interval: expected int, got 'one'"),
    ({"scheduler": {"type": "pbt", "perturbation_interval": 4}, "num_samples": 4}, {},
     r"search\.scheduler\.perturbation_interval: 4 epochs is not below training\.epochs 4: pbt would never exploit"),
    ({"scheduler": {"type": "pbt", "perturbation_interval": 3}, "num_samples": 4}, {"checkpoint_every": 2},
     r"search\.scheduler\.perturbation_interval: 3 is not a multiple of training\.checkpoint_every 2"),
    ({"scheduler": "pbt"}, {}, r"search\.scheduler: pbt needs a population of at least 2 trials"),
    ({"scheduler": "pbt", "num_samples": 4, "max_concurrent": 2}, {},
     r"search\.max_concurrent: 2 is below the 4 trials pbt needs live at once \(its whole population"),
    ({"scheduler": "pbt", "num_samples": 4, "algorithm": "optuna"}, {},
     r"search\.scheduler: pbt chooses the configurations itself and cannot follow search\.algorithm optuna; "
     r"use random"),
    ({"scheduler": "pbt", "num_samples": 4}, {"lr": 0.01, "weight_decay": 0.0, "epochs": {"choice": [3, 4]}},
     r"search\.scheduler: pbt needs a numeric search domain to mutate"),
    ({"scheduler": "pbt", "num_samples": 4}, {"lr": {"grid": [0.1, 0.01]}, "weight_decay": 0.0},
     r"search\.scheduler: pbt needs a numeric search domain to mutate"),    # grid axes are not mutated
]


@pytest.mark.parametrize("search, training, message", BAD, ids=[f"{i}-{b[2][:30]}" for i, b in enumerate(BAD)])
def test_each_mistake_is_one_line_naming_the_key(search, training, message):
    with pytest.raises(ConfigError) as info:
        study(search, training)
    text = str(info.value)
    assert "\n" not in text and re.match(message, text), text


def test_pbt_refuses_data_parallel_trials():
    with pytest.raises(ConfigError, match=r"^search\.scheduler: pbt restarts trials from Tune checkpoints, which "
                                          r"data-parallel trials \(resources\.workers_per_trial: 2\)"):
        study({"scheduler": "pbt", "num_samples": 2}, resources={"workers_per_trial": 2})


def test_asha_checks_its_grace_period_against_the_epochs():
    with pytest.raises(ConfigError, match=r"^search\.scheduler\.grace_period: 5 is larger than max_t 4 "):
        study({"scheduler": {"grace_period": 5}})
    study({"scheduler": {"grace_period": 5, "max_t": 6}})


def test_validation_imports_neither_ray_nor_torch():
    code = ("import sys; from search_spaces import study_from_dict; "
            "tree = {'name': 'x', 'training': {'epochs': 4, 'lr': {'loguniform': [0.0001, 0.01]}, "
            "'weight_decay': {'uniform': [0, 0.1]}}}; "
            "[study_from_dict({**tree, 'search': s}) for s in ({'algorithm': 'cmaes'}, "
            "{'algorithm': 'qmc', 'scheduler': 'hyperband'}, {'num_samples': 2, 'scheduler': 'pbt'}, "
            "{'scheduler': 'median'})]; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'optuna')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_in_both_forms(name):
    """``scheduler: NAME`` and ``scheduler: {type: NAME}`` (the README's mapping form) mean the same."""
    search = {"num_samples": 4}  # pbt needs a population
    assert study({**search, "scheduler": name}).search.scheduler == \
        study({**search, "scheduler": {"type": name}}).search.scheduler


def test_every_scheduler_form_the_readme_shows_is_accepted():
    forms = re.findall(r"^\s*scheduler: (\{.*?\}|\w+)", README.read_text(), re.M)
    forms += [f"{{type: {m}}}" for m in re.findall(r"`(\w+)`", README.read_text().split(
        "Schedulers, counted in epochs", 1)[1].split("\n\n", 1)[0]) if m in SCHEDULERS.names()]
    assert len(forms) >= 6, forms
    for form in forms:
        study({"num_samples": 4, "scheduler": yaml.safe_load(form)})  # raises ConfigError when refused
