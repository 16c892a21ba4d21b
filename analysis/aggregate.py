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


def aggregate_seeds(trials: pd.DataFrame, metric: str = "val_acc", by: Optional[Sequence[str]] = None,
                    level: float = 0.95) -> pd.DataFrame:
    """Mean and confidence interval of ``best_<metric>`` over the seeds of each configuration.

    ``by`` defaults to every swept column; returns the group columns plus ``mean``, ``std``, ``n``,
    ``ci`` (half-width), ``low`` and ``high``.
    """
    ok = finished(trials, metric)
    col = f"best_{metric}"
    by = list(by) if by is not None else swept_columns(trials)
    if ok.empty:
        return pd.DataFrame(columns=by + ["mean", "std", "n", "ci", "low", "high"])
    grouped = ok.groupby(by, dropna=False, sort=True)[col] if by else ok.assign(_all=0).groupby("_all")[col]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["ci"] = [t_quantile(int(n), level) * s / math.sqrt(n) if n > 1 else float("nan")
                 for n, s in zip(out["n"], out["std"])]
    out["low"], out["high"] = out["mean"] - out["ci"], out["mean"] + out["ci"]
    return out.drop(columns=["_all"], errors="ignore")


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
