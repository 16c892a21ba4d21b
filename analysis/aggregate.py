"""Helpers every figure uses: swept columns, best trial per group, seed aggregation, the from-scratch baseline."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

FROM_SCRATCH = ("scratch_cnn", "baseline_cnn")
SEED_COLUMNS = ("seed", "config.seed")


def swept_columns(trials: pd.DataFrame) -> list[str]:
    """``config.*`` columns whose value differs between trials (the seed excluded)."""
    cols = [c for c in trials.columns if c.startswith("config.") and c not in SEED_COLUMNS]
    return [c for c in cols if trials[c].astype(str).nunique(dropna=False) > 1]


def finished(trials: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Trials that ended without error and have a value for ``best_<metric>``."""
    col = f"best_{metric}"
    if trials.empty or col not in trials.columns:
        return trials.iloc[0:0]
    return trials[(trials["status"] == "TERMINATED") & trials[col].notna()]


def best_per_group(trials: pd.DataFrame, by: Sequence[str], metric: str = "val_acc",
                   mode: str = "max") -> pd.DataFrame:
    """The best finished trial of each group (errored trials never win; ties go to the lowest trial_id).

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["TERMINATED"] * 2 + ["ERROR"],
        ...                   "config.model.arch": ["x", "x", "x"], "best_val_acc": [0.5, 0.5, 0.9]})
        >>> best_per_group(t, ["config.model.arch"])["trial_id"].tolist()
        ['a']
    """
    ok = finished(trials, metric)
    if ok.empty:
        return ok
    col = f"best_{metric}"
    ordered = ok.sort_values([col, "trial_id"], ascending=[mode == "min", True], kind="mergesort")
    by = [b for b in by if b in ok.columns]
    if not by:
        return ordered.head(1)
    return ordered.groupby(by, dropna=False, sort=True).head(1).sort_values(by, kind="mergesort")


def t_quantile(n: int, level: float = 0.95) -> float:
    """Student's t quantile for a two-sided ``level`` interval with n - 1 degrees of freedom."""
    if n < 2:
        return float("nan")
    from scipy import stats
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


FIDELITY = "epochs_run"   # how far a trial got: seeds are only averaged with seeds that got as far
AGG_COLUMNS = ["mean", "std", "n", "ci", "low", "high", "epochs", "n_seeds", "n_excluded"]


