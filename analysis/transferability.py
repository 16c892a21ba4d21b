"""Transferability scores: how well a backbone's frozen features suit a labelled target, before fine-tuning it.

Each score takes the features ``F`` (n x D, the input of the classifier head), the target labels ``y`` (n ints)
and, for LEEP, the source classifier's logits on the same images (n x Z); higher is better for all of them.
Written from the papers' equations in numpy (no torch), so a notebook can score cached features on a laptop:

- ``logme``: You et al., ICML 2021. Per class (one-hot target column), the evidence of Bayesian linear
  regression ``y = F w + e``, ``w ~ N(0, 1/alpha)``, ``e ~ N(0, 1/beta)``, maximised over (alpha, beta) by the
  paper's fixed-point iteration on the SVD of ``F``; divided by n, averaged over classes.
- ``hscore``: Bao et al., ICIP 2019: ``tr(cov(F)^+ cov(E[F | y]))``. With fewer images than feature dimensions
  it saturates at (classes - 1) for any features, so ``hscore_shrunk`` (Ibrahim et al. 2022, "Newer is not
  always better") replaces ``cov(F)`` by its Ledoit-Wolf shrinkage ``(1 - lam) cov(F) + lam mu I`` and
  ``cov(E[F|y])`` by ``(1 - lam) cov(E[F|y])``.
- ``leep``: Nguyen et al., ICML 2020: the mean log of the expected empirical prediction, from the source head's
  softmax and the empirical conditional P(target label | source label). Only where a source head exists.
- ``knn`` and ``linear_probe``: the baselines every score must beat: leave-one-out k-NN accuracy (cosine) and
  cross-validated accuracy of a ridge least-squares classifier on the standardised features.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20)
    >>> good = np.eye(3)[y] * 5 + rng.normal(size=(60, 3))
    >>> bad = rng.normal(size=(60, 3))
    >>> SCORES.get("logme")(good, y) > SCORES.get("logme")(bad, y)
    True
    >>> [n for n in SCORES.names() if needs_source(n)]
    ['leep']
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from trainables.registry import Registry  # plain Python: importing it imports no torch

if TYPE_CHECKING:
    import pandas as pd

# search.preselect.score / tlsweep rank: name -> fn(features, labels, source_logits=None) -> float
SCORES: Registry = Registry("search.preselect.score")
TABLE = "transferability"   # results/transferability/*.parquet in the study folder (analysis.load.read_table)


def needs_source(name: str) -> bool:
    """Whether a score needs the source classifier's logits (LEEP)."""
    return bool(getattr(SCORES.get(name), "needs_source", False))


def _as_arrays(features, labels) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"features must be n x D with one label per row, got {f.shape} and {y.shape}")
    y = np.unique(y, return_inverse=True)[1].ravel()  # labels 0..C-1, whatever they were
    return f, y


# ---- LogME ---------------------------------------------------------------------------------------------------
def evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Log evidence ``log p(y | F, alpha, beta)`` of one target column, evaluated directly (no SVD):
    ``n/2 log beta + D/2 log alpha - n/2 log 2pi - beta/2 |Fm - y|^2 - alpha/2 m'm - 1/2 log|A|`` with
    ``A = alpha I + beta F'F`` and ``m = beta A^-1 F'y`` (You et al. 2021, eq. 2). For tests and small cases."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    res = float(np.sum((f @ m - y) ** 2))
    return float(n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
                 - beta / 2 * res - alpha / 2 * float(m @ m) - 0.5 * np.linalg.slogdet(a)[1])


