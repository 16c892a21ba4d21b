"""The search algorithm and scheduler registries build the Ray objects a study names (no Ray session started;
tiny studies that run them: test_search_runs.py)."""
import pytest
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from orchestrator import schedulers
from orchestrator.grid import GRID_KEY
from orchestrator.schedulers import KeepInDomain, bracket_sizes
from orchestrator.searchers import SEARCHERS
from orchestrator.space import count_grid, param_space
from orchestrator.tuner import build_scheduler, build_searcher, run_config, tune_config
from search_spaces import study_from_dict

RANGES = {"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "weight_decay": {"uniform": [0.0, 0.1]}}


def study(search=None, training=None, **top):
    return study_from_dict({"name": "b", "data": {"name": "digits"}, "model": {"arch": "scratch_cnn"},
                            "training": {"epochs": 6, **RANGES, **(training or {})}, "search": search or {}, **top})


def test_each_scheduler_builds_its_ray_scheduler_counting_epochs():
    asha = build_scheduler(study({"scheduler": {"grace_period": 2, "reduction_factor": 3}}))
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "training_iteration" and asha._max_t == 6
    hb = build_scheduler(study({"scheduler": {"type": "hyperband", "reduction_factor": 2}}))
    assert isinstance(hb, HyperBandScheduler) and hb._max_t_attr == 6 and hb._eta == 2
    median = build_scheduler(study({"scheduler": {"type": "median", "grace_period": 2, "min_samples_required": 1}}))
    assert isinstance(median, MedianStoppingRule) and median._grace_period == 2
    assert median._time_attr == "training_iteration" and median._min_samples_required == 1
    assert build_scheduler(study({"scheduler": "none"})) is None
    assert build_scheduler(study({"scheduler": {"type": "none"}})) is None


def test_hyperband_bracket_sizes_match_rays():
    for max_t, eta in ((3, 3), (4, 2), (6, 2), (10, 3), (81, 3), (1, 3)):
        hb = HyperBandScheduler(max_t=max_t, reduction_factor=eta)
        s_max_1 = hb._s_max_1
        ray_sizes = [hb._get_n0(s) for s in range(s_max_1) if hb._get_r0(s) > 0]
        assert bracket_sizes(max_t, eta) == ray_sizes, (max_t, eta)
    hb = study({"scheduler": "hyperband"})   # 6 epochs, reduction factor 3: brackets of 3 and 5 trials
    assert schedulers.of(hb).live(hb) == 5


def test_pbt_mutates_the_numeric_knobs_within_their_domains():
    s = study({"num_samples": 4, "scheduler": {"type": "pbt", "perturbation_interval": 2, "quantile": 0.5}},
              training={"momentum": {"choice": [0.99, 0.9]}, "batch_size": {"choice": [32, 64]}})
    pbt = build_scheduler(s)
    assert isinstance(pbt, PopulationBasedTraining)
    assert pbt._time_attr == "training_iteration" and pbt._perturbation_interval == 2
    assert pbt._quantile_fraction == 0.5
    # lr, weight_decay and momentum; not batch_size (it changes the steps per epoch under the donor's schedule)
    assert set(pbt._hyperparam_mutations) == {"training.lr", "training.weight_decay", "training.momentum"}
    assert pbt._hyperparam_mutations["training.momentum"] == [0.9, 0.99]   # sorted: PBT shifts to a neighbour
    keep = pbt._custom_explore_fn
    assert keep({"training.lr": 0.5, "training.weight_decay": -0.01, "training.momentum": 0.9}) == {
        "training.lr": 0.01, "training.weight_decay": 0.0, "training.momentum": 0.9}
    assert run_config(s, _Store()).checkpoint_config.num_to_keep == 4    # donors' checkpoints outlive the exploit
    assert tune_config(s).max_concurrent_trials is None                  # the whole population live at once


class _Store:
    fs, local = None, False   # an object store: no Optuna mirror either

    def join(self, *parts):
        return "/tmp/never-written/" + "/".join(parts)

    def tune_storage(self):
        return {"storage_path": "/tmp/never-written"}


def test_keep_in_domain_rounds_quantized_and_integer_values():
    keep = KeepInDomain({"a": ("quniform", (0.0, 0.1, 0.02)), "b": ("randint", (2, 6))})
    out = keep({"a": 0.0729, "b": 7.4})
    assert out["a"] == pytest.approx(0.08) and out["b"] == 5 and isinstance(out["b"], int)


@pytest.mark.parametrize("algorithm, sampler", [("optuna", "TPESampler"), ("cmaes", "CmaEsSampler"),
                                                ("qmc", "QMCSampler")])
def test_optuna_algorithms_build_a_seeded_define_by_run_searcher(algorithm, sampler):
    s = study({"algorithm": algorithm, "num_samples": 4, "max_concurrent": 3}, seed=5)
    searcher = build_searcher(s)
    assert isinstance(searcher, ConcurrencyLimiter) and searcher.max_concurrent == 3
    assert isinstance(searcher.searcher, OptunaSearch)
    assert type(searcher.searcher._sampler).__name__ == sampler
    assert SEARCHERS.get(algorithm).param_space(s) == {}
    # under hyperband the limiter lets a whole bracket be live (paused trials count)
    hb = study({"algorithm": algorithm, "num_samples": 4, "scheduler": "hyperband"})
    assert build_searcher(hb).max_concurrent == 5


def test_random_and_grid_use_rays_variant_generator():
    grid = study({"algorithm": "grid", "scheduler": "none"}, training={"lr": {"grid": [0.1, 0.01]},
                                                                      "weight_decay": {"choice": [0.0, 0.1, 0.2]}},
                 seeds=2)
    assert build_searcher(grid) is None and count_grid(grid) == 12
    space = param_space(grid)   # the choice is a grid axis too
    assert space["training.weight_decay"] == {"grid_search": [0.0, 0.1, 0.2]}
    assert space["training.lr"] == {"grid_search": [0.1, 0.01]} and space["seed"] == {"grid_search": [0, 1]}
    shuffled = param_space(study({"algorithm": "grid"}, training={"lr": {"grid": [0.1, 0.01]},
                                                                  "weight_decay": {"choice": [0.0, 0.1, 0.2]}}))
    combos = shuffled[GRID_KEY]["grid_search"]
    assert len(combos) == 6 and len({tuple(sorted(c.items())) for c in combos}) == 6
    rnd = study({"num_samples": 3}, training={"lr": {"grid": [0.1, 0.01]}, "weight_decay": {"choice": [0.0, 0.1]}})
    assert build_searcher(rnd) is None and "grid_search" not in str(param_space(rnd)["training.weight_decay"])
    assert count_grid(rnd) * rnd.search.num_samples == 6
