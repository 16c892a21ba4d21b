"""``tlsweep list [KIND [PATTERN]]``: every registry of names a study can hold, read where validation reads it.

Without a kind: one line per kind with its config key and names (models: how many, and how to list them). With
a kind: one line per name matching PATTERN (a glob), with the task it belongs to and its description. Nothing
here starts Ray.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Iterable

from trainables.errors import ConfigError, suggest

Row = tuple  # (name, task or "", description)
ABOUT = 100  # characters of a study's description shown


def _rows(registry, pattern: str, task: str = "") -> list[Row]:
    """Rows of a Registry (or any object with ``names()``, or an iterable of names)."""
    if hasattr(registry, "entries"):
        return [(n, task, d) for n, d in registry.entries(pattern)]
    names = registry.names(pattern) if hasattr(registry, "names") else sorted(
        n for n in registry if fnmatch.fnmatch(n, pattern))
    describe = getattr(registry, "describe", lambda n: "")
    return [(n, task, describe(n)) for n in names]


def _per_task(*registries) -> Callable[[str], list[Row]]:
    return lambda pattern: [row for r in registries for row in _rows(r, pattern, r.task or "")]


def _catalog(name: str) -> Callable[[str], list[Row]]:
    def rows(pattern: str) -> list[Row]:
        from trainables import catalog
        registry = getattr(catalog, name)
        return _rows(registry, pattern, registry.task or "")
    return rows


def _datasets(pattern: str) -> list[Row]:
    from trainables.catalog import DATASETS, SEG_DATASETS
    return _per_task(DATASETS, SEG_DATASETS)(pattern)


def _augmentations(pattern: str) -> list[Row]:
    from trainables.catalog import AUGMENTATIONS, SEG_AUGMENTATIONS
    return _per_task(AUGMENTATIONS, SEG_AUGMENTATIONS)(pattern)


def _models(pattern: str) -> list[Row]:
    from trainables.models import list_models
    return [(n, "", "") for n in list_models(pattern)]


def _studies(pattern: str) -> list[Row]:
    from search_spaces import find_study, list_studies
    from trainables.config import read_yaml
    rows = []
    for name in list_studies(pattern):
        try:
            about = str(read_yaml(find_study(name)).get("description") or "")
        except ConfigError:
            about = ""
        first = about.strip().split(". ")[0].split("\n")[0].rstrip(".")  # its first sentence, shortened
        rows.append((name, "", first if len(first) <= ABOUT else first[:ABOUT - 3].rsplit(" ", 1)[0] + " ..."))
    return rows


def _strategies(pattern: str) -> list[Row]:
    from trainables.freezing import STRATEGIES
    return _rows(STRATEGIES, pattern)


def _tasks(pattern: str) -> list[Row]:
    from trainables.tasks import TASKS
    return _rows(TASKS, pattern)


def _searchers(pattern: str) -> list[Row]:
    from orchestrator.searchers import SEARCHERS
    return _rows(SEARCHERS, pattern)


def _schedulers(pattern: str) -> list[Row]:
    from orchestrator.schedulers import SCHEDULERS
    return _rows(SCHEDULERS, pattern)


def _scores(pattern: str) -> list[Row]:
    from analysis.transferability import SCORES
    return _rows(SCORES, pattern)


def _loggers(pattern: str) -> list[Row]:
    from orchestrator.loggers import LOGGERS
    return _rows(LOGGERS, pattern)


# kind -> (the study key its names go in, its rows)
KINDS: dict[str, tuple[str, Callable[[str], list[Row]]]] = {
    "models": ("model.arch", _models),
    "datasets": ("data.name", _datasets),
    "studies": ("tlsweep run STUDY", _studies),
    "tasks": ("task", _tasks),
    "strategies": ("model.strategy", _strategies),
    "augmentations": ("data.augment", _augmentations),
    "optimizers": ("training.optimizer", _catalog("OPTIMIZERS")),
    "lr-schedules": ("training.scheduler", _catalog("LR_SCHEDULES")),
    "activations": ("model.activation", _catalog("ACTIVATIONS")),
    "losses": ("training.loss", _catalog("LOSSES")),
    "decoders": ("model.decoder", _catalog("DECODERS")),
    "searchers": ("search.algorithm", _searchers),
    "schedulers": ("search.scheduler", _schedulers),
    "loggers": ("logging", _loggers),
    "scores": ("search.preselect.score", _scores),
}


def kind_rows(kind: str, pattern: str = "*") -> list[Row]:
    """The rows of one kind; an unknown kind is a ConfigError with the close matches.

    Example:
        >>> [row[:2] for row in kind_rows("datasets", "sha*")]
        [('shapes', 'classification'), ('shapes', 'segmentation')]
    """
    if kind not in KINDS:
        raise ConfigError(f"list: unknown kind {kind!r}{suggest(kind, KINDS) or ' (kinds: ' + ', '.join(KINDS) + ')'}")
    return KINDS[kind][1](pattern)


def format_rows(rows: Iterable[Row]) -> str:
    """Aligned columns: name, task (when any row has one), description (when any has one)."""
    rows = list(rows)
    cols = [[r[0] for r in rows]] + [[r[i] for r in rows] for i in (1, 2) if any(r[i] for r in rows)]
    widths = [max(map(len, c)) for c in cols[:-1]]
    lines = ["  ".join([v.ljust(w) for v, w in zip(vals[:-1], widths)] + [vals[-1]]).rstrip() for vals in zip(*cols)]
    return "\n".join(lines)


def _model_counts(names: list[str]) -> str:
    from trainables.models.scratch import LOCAL_MODELS
    prefixed: dict[str, int] = {}
    for n in names:
        if ":" in n:
            prefix = n.split(":", 1)[0] + ":"
            prefixed[prefix] = prefixed.get(prefix, 0) + 1
    timm = len(names) - sum(prefixed.values()) - sum(n in LOCAL_MODELS for n in names)
    return ", ".join([*LOCAL_MODELS, f"{timm} timm"] + [f"{c} {p}<name>" for p, c in prefixed.items()])


def overview() -> str:
    """Each kind, its study key and its names (models: their number)."""
    lines = []
    for kind, (key, rows_of) in KINDS.items():
        rows = rows_of("*")
        if kind == "models":
            names = f"{len(rows)} names ({_model_counts([n for n, _, _ in rows])}): tlsweep list models 'resnet*'"
        else:
            tasks = list(dict.fromkeys(t for _, t, _ in rows))
            names = "; ".join((f"{t}: " if t else "") + ", ".join(n for n, rt, _ in rows if rt == t) for t in tasks)
        lines.append(f"{kind:<14} {key:<19} {names}")
    lines.append("tlsweep list KIND [PATTERN]: one kind, with descriptions")
    return "\n".join(lines)
