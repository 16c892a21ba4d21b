"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A bad value in a study or trial config (names the offending key)."""


class DataError(ValueError):
    """Missing, empty or unreadable data (names the offending path)."""


class WeightsError(ValueError):
    """Pretrained weights that cannot be found, read or applied."""


USER_ERRORS = (ConfigError, DataError, WeightsError)


def suggest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """Return ' (did you mean: a, b?)' for the valid names closest to ``name``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
