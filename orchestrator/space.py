"""A study's search domains as Ray Tune's param_space (random / grid) or an Optuna define-by-run function.

Trial configs travel as flat dotted keys (``{"model.arch": "resnet18", "training.lr": 3e-4}``); constants stay in
the study's base trial (passed once with ``tune.with_parameters``). Conditional domains (``when``) are sampled
only when their condition holds, so no trial wastes time on a meaningless combination:
- grid domains (and every choice under ``search.algorithm: grid``: the searcher's ``grid_kinds``) with conditions
  are expanded here into one grid over the valid combinations (key ``_grid``, orchestrator.grid);
- random domains with conditions become ``tune.sample_from`` functions;
- under Optuna the define-by-run function simply skips them.
"""
from __future__ import annotations

import copy
import random
from typing import Optional

from orchestrator import grid
from orchestrator.grid import GRID_KEY, MISSING, condition_holds, lookup  # noqa: F401 - re-exported
from search_spaces import Domain, Study
from trainables.config import set_dotted


class _Tune:
    """``ray.tune``, imported on first use: :func:`resolve` serves the checks made before Ray starts."""

    def __getattr__(self, name: str):
        from ray import tune as module
        return getattr(module, name)


tune = _Tune()


def tune_domain(d: Domain):
    a = d.args
    return {"choice": lambda: tune.choice(list(a)), "grid": lambda: tune.grid_search(list(a)),
            "uniform": lambda: tune.uniform(a[0], a[1]), "loguniform": lambda: tune.loguniform(a[0], a[1]),
            "randint": lambda: tune.randint(a[0], a[1]), "quniform": lambda: tune.quniform(a[0], a[1], a[2])}[d.kind]()


def _conditional(d: Domain, base: dict):
    dom = tune_domain(d)

    def sample(spec):
        return dom.sample() if condition_holds(d, dict(spec.config), base) else None
    return tune.sample_from(sample)


def shuffled_grid(study: Study) -> bool:
    """Whether the grid's combinations run in a seeded random order (``search.grid_order``).

    Asynchronous ASHA lets the first trials to reach a rung continue, as there is nothing yet to compare them
    with; a grid listed weakest first (small models, low learning rates) is its worst case, so under a
    scheduler ``auto`` shuffles (bench/asha_vs_grid.py measures both orders).
    """
    order = study.search.grid_order
    return order == "shuffled" or (order == "auto" and study.search.scheduler is not None)


def param_space(study: Study) -> dict:
    """Ray Tune param_space for random and grid search (``seeds`` adds a grid over seeds).

    The searcher's ``grid_kinds`` are grid axes (every choice too under ``search.algorithm: grid``); the other
    domains are sampled.
    """
    base = study.trial
    space: dict = {}
    kinds = grid.grid_kinds(study)
    grids = grid.axes(study, kinds)
    if grids and shuffled_grid(study):
        combos = grid.combos(grids, base)
        random.Random(base.get("seed", 0)).shuffle(combos)
        space[GRID_KEY] = tune.grid_search(combos)
    elif any(d.when for d in grids):
        space[GRID_KEY] = tune.grid_search(grid.combos(grids, base))
    else:
        space.update({d.path: tune_domain(d) for d in grids})
    for d in study.domains:
        if d.kind not in kinds:
            space[d.path] = _conditional(d, base) if d.when else tune_domain(d)
    if study.seeds > 1:
        first = base.get("seed", 0)
        space["seed"] = tune.grid_search(list(range(first, first + study.seeds)))
    return space


class OptunaSpace:
    """Define-by-run space for OptunaSearch: conditional domains are suggested only when they apply.

    A module-level class, not a closure, so the searcher's state can be pickled for ``tlsweep resume``.
    """

    def __init__(self, study: Study):
        self.base, self.domains = study.trial, list(study.domains)

    def __call__(self, trial) -> Optional[dict]:
        values: dict = {}
        for d in self.domains:
            if not condition_holds(d, values, self.base):
                continue
            a = d.args
            if d.kind == "choice":
                values[d.path] = trial.suggest_categorical(d.path, list(a))
            elif d.kind == "uniform":
                values[d.path] = trial.suggest_float(d.path, a[0], a[1])
            elif d.kind == "loguniform":
                values[d.path] = trial.suggest_float(d.path, a[0], a[1], log=True)
            elif d.kind == "randint":
                values[d.path] = trial.suggest_int(d.path, a[0], a[1] - 1)
            elif d.kind == "quniform":
                values[d.path] = trial.suggest_float(d.path, a[0], a[1], step=a[2])
        return None


def resolve(base: dict, config: dict) -> dict:
    """The nested trial config of one trial: the study's constants with the trial's sampled values applied.

    Values of inactive conditional domains (None) keep the field's default.
    """
    trial = copy.deepcopy(base)
    for key, value in config.items():
        if key == GRID_KEY:
            for k, v in value.items():
                set_dotted(trial, k, v)
        elif value is not None:
            set_dotted(trial, key, value)
    return trial


def swept_values(study: Study, config: dict) -> dict:
    """``{dotted key: value or None}`` for every swept field of a trial (None: inactive condition)."""
    out = {d.path: None for d in study.domains}
    for key, value in config.items():
        if key == GRID_KEY:
            out.update(value)
        elif key in out:
            out[key] = value
    return out


def count_grid(study: Study) -> int:
    """Trials one sample of the grid makes (combinations x seeds): orchestrator.grid.count."""
    return grid.count(study)