def _logme_column(s2: np.ndarray, z: np.ndarray, y2: float, n: int, d: int, iters: int = 100,
                  tol: float = 1e-7) -> tuple[float, float, float]:
    """(evidence / n, alpha, beta) of one column from the squared singular values ``s2``, ``z = U'y``, ``|y|^2``."""
    alpha, beta = 1.0, 1.0
    rest = max(y2 - float(z @ z), 0.0)  # the part of y outside the column space of F
    for _ in range(iters):
        t = alpha + beta * s2
        gamma = float(np.sum(beta * s2 / t))
        m2 = float(np.sum((beta * np.sqrt(s2) * z / t) ** 2))
        res = float(np.sum((alpha * z / t) ** 2)) + rest
        new_alpha, new_beta = gamma / max(m2, 1e-300), (n - gamma) / max(res, 1e-300)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t = alpha + beta * s2
    m2 = float(np.sum((beta * np.sqrt(s2) * z / t) ** 2))
    res = float(np.sum((alpha * z / t) ** 2)) + rest
    logdet = float(np.sum(np.log(t))) + (d - len(s2)) * math.log(alpha)  # eigenvalues of F'F beyond rank: 0
    ev = (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
          - beta / 2 * res - alpha / 2 * m2 - 0.5 * logdet)
    return ev / n, alpha, beta


@SCORES.register("logme", description="LogME (You et al. 2021): evidence of a linear model on the features, "
                                      "maximised over alpha, beta")
def logme(features, labels, source_logits=None) -> float:
    f, y = _as_arrays(features, labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0) * 1e-10
    u, s2 = u[:, keep], s[keep] ** 2
    onehot = np.eye(y.max() + 1)[y]
    return float(np.mean([_logme_column(s2, u.T @ col, float(col @ col), n, d)[0] for col in onehot.T]))


# ---- H-score -------------------------------------------------------------------------------------------------
def _class_means(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean of its class (rows of centred features give centred means)."""
    sums = np.zeros((y.max() + 1, f.shape[1]))
    np.add.at(sums, y, f)
    return (sums / np.bincount(y)[:, None])[y]


def _hscore(f: np.ndarray, y: np.ndarray, shrink: bool) -> float:
    n, d = f.shape
    x = f - f.mean(0)
    g = _class_means(x, y)
    _, s, vt = np.linalg.svd(x, full_matrices=False)  # cov(F) = V diag(s^2 / n) V'
    keep = s > s.max(initial=0) * 1e-10
    s, vt = s[keep], vt[keep]
    eig = s ** 2 / n
    proj = np.sum((g @ vt.T) ** 2, axis=0) / n           # v' cov(E[F|y]) v for each eigenvector v
    if not shrink:
        return float(np.sum(proj / eig))
    # Ledoit-Wolf: (1 - lam) S + lam mu I, lam from the data (the class means lie in the span of the rows of x)
    mu = float(np.sum(eig)) / d
    s_fro2 = float(np.sum(eig ** 2))
    d2 = (s_fro2 - 2 * mu * np.sum(eig) + mu ** 2 * d) / d
    b2 = (float(np.sum(np.sum(x ** 2, 1) ** 2)) / n - s_fro2) / n / d
    lam = 0.0 if d2 <= 0 else min(max(b2, 0.0), d2) / d2
    return float(np.sum((1 - lam) * proj / ((1 - lam) * eig + lam * mu)))  # their eq.: (1 - lam) cov(E[F|y])


@SCORES.register("hscore", description="H-score (Bao et al. 2019): tr(cov(F)^+ cov(E[F|y]))")
def hscore(features, labels, source_logits=None) -> float:
    return _hscore(*_as_arrays(features, labels), shrink=False)


@SCORES.register("hscore_shrunk", description="H-score with a Ledoit-Wolf shrunk feature covariance "
                                              "(Ibrahim et al. 2022), for fewer images than dimensions")
def hscore_shrunk(features, labels, source_logits=None) -> float:
    return _hscore(*_as_arrays(features, labels), shrink=True)


# ---- LEEP ----------------------------------------------------------------------------------------------------
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def leep(features, labels, source_logits=None) -> float:
    """LEEP (Nguyen et al. 2020) from the source head's logits on the target images."""
    if source_logits is None:
        raise ValueError("leep needs the source classifier's logits (no source head)")
    _, y = _as_arrays(np.zeros((len(labels), 1)), labels)
    theta = softmax(source_logits)                             # theta(x_i)_z, n x Z
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= len(y)                                            # P(y, z)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = np.sum(theta * cond[y], axis=1)                      # sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


leep.needs_source = True
SCORES.register("leep", description="LEEP (Nguyen et al. 2020): log expected empirical prediction of the "
                                    "source head (needs one)")(leep)


# ---- baselines -----------------------------------------------------------------------------------------------
@SCORES.register("knn", description="baseline: leave-one-out k-NN accuracy (cosine, k = 5) on the features")
def knn(features, labels, source_logits=None, k: int = 5) -> float:
    f, y = _as_arrays(features, labels)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    k = max(1, min(k, len(y) - 1))
    near = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(y), y.max() + 1))
    for j in range(k):  # ties between classes go to the class of the nearer neighbours
        np.add.at(votes, (np.arange(len(y)), y[near[:, j]]), 1.0 + 1e-6 * (k - j))
    return float(np.mean(votes.argmax(1) == y))


