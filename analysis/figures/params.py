"""The swept hyperparameters of finished trials, typed for plotting and importance: numeric, log or categorical."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.aggregate import finished, swept_columns
from analysis.figures._common import LR, fmt_value, ordered_labels

LOG_COLUMNS = (LR, "config.training.weight_decay")


@dataclass
class Param:
    column: str
    kind: str                      # "int", "float", "log" or "categorical"
    categories: list = field(default_factory=list)   # labels of a categorical parameter, in code order


def _kind(values: pd.Series, column: str) -> Param:
    numbers = pd.to_numeric(values, errors="coerce")
    if values.notna().all() and numbers.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        if column in LOG_COLUMNS and (numbers > 0).all():
            return Param(column, "log")
        if np.allclose(numbers, np.round(numbers)) and pd.api.types.is_integer_dtype(values.dtype):
            return Param(column, "int")
        return Param(column, "float")
    # strings, booleans, and numbers with gaps (a conditional field that did not apply): categories, n/a last
    return Param(column, "categorical", ordered_labels(values.map(fmt_value), column))   # strategies by training


def swept_params(trials: pd.DataFrame, metric: str = "val_acc") -> tuple[pd.DataFrame, list[Param]]:
    """Finished trials and the swept ``config.*`` columns that still vary among them, typed.

    A numeric column with empty cells (an inactive conditional field) is categorical, so that every trial has a
    value for every parameter (fANOVA only uses trials that have them all).
    """
    ok = finished(trials, metric)
    params = []
    for col in swept_columns(trials):
        if col in ok.columns and ok[col].astype(str).nunique(dropna=False) > 1:
            params.append(_kind(ok[col], col))
    return ok, params


def encode(ok: pd.DataFrame, param: Param) -> np.ndarray:
    """Numbers for one parameter: log10 for ``log``, integer codes for ``categorical``, values otherwise."""
    if param.kind == "categorical":
        codes = {label: i for i, label in enumerate(param.categories)}
        return ok[param.column].map(fmt_value).map(codes).to_numpy(float)
    values = pd.to_numeric(ok[param.column], errors="coerce").to_numpy(float)
    return np.log10(values) if param.kind == "log" else values
