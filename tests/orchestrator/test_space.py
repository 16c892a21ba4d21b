"""The order a grid runs in: shuffled (seeded) under ASHA by default, as listed otherwise or when asked."""
import itertools

import pytest

from orchestrator.space import GRID_KEY, count_grid, param_space, resolve
from search_spaces import study_from_dict
from trainables.errors import ConfigError

ARCHS = ["scratch_cnn", "resnet18"]
LRS = [1e-4, 1e-3, 1e-2, 1e-1]


def study(seed: int = 0, **search):
    return study_from_dict({
        "name": "order", "data": {"name": "digits"},
        "model": {"arch": {"grid": ARCHS}}, "training": {"epochs": 4, "lr": {"grid": LRS}},
        "search": {"algorithm": "grid", **search}, "seed": seed})


def combos(space: dict) -> list[tuple]:
    values = space[GRID_KEY]["grid_search"]
    return [(c["model.arch"], c["training.lr"]) for c in values]


def test_under_asha_the_grid_runs_in_a_seeded_random_order():
    space = param_space(study())  # the default scheduler is ASHA
    order = combos(space)
    assert sorted(order) == sorted(itertools.product(ARCHS, LRS))  # every combination, once
    assert order != list(itertools.product(ARCHS, LRS))
    assert combos(param_space(study())) == order                  # same seed, same order
    assert combos(param_space(study(seed=3))) != order
    nested = resolve({"model": {"arch": "x"}, "training": {"lr": 0}}, {GRID_KEY: space[GRID_KEY]["grid_search"][0]})
    assert (nested["model"]["arch"], nested["training"]["lr"]) == order[0]
    assert count_grid(study()) == 8


def test_listed_order_without_a_scheduler_or_when_asked():
    for s in (study(scheduler="none"), study(grid_order="listed")):
        space = param_space(s)
        assert GRID_KEY not in space
        assert space["model.arch"] == {"grid_search": ARCHS} and space["training.lr"] == {"grid_search": LRS}
    shuffled = param_space(study(scheduler="none", grid_order="shuffled"))
    assert sorted(combos(shuffled)) == sorted(itertools.product(ARCHS, LRS))


def test_an_unknown_order_names_the_key():
    with pytest.raises(ConfigError, match=r"search\.grid_order: 'random' is not one of auto, listed, shuffled"):
        study(grid_order="random")
