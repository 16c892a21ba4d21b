"""Which hyperparameters mattered: Optuna's fANOVA importance and Spearman correlations with the metric."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import figure
from analysis.figures._common import fmt_value, metric_label, short
from analysis.figures.params import Param, encode, swept_params

# fANOVA's cost grows with the forest's leaves: large studies get a random subset and a smaller forest
# (10,000 trials: ~50 s with the defaults over 2,000 trials, ~2 s like this)
MAX_FANOVA_TRIALS = 1000
LARGE_STUDY = 300          # trials above which the forest is 32 trees of depth 8 instead of 64 x 64
MIN_TRIALS = 4


def _distribution(ok: pd.DataFrame, p: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    if p.kind == "categorical":
        return CategoricalDistribution(p.categories)
    values = pd.to_numeric(ok[p.column])
    if p.kind == "int":
        return IntDistribution(int(values.min()), int(values.max()))
    return FloatDistribution(float(values.min()), float(values.max()), log=p.kind == "log")


def _fanova(ok: pd.DataFrame, params: list[Param], metric: str) -> dict[str, float]:
    import optuna
    if len(ok) > MAX_FANOVA_TRIALS:
        ok = ok.sample(MAX_FANOVA_TRIALS, random_state=0)
    values = ok[f"best_{metric}"].to_numpy(float)
    if np.ptp(values) == 0:   # nothing to explain
        return {p.column: 0.0 for p in params}
    distributions = {p.column: _distribution(ok, p) for p in params}
    columns = {}
    for p in params:
        raw = ok[p.column]
        if p.kind == "categorical":
            columns[p.column] = raw.map(fmt_value).tolist()
        elif p.kind == "int":
            columns[p.column] = pd.to_numeric(raw).astype(int).tolist()
        else:
            columns[p.column] = pd.to_numeric(raw).astype(float).tolist()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize")
        study.add_trials([optuna.trial.create_trial(
            params={c: columns[c][i] for c in columns}, distributions=distributions, value=float(values[i]))
            for i in range(len(values))])
        forest = {"n_trees": 32, "max_depth": 8} if len(values) > LARGE_STUDY else {}
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0, **forest)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {c: float(found.get(c, 0.0)) for c in columns}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (Pearson on ranks, ties averaged); NaN when either side is constant."""
    keep = np.isfinite(x) & np.isfinite(y)
    rx, ry = pd.Series(x[keep]).rank(), pd.Series(y[keep]).rank()
    if keep.sum() < 3 or rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(rx.corr(ry))


def importance_table(trials: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """One row per swept hyperparameter, most important first: ``param`` (the ``config.*`` column),
    ``importance`` (fANOVA, normalised to sum to 1 over the parameters) and ``spearman`` (rank correlation
    of the value with ``best_<metric>`` over finished trials; NaN for categories). Empty with fewer than
    2 swept parameters or 4 finished trials.

    Example:
        >>> importance_table(load("results/quickstart").trials)    # doctest: +SKIP
                        param  importance  spearman
        0    config.model.arch        0.61       NaN
        1  config.training.lr        0.25      0.42
    """
    ok, params = swept_params(trials, metric)
    if len(params) < 2 or len(ok) < MIN_TRIALS:
        return pd.DataFrame(columns=["param", "importance", "spearman"])
    importance = _fanova(ok, params, metric)
    score = ok[f"best_{metric}"].to_numpy(float)
    rows = [{"param": p.column, "importance": importance[p.column],
             "spearman": float("nan") if p.kind == "categorical" else _spearman(encode(ok, p), score)}
            for p in params]
    table = pd.DataFrame(rows)
    table = table.sort_values("importance", ascending=False, kind="mergesort").reset_index(drop=True)
    stopped = int(ok["stopped_early"].fillna(False).astype(bool).sum()) if "stopped_early" in ok.columns else 0
    table.attrs.update(n_trials=len(ok), n_fanova=min(len(ok), MAX_FANOVA_TRIALS), n_left_out=len(trials) - len(ok),
                       n_stopped=stopped)
    return table


def trials_note(attrs: dict) -> str:
    """What the importance rests on, e.g. '40 finished trials (12 of them stopped early); 3 errored or
    unfinished left out'."""
    n = attrs.get("n_trials", 0)
    text = f"{n} finished trial{'s' if n != 1 else ''}"
    if attrs.get("n_stopped"):
        text += f" ({attrs['n_stopped']} of them stopped early: their best at fewer epochs)"
    if attrs.get("n_fanova", n) < n:
        text += f"; fANOVA on a random {attrs['n_fanova']} of them"
    if attrs.get("n_left_out"):
        text += f"; {attrs['n_left_out']} errored or unfinished left out"
    return text


@figure("hparam_importance", "Hyperparameter importance (fANOVA)", section="Hyperparameters")
def hparam_importance(tables, metric: str = "val_acc", mode: str = "max") -> Optional[Figure]:
    """fANOVA importance as horizontal bars, next to a table of importance and Spearman correlation."""
    table = importance_table(tables.trials, metric)
    if table.empty:
        return None
    names = [short(p) for p in table["param"]]
    fig = Figure(figsize=(10, max(2.6, 0.45 * len(table) + 1.4)), layout="constrained")
    bars, cells = fig.subplots(1, 2, width_ratios=[1.3, 1])
    y = np.arange(len(table))[::-1]
    bars.barh(y, table["importance"], color="tab:blue")
    bars.set_yticks(y, names)
    bars.set_xlim(0, max(0.05, float(table["importance"].max()) * 1.15))
    for yi, v in zip(y, table["importance"]):
        bars.text(v, yi, f" {v:.2f}", va="center", fontsize=8)
    bars.set_xlabel("fANOVA importance (share of variance)")
    bars.grid(axis="x", alpha=0.3)
    bars.set_title(f"What explains {metric_label(metric)}")
    cells.axis("off")
    text = [[n, f"{i:.3f}", "—" if np.isnan(s) else f"{s:+.2f}"]
            for n, i, s in zip(names, table["importance"], table["spearman"])]
    drawn = cells.table(cellText=text, colLabels=["parameter", "importance", "Spearman ρ"],
                        loc="center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(9)
    drawn.scale(1, 1.4)
    cells.set_title(f"Spearman ρ with {metric_label(metric)} (numeric parameters)", fontsize=10)
    fig.suptitle(f"Hyperparameter importance over {trials_note(table.attrs)}", fontsize=10)
    return fig
