"""Realistic fake study results (docs/RESULTS.md schema) for tests, benchmarks and notebooks: no Ray, no training.

Trials sweep architecture x freezing strategy x freezing depth x learning rate (with ``scratch_cnn`` as the
from-scratch baseline); ASHA-like early stops hit the weaker configurations at rungs 1, 2, 4, ...; a few trials
error. Everything is drawn with vectorised numpy, so 10,000 trials x 50 epochs build in a few seconds.

Example:
    >>> t = synthetic_tables(n_trials=12, n_epochs=4, seeds=2)
    >>> sorted(t.trials["seed"].unique().tolist())
    [0, 1]
    >>> write_tables(t, "/tmp/fake_study")                         # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from analysis.load import TABLES, StudyTables

ARCHS = ("resnet18", "mobilenetv3_small_100", "efficientnet_b0", "convnext_tiny", "scratch_cnn")
STRATEGIES = ("linear_probe", "partial", "full", "two_phase")
SCRATCH = "scratch_cnn"
# how good each architecture is after transfer, its seconds per epoch and trainable parameters (made up, plausible)
ARCH_SKILL = {"resnet18": 0.80, "mobilenetv3_small_100": 0.74, "efficientnet_b0": 0.84, "convnext_tiny": 0.88,
              SCRATCH: 0.50}
ARCH_SECONDS = {"resnet18": 12.0, "mobilenetv3_small_100": 6.0, "efficientnet_b0": 15.0, "convnext_tiny": 30.0,
                SCRATCH: 3.0}
ARCH_PARAMS = {"resnet18": 11_180_000, "mobilenetv3_small_100": 1_520_000, "efficientnet_b0": 4_010_000,
               "convnext_tiny": 27_820_000, SCRATCH: 420_000}
# the share of backbone parameters before each stage boundary (measured: trainables.freezing.stage_sizes)
ARCH_STAGE_SHARES = {"resnet18": (0.0, 0.001, 0.014, 0.061, 0.249, 1.0),
                     "mobilenetv3_small_100": (0.0, 0.0, 0.001, 0.007, 0.091, 0.126, 0.574, 0.611, 1.0),
                     "efficientnet_b0": (0.0, 0.0, 0.001, 0.005, 0.016, 0.077, 0.213, 0.718, 1.0),
                     "convnext_tiny": (0.0, 0.0, 0.009, 0.044, 0.444, 1.0, 1.0),
                     SCRATCH: (0.0, 0.022, 0.241, 0.461, 0.681, 0.9, 1.0)}
# strategy: (skill bonus, best log10 lr, fraction of parameters that train)
STRATEGY_EFFECT = {"linear_probe": (-0.08, -2.0, 0.01), "partial": (0.02, -2.7, 0.5), "full": (0.04, -3.3, 1.0),
                   "two_phase": (0.05, -3.0, 1.0), "unfreeze_last_k": (0.01, -2.7, 0.3), None: (0.0, -2.5, 1.0)}
NODES = np.array(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], dtype=object)
NODE_IDS = np.array([f"{i:02x}" * 28 for i in (17, 34, 51, 68)], dtype=object)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ERRORS = ("FloatingPointError: loss became NaN at epoch {e}, step 17",
          "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB",
          "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.")


def _pick(rng: np.random.Generator, options: Sequence, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = [options[i] for i in rng.integers(0, len(options), n)]
    return out


def _configs(rng, n_configs: int, archs: Sequence[str], strategies: Sequence[str]) -> pd.DataFrame:
    arch = _pick(rng, list(archs), n_configs)
    strategy = _pick(rng, list(strategies), n_configs)
    strategy[arch == SCRATCH] = None                       # conditional: no freezing without pretrained weights
    depth = np.round(rng.choice([0.25, 0.5, 0.75], n_configs), 2).astype(object)
    depth[strategy != "partial"] = None                    # freeze_depth applies to the partial strategy only
    lr = np.round(10.0 ** rng.uniform(-4.5, -1.5, n_configs), 7)
    return pd.DataFrame({"arch": arch, "strategy": strategy, "freeze_depth": depth, "lr": lr})


def _frozen_fraction(cfg: pd.DataFrame, n_epochs: int) -> np.ndarray:
    """(configs x epochs) share of backbone parameters frozen, as trainables.freezing.frozen_fraction reports it:
    full 0, linear_probe 1, partial the share before stage floor(depth x stages), two_phase 1 for its first epoch
    (head_epochs 1) and then that share at the default depth 0.5."""
    out = np.zeros((len(cfg), n_epochs))
    for i, (arch, strategy, depth) in enumerate(zip(cfg["arch"], cfg["strategy"], cfg["freeze_depth"])):
        shares = ARCH_STAGE_SHARES.get(arch, (0.0, 0.25, 0.5, 0.75, 1.0))
        n = len(shares) - 1
        depth = 0.5 if depth is None or pd.isna(depth) else float(depth)
        if strategy == "linear_probe":
            out[i] = 1.0
        elif strategy in ("partial", "two_phase"):
            out[i] = shares[int(np.floor(depth * n + 1e-9))]
            if strategy == "two_phase":
                out[i, 0] = 1.0
    return out


def _quality(rng, cfg: pd.DataFrame) -> np.ndarray:
    """Final accuracy each configuration tends to, before seed noise (0..1, chance excluded later)."""
    skill = cfg["arch"].map(ARCH_SKILL).fillna(0.7).to_numpy(float)
    effect = [STRATEGY_EFFECT.get(s, STRATEGY_EFFECT[None]) for s in cfg["strategy"]]
    bonus = np.array([e[0] for e in effect])
    best_lr = np.array([e[1] for e in effect])
    depth = pd.to_numeric(cfg["freeze_depth"], errors="coerce").fillna(0.5).to_numpy()
    depth_term = np.where(cfg["strategy"] == "partial", -0.08 * (depth - 0.4) ** 2, 0.0)
    lr_term = -0.06 * (np.log10(cfg["lr"].to_numpy(float)) - best_lr) ** 2
    return np.clip(skill + bonus + depth_term + lr_term + rng.normal(0, 0.01, len(cfg)), 0.05, 0.99)


def synthetic_tables(n_trials: int = 20, n_epochs: int = 10, n_classes: int = 5, archs: Sequence[str] = ARCHS,
                     strategies: Sequence[str] = STRATEGIES, seeds: int = 1, seed: int = 0,
                     stopped_fraction: float = 0.5, error_fraction: float = 0.05, study: str = "synthetic",
                     data_name: str = "synthetic_images", val_per_class: int = 40,
                     test_per_class: int = 40) -> StudyTables:
    """Fake results of a finished study with ``n_trials`` trials (``seeds`` seeds per configuration).

    With ``test_per_class`` > 0 the data set has a test split: ``test_*`` metrics on every epoch that is a new
    best (``best_test_*`` in the trials table) and ``split == "test"`` per-class and confusion rows; 0: none.

    ``stopped_fraction`` of the finished trials stop early at ASHA rungs (the weaker ones first);
    ``error_fraction`` of all trials end with ``ERROR`` (at least a couple when there are 10+ trials).
    """
    rng = np.random.default_rng(seed)
    T, E, C = int(n_trials), int(n_epochs), int(n_classes)
    seeds = max(1, int(seeds))
    n_configs = -(-T // seeds)
    configs = _configs(rng, n_configs, archs, strategies)
    cfg_of = np.arange(T) // seeds
    trial_seed = np.arange(T) % seeds
    cfg = configs.iloc[cfg_of].reset_index(drop=True)
    quality = _quality(rng, configs)[cfg_of] + rng.normal(0, 0.015, T)  # plus seed-to-seed spread
    chance = 1.0 / C
    final = np.clip(chance + (1 - chance) * quality, chance, 0.995)
    prefix = f"{rng.integers(0, 16 ** 5):05x}"
    ids = np.array([f"{prefix}_{i:05d}" for i in range(T)], dtype=object)

    # ---- status, epochs run ------------------------------------------------------------------------------
    n_err = max(2, int(round(error_fraction * T))) if T >= 10 and error_fraction > 0 else 0
    status = np.full(T, "TERMINATED", dtype=object)
    err_idx = rng.choice(T, n_err, replace=False) if n_err else np.array([], int)
    status[err_idx] = "ERROR"
    epochs_run = np.full(T, E)
    ok = np.flatnonzero(status == "TERMINATED")
    n_stop = int(round(stopped_fraction * len(ok)))
    rungs = [r for r in (2 ** np.arange(0, 12)) if r < E]
    if n_stop and rungs:
        worst_first = ok[np.argsort(final[ok] + rng.normal(0, 0.02, len(ok)))][:n_stop]
        # the weakest stop at the first rung, the next at the second, ... (ASHA keeps 1/2 at each rung)
        level = np.minimum(np.floor(np.log2(n_stop / (np.arange(n_stop) + 1))).astype(int), len(rungs) - 1)
        epochs_run[worst_first] = np.array(rungs)[len(rungs) - 1 - level]
    if len(err_idx):
        epochs_run[err_idx] = rng.integers(0, max(1, E), len(err_idx))
    stopped = (status == "TERMINATED") & (epochs_run < E)

    # ---- per-epoch curves (T x E), masked by epochs_run --------------------------------------------------
    ep = np.arange(1, E + 1)[None, :]
    tau = rng.uniform(0.12, 0.35, (T, 1)) * E
    progress = 1 - np.exp(-ep / tau)
    val_acc = np.clip(chance + (final[:, None] - chance) * progress + rng.normal(0, 0.012, (T, E)), 0, 1)
    overfit = rng.uniform(0.0, 0.12, (T, 1))
    train_acc = np.clip(val_acc + overfit * progress + rng.normal(0, 0.01, (T, E)), 0, 1)
    val_loss = -np.log(np.clip(val_acc, 1e-3, 1)) * rng.uniform(0.9, 1.3, (T, 1)) + rng.normal(0, 0.02, (T, E))
    train_loss = -np.log(np.clip(train_acc, 1e-3, 1)) * 0.95 + rng.normal(0, 0.02, (T, E))
    val_f1 = np.clip(val_acc - rng.uniform(0, 0.03, (T, E)), 0, 1)
    val_precision = np.clip(val_acc + rng.normal(0, 0.01, (T, E)), 0, 1)
    val_recall = np.clip(val_acc + rng.normal(0, 0.005, (T, E)), 0, 1)
    lr0 = cfg["lr"].to_numpy(float)[:, None]
    lr_sched = lr0 * 0.5 * (1 + np.cos(np.pi * (ep - 1) / max(1, E)))
    sec = cfg["arch"].map(ARCH_SECONDS).fillna(10.0).to_numpy(float)[:, None]
    epoch_seconds = sec * rng.uniform(0.9, 1.1, (T, E))
    frac = np.array([STRATEGY_EFFECT.get(s, STRATEGY_EFFECT[None])[2] for s in cfg["strategy"]])
    params = (cfg["arch"].map(ARCH_PARAMS).fillna(1e6).to_numpy(float) * frac).astype(np.int64)
    frozen = _frozen_fraction(configs, E)[cfg_of]
    run_mask = ep <= epochs_run[:, None]
    masked = np.where(run_mask, val_acc, -np.inf)
    running_best = np.maximum.accumulate(masked, axis=1)
    running_best_epoch = np.maximum.accumulate(np.where(masked >= running_best, ep, 0), axis=1)
    has_rows = epochs_run > 0
    best_epoch = np.where(has_rows, masked.argmax(axis=1) + 1, 0)
    last_epoch = np.maximum(epochs_run, 1)
    time_total = np.cumsum(epoch_seconds, axis=1)
    # trials start as slots free up: 8 at a time, in trial order (clock times as Unix seconds)
    slots = 8
    span = time_total[np.arange(T), np.maximum(epochs_run, 1) - 1] * (epochs_run > 0) + 5.0
    started_at = 1.7e9 + np.concatenate([[0.0], np.cumsum(span)[:-1]]) / slots

    curves = {"train_loss": train_loss, "train_acc": train_acc, "train_images_per_s": 2000.0 / epoch_seconds,
              "val_loss": val_loss, "val_acc": val_acc, "val_macro_f1": val_f1, "val_precision": val_precision,
              "val_recall": val_recall}
    if C >= 10:
        curves["val_top5"] = np.clip(val_acc + (1 - val_acc) * 0.8, 0, 1)
    tests = {}
    if test_per_class > 0:   # the best weights on the test split: a little below validation, with their own noise
        test_acc = np.clip(val_acc - 0.015 + rng.normal(0, 0.015, (T, E)), 0, 1)
        tests = {"test_acc": test_acc, "test_macro_f1": np.clip(test_acc - rng.uniform(0, 0.03, (T, E)), 0, 1),
                 "test_loss": -np.log(np.clip(test_acc, 1e-3, 1)) * rng.uniform(0.9, 1.3, (T, 1))}
    new_best = run_mask & (running_best_epoch == ep)
    ti, ei = np.nonzero(run_mask)
    epochs = pd.DataFrame({"study": study, "trial_id": ids[ti], "epoch": ei + 1,
                           **{k: v[ti, ei] for k, v in curves.items()},
                           "lr": lr_sched[ti, ei], "trainable_params": params[ti], "frozen_fraction": frozen[ti, ei],
                           "epoch_seconds": epoch_seconds[ti, ei], "best_val_acc": running_best[ti, ei],
                           "best_epoch": running_best_epoch[ti, ei], "time_total_s": time_total[ti, ei],
                           "timestamp": (started_at[ti] + time_total[ti, ei]).astype(np.int64),
                           "pid": 4000 + ti, "node_ip": NODES[ti % len(NODES)],
                           "node_id": NODE_IDS[ti % len(NODES)], "gpu_ids": (ti % 2).astype(str)})
    for k, v in tests.items():   # test metrics only on the epochs that are a new best
        epochs[k] = np.where(new_best[ti, ei], v[ti, ei], np.nan)

    # ---- trials --------------------------------------------------------------------------------------------
    rows = np.arange(T)
    wall = np.where(has_rows, time_total[rows, last_epoch - 1], 0.0) + np.where(has_rows, 5.0, 1.0)
    trials = pd.DataFrame({
        "study": study, "trial_id": ids, "status": status, "started_at": started_at,
        "ended_at": started_at + wall, "error": None, "failures": 0,
        "seed": trial_seed, "epochs_run": epochs_run, "max_epochs": E, "stopped_early": stopped,
        "config.data.name": data_name, "config.data.image_size": 224, "config.data.augment": "standard",
        "config.model.arch": cfg["arch"].to_numpy(),
        "config.model.weights": np.where(cfg["arch"] == SCRATCH, "none", "imagenet"),
        "config.model.strategy": cfg["strategy"].to_numpy(), "config.model.freeze_depth": cfg["freeze_depth"],
        "config.training.epochs": E, "config.training.batch_size": 64, "config.training.optimizer": "adamw",
        "config.training.lr": cfg["lr"].to_numpy(), "config.training.scheduler": "cosine",
        "config.seed": trial_seed, "wall_seconds": wall, "cpu_seconds": wall * 4, "gpu_seconds": wall * 1.0,
    })
    trials["config.model.freeze_depth"] = pd.to_numeric(trials["config.model.freeze_depth"])
    trials.loc[err_idx, "failures"] = 1
    trials["error"] = trials["error"].astype(object)
    if len(err_idx):
        trials.loc[err_idx, "error"] = [ERRORS[i % len(ERRORS)].format(e=epochs_run[t] + 1)
                                        for i, t in enumerate(err_idx)]
    trials["best_epoch"] = np.where(has_rows, best_epoch, np.nan)
    trials["frozen_fraction"] = np.where(has_rows, frozen[rows, last_epoch - 1], np.nan)
    b, last = np.maximum(best_epoch, 1) - 1, last_epoch - 1
    for k, v in curves.items():
        trials[f"last_{k}"] = np.where(has_rows, v[rows, last], np.nan)
    for k, v in {**curves, **tests}.items():
        trials[f"best_{k}"] = np.where(has_rows, v[rows, b], np.nan)

    # ---- per_class and confusion (val split at the best epoch; test split: the best epoch's weights) ------
    per_class, confusion = _per_class(rng, study, ids[has_rows], best_epoch[has_rows],
                                      trials["best_val_acc"].to_numpy()[has_rows], C, val_per_class)
    if tests:
        pc_test, conf_test = _per_class(rng, study, ids[has_rows], best_epoch[has_rows],
                                        trials["best_test_acc"].to_numpy()[has_rows], C, test_per_class, "test")
        per_class = pd.concat([per_class, pc_test], ignore_index=True)
        confusion = pd.concat([confusion, conf_test], ignore_index=True)
    return StudyTables(trials, epochs, per_class, confusion, path=f"synthetic:{study}")


def _per_class(rng, study: str, ids: np.ndarray, epoch: np.ndarray, acc: np.ndarray, C: int,
               per_class: int, split: str = "val") -> tuple[pd.DataFrame, pd.DataFrame]:
    T = len(ids)
    support = np.full(C, per_class) + rng.integers(-per_class // 10, per_class // 10 + 1, C)
    difficulty = rng.normal(0, 0.8, C)                                  # some classes are harder everywhere
    logit = np.log(np.clip(acc, 1e-3, 1 - 1e-3) / np.clip(1 - acc, 1e-3, 1))[:, None]
    recall = 1 / (1 + np.exp(-(logit + difficulty[None, :] + rng.normal(0, 0.3, (T, C)))))
    correct = np.round(recall * support[None, :]).astype(np.int64)
    wrong = support[None, :] - correct
    # spread each class's errors over the other classes: whole counts that sum exactly to `wrong`
    weights = rng.gamma(0.7, 1.0, (T, C, C)) + 1e-9
    weights[:, np.arange(C), np.arange(C)] = 0
    weights /= weights.sum(axis=2, keepdims=True)
    cm = np.floor(wrong[:, :, None] * weights).astype(np.int64)
    rest = wrong - cm.sum(axis=2)
    top = weights.argmax(axis=2)
    ti, ci = np.indices((T, C))
    np.add.at(cm, (ti.ravel(), ci.ravel(), top.ravel()), rest.ravel())
    cm[:, np.arange(C), np.arange(C)] = correct
    predicted = cm.sum(axis=1)
    precision = np.where(predicted > 0, correct / np.maximum(predicted, 1), 0.0)
    rec = correct / support[None, :]
    f1 = np.where(precision + rec > 0, 2 * precision * rec / np.maximum(precision + rec, 1e-12), 0.0)
    names = np.array([CLASS_NAMES[i] if C <= len(CLASS_NAMES) else f"class_{i}" for i in range(C)], dtype=object)
    t_idx, c_idx = ti.ravel(), ci.ravel()
    pc = pd.DataFrame({"study": study, "trial_id": ids[t_idx], "split": split, "epoch": epoch[t_idx],
                       "class_index": c_idx, "class_name": names[c_idx], "precision": precision.ravel(),
                       "recall": rec.ravel(), "f1": f1.ravel(), "accuracy": rec.ravel(),
                       "support": support[c_idx]})
    nt, tr, pr = np.nonzero(cm)
    conf = pd.DataFrame({"study": study, "trial_id": ids[nt], "split": split, "epoch": epoch[nt],
                         "true": tr, "predicted": pr, "count": cm[nt, tr, pr]})
    return pc, conf


def _parts(df: pd.DataFrame):
    """(trial_id, arrow slice) per trial, without a pandas groupby per part (fast for 10,000s of trials)."""
    if df.empty:
        return
    df = df.sort_values("trial_id", kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    ids = df["trial_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    for s, e in zip(starts, ends):
        yield ids[s], table.slice(s, e - s)


def write_tables(tables: StudyTables, study_dir: str | os.PathLike, metric: str = "val_acc",
                 mode: str = "max") -> Path:
    """Write tables in the results layout (``results/<table>/<trial_id>.parquet``) plus a minimal study.yaml."""
    root = Path(study_dir)
    for name in TABLES:
        folder = root / "results" / name
        folder.mkdir(parents=True, exist_ok=True)
        for tid, part in _parts(getattr(tables, name)):
            pq.write_table(part, folder / f"{tid}.parquet")
    trials = tables.trials
    name = str(trials["study"].iloc[0]) if len(trials) else root.name
    study = {"name": name, "task": "classification",
             "data": {"name": str(trials["config.data.name"].iloc[0]) if len(trials) else "synthetic_images"},
             "model": {"arch": {"grid": sorted(trials["config.model.arch"].unique().tolist())} if len(trials)
                       else "scratch_cnn"},
             "training": {"epochs": int(trials["max_epochs"].max()) if len(trials) else 10},
             "search": {"algorithm": "random", "metric": metric, "mode": mode,
                        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
             "seeds": int(trials["seed"].nunique()) if len(trials) else 1}
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return root
