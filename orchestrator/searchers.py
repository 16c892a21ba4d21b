"""Search algorithms by name (``search.algorithm``): one registration each, read by validation, the tuner and
``tlsweep list``.

An entry says what it can do through properties (``define_by_run``, ``grid_kinds``, ``grid_domains``,
``continuous_domains``, ``repeats_seeds``, ``repeats_samples``) instead of callers comparing names; ``check(study)``
holds its cross-section rules and ``build(study)`` makes the Ray searcher. Ray and Optuna are imported only inside
``build`` / ``param_space``, so a study validates without them.

Example:
    >>> SEARCHERS.names()
    ['cmaes', 'grid', 'optuna', 'qmc', 'random']
    >>> SEARCHERS.get("grid").repeats_samples, SEARCHERS.get("optuna").define_by_run
    (False, True)
"""
from __future__ import annotations

import importlib.util
from typing import Optional

from trainables.errors import ConfigError
from trainables.registry import Registry

CONTINUOUS = ("uniform", "loguniform", "randint", "quniform")  # domains a list cannot hold
SEARCHERS: Registry = Registry("search.algorithm")


class Searcher:
    """The defaults: Ray's variant generator over ``orchestrator.space.param_space`` (no Ray searcher object)."""

    name = ""
    description = ""
    define_by_run = False        # a Ray Searcher suggests each trial through space.OptunaSpace; no param_space
    grid_kinds: tuple = ("grid",)  # domain kinds enumerated as grid axes (the rest are sampled)
    grid_domains = True          # may hold ``grid`` domains
    continuous_domains = True    # may hold uniform / loguniform / randint / quniform domains
    repeats_seeds = True         # ``seeds: N`` repeats each configuration over N seeds
    repeats_samples = True       # ``search.num_samples`` > 1 draws more configurations

    def check(self, study) -> None:
        """Cross-section rules (ConfigError naming the key)."""
        grids = [d.path for d in study.domains if d.kind == "grid"]
        if grids and not self.grid_domains:
            raise ConfigError(f"search.algorithm: {self.name} cannot sample grid domains ({', '.join(grids)}); "
                              f"use choice")
        if study.seeds > 1 and not self.repeats_seeds:
            raise ConfigError(f"seeds: {self.name} cannot repeat a configuration over {study.seeds} seeds; "
                              f"use seeds: 1 or algorithm random")

    def param_space(self, study) -> dict:
        from orchestrator import space
        return space.param_space(study)

    def build(self, study, live: Optional[int] = None):
        """The Ray searcher, or None for Ray's variant generator. ``live``: trials the scheduler needs live."""
        return None


class Random(Searcher):
    """Random sampling of every domain; grid domains (and seeds) as a grid, repeated num_samples times."""


class Grid(Searcher):
    """Every combination of every choice and grid domain, each with every seed, exactly once."""

    grid_kinds = ("grid", "choice")
    continuous_domains = False
    repeats_samples = False

    def check(self, study) -> None:
        super().check(study)
        for d in study.domains:
            if d.kind in CONTINUOUS:
                raise ConfigError(f"{d.path}: search.algorithm grid cannot enumerate a {d.kind} range; use a "
                                  f"choice or grid list, or algorithm random")
        n = study.search.num_samples
        if n != 1:
            from orchestrator.grid import count
            raise ConfigError(f"search.num_samples: grid runs each of its {count(study)} trials once; "
                              f"num_samples {n} would repeat them (use seeds: {n} to repeat over seeds, or "
                              f"algorithm random)")


class Optuna(Searcher):
    """Optuna's TPE sampler (seeded), define-by-run over the study's domains."""

    define_by_run = True
    grid_domains = False
    repeats_seeds = False
    needs: Optional[str] = None   # a package the sampler imports

    def check(self, study) -> None:
        super().check(study)
        if self.needs and importlib.util.find_spec(self.needs) is None:
            raise ConfigError(f"search.algorithm: {self.name} needs the {self.needs} package "
                              f"(pip install {self.needs}), or use optuna")

    def sampler(self, seed: int):
        import optuna
        return optuna.samplers.TPESampler(seed=seed)

    def param_space(self, study) -> dict:
        return {}

    def build(self, study, live: Optional[int] = None):
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        from orchestrator.space import OptunaSpace
        searcher = OptunaSearch(space=OptunaSpace(study), sampler=self.sampler(study.trial.get("seed", 0)),
                                metric=study.search.metric, mode=study.search.mode)
        # a scheduler that pauses trials needs them live at once: the limiter counts paused trials too
        return ConcurrencyLimiter(searcher, max_concurrent=max(study.search.max_concurrent or 2, live or 0))


class CmaEs(Optuna):
    """Optuna's CMA-ES sampler (seeded) over the numeric ranges; choices are sampled at random."""

    needs = "cmaes"

    def check(self, study) -> None:
        super().check(study)
        ranges = [d.path for d in study.domains if d.kind in CONTINUOUS and not d.when]
        if len(ranges) < 2:  # Optuna's CMA-ES falls back to random sampling below two dimensions
            raise ConfigError(f"search.algorithm: cmaes needs at least two numeric ranges without when "
                              f"({', '.join(CONTINUOUS)}), got {len(ranges)}{': ' + ranges[0] if ranges else ''}; "
                              f"use optuna or qmc")

    def sampler(self, seed: int):
        import optuna
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


class Qmc(Optuna):
    """Optuna's quasi-Monte Carlo sampler (scrambled Sobol, seeded): spreads trials evenly over the space."""

    def sampler(self, seed: int):
        import warnings

        import optuna
        with warnings.catch_warnings():  # "QMCSampler is experimental": it has been since Optuna 3.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)


for _name, _cls in (("random", Random), ("grid", Grid), ("optuna", Optuna), ("cmaes", CmaEs), ("qmc", Qmc)):
    _entry = _cls()
    _entry.name, _entry.description = _name, (_cls.__doc__ or "").strip().split("\n")[0]
    SEARCHERS.register(_name, _entry.description)(_entry)