def seed_groups(trials: pd.DataFrame, metric: str = "val_acc", by: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Finished trials with ``_config`` (one number per configuration, i.e. combination of ``by``, default the
    swept columns) and ``_averaged``: True for the seeds that ran as many epochs (``epochs_run``) as the
    configuration's longest-running seed. Seeds an early-stopping scheduler (ASHA, ...) stopped sooner are
    False: their ``best_<metric>`` is of a lower fidelity and is not averaged with the others.

    Example:
        >>> t = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["TERMINATED"] * 3, "seed": [0, 1, 2],
        ...                   "epochs_run": [10, 10, 1], "best_val_acc": [0.8, 0.9, 0.3]})
        >>> seed_groups(t, by=[])["_averaged"].tolist()
        [True, True, False]
    """
    ok = finished(trials, metric).copy()
    by = [b for b in (list(by) if by is not None else swept_columns(trials)) if b in ok.columns]
    ok["_config"] = ok.groupby(by, dropna=False, sort=True).ngroup() if by and len(ok) else 0
    if FIDELITY in ok.columns and len(ok):
        reached = pd.to_numeric(ok[FIDELITY], errors="coerce").fillna(-1)
        ok["_averaged"] = reached == reached.groupby(ok["_config"]).transform("max")
    else:
        ok["_averaged"] = True
    return ok


def aggregate_seeds(trials: pd.DataFrame, metric: str = "val_acc", by: Optional[Sequence[str]] = None,
                    level: float = 0.95, value: Optional[str] = None) -> pd.DataFrame:
    """Mean and confidence interval of ``best_<metric>`` over the seeds of each configuration, like with like.

    ``by`` defaults to every swept column. Only the seeds that reached the configuration's highest fidelity
    (:func:`seed_groups`) are averaged. Returns the group columns plus ``mean``, ``std``, ``n`` (seeds
    averaged), ``ci`` (half-width of the Student-t interval; NaN with one seed), ``low``, ``high``, ``epochs``
    (the epochs those seeds ran), ``n_seeds`` (finished seeds) and ``n_excluded`` (finished seeds stopped at
    fewer epochs, not averaged). ``value`` (e.g. ``test_acc``) averages ``best_<value>`` over the same seeds
    instead (seeds without it are left out of ``n``).
    """
    by = list(by) if by is not None else swept_columns(trials)
    groups = seed_groups(trials, metric, by)
    col = f"best_{value or metric}"
    if groups.empty or col not in groups.columns:
        return pd.DataFrame(columns=by + AGG_COLUMNS)
    first = groups.groupby("_config", sort=True).head(1).set_index("_config").sort_index()
    out = first[[b for b in by if b in first.columns]].copy()
    used = groups[groups["_averaged"]]
    stats = used.groupby("_config")[col].agg(["mean", "std", "count"])
    out["mean"], out["std"] = stats["mean"], stats["std"].fillna(0.0)
    out["n"] = stats["count"].reindex(out.index).fillna(0).astype(int)
    out["ci"] = [t_quantile(int(n), level) * s / math.sqrt(n) if n > 1 else float("nan")
                 for n, s in zip(out["n"], out["std"])]
    out["low"], out["high"] = out["mean"] - out["ci"], out["mean"] + out["ci"]
    out["epochs"] = (pd.to_numeric(used[FIDELITY], errors="coerce").groupby(used["_config"]).max()
                     if FIDELITY in used.columns else float("nan"))
    out["n_seeds"] = groups.groupby("_config").size()
    out["n_excluded"] = out["n_seeds"] - used.groupby("_config").size().reindex(out.index).fillna(0).astype(int)
    return out.reset_index(drop=True)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) that ``a`` and ``b`` have the same mean; NaN
    with fewer than 2 values on either side. Two samples without spread: 1 when their means are equal, else 0.

    Example:
        >>> round(welch_p([0.80, 0.82, 0.81], [0.60, 0.61, 0.62]), 6) < 0.01
        True
    """
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    from scipy import stats
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def difference_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the ``level`` confidence interval of mean(a) - mean(b), Welch-Satterthwaite degrees of
    freedom; NaN with fewer than 2 values on either side."""
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    va, vb = a.var() / len(a), b.var() / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    from scipy import stats
    return float(stats.t.ppf(0.5 + level / 2, df) * se)


def best_configuration(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max",
                       by: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """The averaged seeds (rows of :func:`seed_groups`) of the configuration with the best seed mean; ties go
    to the first configuration in sort order. Empty when nothing finished."""
    groups = seed_groups(trials, metric, by)
    used = groups[groups["_averaged"]]
    if used.empty:
        return used
    means = used.groupby("_config")[f"best_{metric}"].mean()
    order = means.sort_values(ascending=(mode == "min"), kind="mergesort")
    return used[used["_config"] == order.index[0]]


def split_metric(metric: str, split: str = "test") -> Optional[str]:
    """The ``split`` counterpart of a validation metric: ``val_acc`` -> ``test_acc``; None for other metrics."""
    return f"{split}_" + metric.removeprefix("val_") if metric.startswith("val_") else None


def baseline(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> Optional[pd.Series]:
    """The best from-scratch trial of a study (``scratch_cnn`` / ``baseline_cnn``), or None."""
    if "config.model.arch" not in trials.columns:
        return None
    scratch = trials[trials["config.model.arch"].isin(FROM_SCRATCH)]
    best = best_per_group(scratch, [], metric, mode)
    return None if best.empty else best.iloc[0]


def transferred(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that did not train from scratch."""
    if "config.model.arch" not in trials.columns:
        return trials
    return trials[~trials["config.model.arch"].isin(FROM_SCRATCH)]
