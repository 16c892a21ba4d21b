"""``tlsweep explain``: explanations of one trial, or of the best trial of each architecture x strategy side by
side, written as PNGs under ``<study_dir>/explain/`` with an ``index.json`` the HTML report reads.

Example:
    >>> written = explain_study("results/quickstart")                     # doctest: +SKIP
    >>> [e["file"] for e in written]                                       # doctest: +SKIP
    ['compare-gradcam.png', 'compare-occlusion.png', 'compare-guided.png', 'compare-filters.png', ...]
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from explain.images import Probes, from_files, from_validation
from explain.loading import TrialModel, best_per_configuration, load_trial
from explain.methods import METHODS, Context, parse_methods
from explain.plots import save
from trainables.errors import ConfigError, DataError

INDEX_FILE = "index.json"
OUT_DIR = "explain"


def read_index(out_dir: Path) -> list[dict]:
    try:
        data = json.loads((out_dir / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data.get("images", []) if isinstance(e, dict) and "file" in e] if isinstance(data, dict) else []


def write_index(out_dir: Path, entries: list[dict]) -> Path:
    """Merge ``entries`` into ``index.json`` (a file written again replaces its old entry), atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh = {e["file"] for e in entries}
    kept = [e for e in read_index(out_dir) if e["file"] not in fresh and (out_dir / e["file"]).is_file()]
    path = out_dir / INDEX_FILE
    tmp = out_dir / f".{INDEX_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"version": 1, "images": kept + entries}, indent=1))
    os.replace(tmp, path)
    return path


def comparison_models(folder: Path, log: Callable[[str], None], epoch: str = "best") -> list[TrialModel]:
    """The best trial of each architecture x strategy that still has a checkpoint, best first."""
    models = []
    for trial_id, label in best_per_configuration(folder):
        try:
            models.append(load_trial(folder, trial_id, epoch=epoch))
        except DataError as e:
            log(f"skipping {label} (trial {trial_id}): {e}")
    if not models:
        raise DataError(f"{folder}: none of the best trials per configuration has a checkpoint to explain")
    return models


def explain_study(study_dir: str | os.PathLike, trial: Optional[str] = None,
                  images: Optional[Sequence[str]] = None, from_val: int = 8, methods: Optional[str] = None,
                  out: Optional[str | os.PathLike] = None, window: Optional[int] = None,
                  stride: Optional[int] = None, grid: tuple[int, int] = (10, 3), progress: bool = True,
                  log: Callable[[str], None] = print, epoch: str = "best") -> list[dict]:
    """Write the explanation PNGs of trial ``trial`` (an id or ``best``), or with no trial the side-by-side
    comparison of the best trial per architecture x strategy; returns the index entries written."""
    folder = Path(study_dir).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such study folder")
    names = parse_methods(methods)
    for option, value in (("--from-val", from_val), ("--window", window), ("--stride", stride)):
        if value is not None and value < 1:
            raise ConfigError(f"{option}: expected a positive number, got {value}")
    models = [load_trial(folder, trial, epoch=epoch)] if trial else comparison_models(folder, log, epoch)
    ref = models[0]
    if images:
        probes = from_files(list(images), ref.class_names, ref.image_size)
    else:
        probes = from_validation(ref.config, ref.image_size, from_val)
    rows, cols = grid

    def grid_probes(tm: TrialModel) -> Probes:
        return probes if images else from_validation(tm.config, tm.image_size, rows * cols)

    ctx = Context(models, probes, grid_probes, window, stride, grid, progress)
    out_dir = Path(out).expanduser().resolve() if out else folder / OUT_DIR
    prefix = f"trial-{ref.trial_id}" if trial else "compare"
    entries = []
    for name in names:
        start = time.perf_counter()
        made = METHODS.get(name)(ctx)
        if made is None:
            log(f"{name}: nothing to draw for these models (no convolution)")
            continue
        fig, title = made
        path = save(fig, out_dir / f"{prefix}-{name}.png")
        entries.append({"file": path.name, "method": name, "title": title,
                        "trials": [m.trial_id for m in models], "configurations": [m.label for m in models],
                        "images": list(probes.names)})
        log(f"{name}: {path} ({time.perf_counter() - start:.1f} s)")
    write_index(out_dir, entries)
    return entries
