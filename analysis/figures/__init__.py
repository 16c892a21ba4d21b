"""Figures by name: each takes a study's tables and returns a matplotlib Figure (or None when it does not apply).

Every figure function has the signature ``fn(tables: StudyTables, metric: str = "val_acc", mode: str = "max")
-> Optional[Figure]`` and registers itself with :func:`figure`. The report draws every registered figure in
registration order; a notebook calls them one by one.

Example:
    >>> from analysis.load import load                                       # doctest: +SKIP
    >>> fig = FIGURES["arch_strategy_heatmap"].fn(load("results/quickstart"))  # doctest: +SKIP
    >>> fig.savefig("heatmap.png")                                           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")  # files, not windows: works headless, in CI and on clusters

from matplotlib.figure import Figure  # noqa: E402


@dataclass
class FigureSpec:
    name: str
    title: str
    fn: Callable[..., Optional[Figure]]
    section: str = "Comparison"   # the report groups figures by section


FIGURES: dict[str, FigureSpec] = {}


def figure(name: str, title: str, section: str = "Comparison"):
    """Register a figure function under ``name``."""
    def deco(fn):
        FIGURES[name] = FigureSpec(name, title, fn, section)
        return fn
    return deco


def save_all(tables, out_dir: str | Path, metric: str = "val_acc", mode: str = "max", dpi: int = 110) -> dict:
    """Draw every figure that applies and save it as ``<out_dir>/<name>.png``; returns {name: path}."""
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in FIGURES.values():
        fig = spec.fn(tables, metric=metric, mode=mode)
        if fig is None:
            continue
        path = out / f"{spec.name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        paths[spec.name] = path
    return paths


# the figure modules register themselves on import; this order is the report's order
from analysis.figures import (curves, comparison, sweep, asha, parallel, importance,  # noqa: E402,F401,I001
                              perclass, confusion, overlays, transferability)