@SCORES.register("linear_probe", description="baseline: cross-validated accuracy of a ridge linear classifier "
                                             "on the standardised features")
def linear_probe(features, labels, source_logits=None, folds: int = 5, ridge: float = 1.0) -> float:
    f, y = _as_arrays(features, labels)
    order = np.lexsort(f.T[::-1])  # folds follow the features' content, not the order of the rows
    fold = np.empty(len(y), dtype=np.int64)
    for c in range(y.max() + 1):
        members = order[y[order] == c]
        fold[members] = np.arange(len(members)) % folds
    folds = max(2, min(folds, int(np.bincount(y).min())))
    fold %= folds
    onehot = np.eye(y.max() + 1)[y]
    right = 0
    for i in range(folds):
        tr, te = fold != i, fold == i
        mean, std = f[tr].mean(0), f[tr].std(0) + 1e-8
        xt, xe = (f[tr] - mean) / std, (f[te] - mean) / std
        w = xt.T @ np.linalg.solve(xt @ xt.T + ridge * np.eye(len(xt)), onehot[tr] - onehot[tr].mean(0))
        right += int(np.sum((xe @ w).argmax(1) == y[te]))
    return right / len(y)


def score_all(features, labels, source_logits=None, names: Optional[list[str]] = None,
              clock: Callable[[], float] = None) -> dict[str, tuple[float, float]]:
    """``{name: (score, seconds)}`` for every registered score (those needing a source head only with one)."""
    import time
    clock = clock or time.perf_counter
    out = {}
    for name in names or SCORES.names():
        if needs_source(name) and source_logits is None:
            continue
        start = clock()
        value = SCORES.get(name)(features, labels, source_logits)
        out[name] = (float(value), clock() - start)
    return out


# ---- the study's table, and how well the scores predicted the sweep -------------------------------------------
STAGE_COLUMNS = ("freeze_depth", "stage", "stage_module")  # only the rows of ``tlsweep rank --stages`` have them


def _read_all(location) -> pd.DataFrame:
    import pandas as pd
    from analysis.load import StudyNotFound, read_table
    try:
        return read_table(location, TABLE)
    except StudyNotFound:
        return pd.DataFrame()


def read_scores(location) -> pd.DataFrame:
    """The study's ``transferability`` table (``tlsweep rank``, ``search.preselect``): the final-layer rows, one
    per architecture; empty when it has none."""
    table = _read_all(location)
    if "freeze_depth" not in table.columns:
        return table
    final = table[table["freeze_depth"].isna()]
    return final.drop(columns=[c for c in STAGE_COLUMNS if c in final.columns]).reset_index(drop=True)


def read_stage_scores(location) -> pd.DataFrame:
    """The per-stage rows of ``tlsweep rank --stages`` (``arch``, ``freeze_depth``, ``stage``, scores); empty
    when there are none."""
    table = _read_all(location)
    if "freeze_depth" not in table.columns:
        return table.iloc[0:0]
    stages = table[table["freeze_depth"].notna()].dropna(axis=1, how="all").reset_index(drop=True)
    return stages.astype({"stage": int, "n_images": int, "n_features": int})


