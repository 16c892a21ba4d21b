"""A study's grid axes without Ray: which domains are enumerated, their valid combinations and how many trials.

Validation (``search_spaces``) counts trials through this module, so it imports neither Ray nor torch. The axes are
the ``grid`` domains, plus every ``choice`` under ``search.algorithm: grid`` (the searcher's ``grid_kinds``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from search_spaces import Domain, Study

GRID_KEY = "_grid"   # param_space key of a grid expanded here (conditions, shuffled order)
MISSING = object()


def lookup(config: dict, base: dict, key: str) -> Any:
    """The value of dotted ``key`` for a trial: swept value first, then the study's constant."""
    if key in config:
        return config[key]
    grid = config.get(GRID_KEY)
    if isinstance(grid, dict) and key in grid:
        return grid[key]
    node: Any = base
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def condition_holds(domain: Domain, config: dict, base: dict) -> bool:
    return all(lookup(config, base, key) in tuple(allowed) for key, allowed in domain.when)


def grid_kinds(study: Study) -> tuple[str, ...]:
    """The domain kinds the study's searcher enumerates (``("grid",)``, or ``("grid", "choice")`` for grid)."""
    from orchestrator.searchers import SEARCHERS
    return SEARCHERS.get(study.search.algorithm).grid_kinds


def axes(study: Study, kinds: Sequence[str] = ()) -> list[Domain]:
    """The enumerated domains in file order, each as a ``grid`` domain.

    Example:
        >>> from search_spaces import study_from_dict
        >>> s = study_from_dict({"name": "x", "search": {"algorithm": "grid"},
        ...                      "training": {"lr": {"choice": [0.1, 0.01]}, "batch_size": {"grid": [32, 64]}}})
        >>> [(d.path, d.kind) for d in axes(s)]
        [('training.lr', 'grid'), ('training.batch_size', 'grid')]
    """
    kinds = tuple(kinds) or grid_kinds(study)
    return [dataclasses.replace(d, kind="grid") for d in study.domains if d.kind in kinds]


def combos(grids: list[Domain], base: dict) -> list[dict]:
    """Every combination of grid values whose conditions hold (conditions see earlier grid values)."""
    out: list[dict] = [{}]
    for d in grids:
        nxt = []
        for combo in out:
            if condition_holds(d, combo, base):
                nxt += [{**combo, d.path: v} for v in d.args]
            else:
                nxt.append(combo)
        out = nxt
    return out


def count(study: Study, kinds: Sequence[str] = ()) -> int:
    """Trials one sample of the study's grid makes: the valid combinations times ``seeds``."""
    return len(combos(axes(study, kinds), study.trial)) * max(1, study.seeds)


def trials(study: Study) -> int:
    """Every trial the study starts: grid combinations x seeds x ``search.num_samples``."""
    return count(study) * study.search.num_samples