def _kendall_fallback(x: np.ndarray, y: np.ndarray, weighted: bool) -> float:
    """Kendall's tau-b (or the hyperbolic weighted tau, averaged over ranking by x and by y) without scipy."""
    def one(primary, secondary):
        order = np.lexsort((-secondary, -primary))
        rank = np.empty(len(x))
        rank[order] = np.arange(len(x))
        num = den_x = den_y = 0.0
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                w = 1 / (rank[i] + 1) + 1 / (rank[j] + 1) if weighted else 1.0
                dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
                num, den_x, den_y = num + w * dx * dy, den_x + w * dx * dx, den_y + w * dy * dy
        return num / math.sqrt(den_x * den_y) if den_x and den_y else float("nan")
    return (one(x, y) + one(y, x)) / 2 if weighted else one(x, y)


def kendall(x, y) -> tuple[float, float]:
    """(Kendall's tau-b, weighted tau with hyperbolic weights) of two rankings; scipy's when it is installed.

    Example:
        >>> [round(t, 3) for t in kendall([1, 2, 3, 4], [0.1, 0.2, 0.4, 0.3])]
        [0.667, 0.52]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    try:
        from scipy.stats import kendalltau, weightedtau
    except ImportError:
        return _kendall_fallback(x, y, False), _kendall_fallback(x, y, True)
    return float(kendalltau(x, y).statistic), float(weightedtau(x, y).statistic)


def best_per_arch(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.Series:
    """The best fine-tuned ``best_<metric>`` of each architecture's finished trials."""
    import pandas as pd
    from analysis.aggregate import finished
    ok = finished(trials, metric)
    if ok.empty or "config.model.arch" not in ok.columns:
        return pd.Series(dtype=float)
    grouped = ok.groupby("config.model.arch")[f"best_{metric}"]
    return grouped.max() if mode == "max" else grouped.min()


def score_vs_sweep(scores: pd.DataFrame, trials: pd.DataFrame, metric: str = "val_acc",
                   mode: str = "max") -> pd.DataFrame:
    """One row per score: how many architectures have both, Kendall's tau and weighted tau against the best
    fine-tuned ``metric`` per architecture (for ``min`` metrics the sign is turned so that higher is better)."""
    import pandas as pd
    best = best_per_arch(trials, metric, mode)
    rows = []
    if scores.empty or best.empty:
        return pd.DataFrame(columns=["score", "n", "tau", "weighted_tau"])
    by_arch = scores.drop_duplicates("arch", keep="last").set_index("arch")
    for name in SCORES.names():
        if name not in by_arch.columns:
            continue
        both = pd.concat([by_arch[name], best.rename("best")], axis=1, join="inner").dropna()
        target = both["best"] if mode == "max" else -both["best"]
        tau, wtau = kendall(both[name], target) if len(both) >= 2 else (float("nan"), float("nan"))
        rows.append({"score": name, "n": len(both), "tau": tau, "weighted_tau": wtau})
    return pd.DataFrame(rows)


def preselect_lines(location) -> list[str]:
    """What ``search.preselect`` kept and left out, and why (none when the study did not preselect)."""
    table = read_scores(location)
    if table.empty or "kept" not in table.columns:
        return []
    score = str(table["preselect_score"].dropna().iloc[0]) if "preselect_score" in table.columns else "score"
    kept = table[table["kept"].astype(bool)]
    left = table[~table["kept"].astype(bool)]
    seconds = float(table["rank_seconds"].max()) if "rank_seconds" in table.columns else float("nan")
    lines = [f"preselect by {score} ({seconds:.1f}s to rank): swept {', '.join(kept['arch'])}"]
    for _, row in left.iterrows():
        lines.append(f"  left out {row['arch']}: {score} {row[score]:.4g}, {row['why']}")
    return lines


__all__ = ["SCORES", "TABLE", "best_per_arch", "evidence", "hscore", "hscore_shrunk", "kendall", "knn", "leep",
           "linear_probe", "logme", "needs_source", "preselect_lines", "read_scores", "read_stage_scores",
           "score_all", "score_vs_sweep"]
