"""Search domains in a study: ``{choice: [...]}``, ``{loguniform: [a, b]}``, ... with an optional ``when``.

A domain is parsed from its YAML mapping into a frozen :class:`Domain`; only its shape is checked here
(argument counts, numbers, bounds). Whether its values suit the trial field is checked by ``spec``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from trainables.errors import ConfigError, suggest

DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
FLOAT_KINDS = ("uniform", "loguniform", "quniform")  # Ray samples floats for these


@dataclass(frozen=True)
class Domain:
    """One searched trial field, e.g. ``Domain("training.lr", "loguniform", (1e-4, 1e-2))``.

    ``args`` holds the values (choice, grid), ``(low, high)`` (uniform, loguniform, randint; randint's high is
    exclusive, as in Ray) or ``(low, high, q)`` (quniform). ``when`` holds ``((dotted_key, (allowed, ...)), ...)``:
    the field is sampled only when every condition holds, otherwise it keeps its default.
    """

    path: str
    kind: str
    args: tuple
    when: tuple = ()

    def candidates(self) -> list:
        """Values that stand for the domain in type checks: every choice, or the ends of the range.

        Example:
            >>> Domain("training.epochs", "randint", (2, 6)).candidates()
            [2, 5]
        """
        if self.kind in ("choice", "grid"):
            return list(self.args)
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return [self.args[0], self.args[1]]

    def active(self, config: Mapping) -> bool:
        """Whether the ``when`` conditions hold for a nested trial config (sampled values included).

        Example:
            >>> d = Domain("model.unfreeze_k", "choice", (1, 2), (("model.strategy", ("unfreeze_last_k",)),))
            >>> d.active({"model": {"strategy": "full"}})
            False
        """
        for key, allowed in self.when:
            node: Any = config
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    return False
                node = node[part]
            if freeze(node) not in allowed:
                return False
        return True

    def to_yaml(self) -> dict:
        """The domain in its study-file form, e.g. ``{"choice": [1, 2], "when": {"model.strategy": ["full"]}}``."""
        out: dict = {self.kind: thaw(list(self.args))}
        if self.when:
            out["when"] = {key: thaw(list(values)) for key, values in self.when}
        return out


def freeze(value: Any) -> Any:
    """Lists -> tuples, recursively, so domains are hashable and compare equal after a round trip."""
    return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def thaw(value: Any) -> Any:
    """Tuples -> lists, recursively: the YAML form."""
    return [thaw(v) for v in value] if isinstance(value, (list, tuple)) else value


def looks_like_domain(value: Any) -> bool:
    """A mapping naming a domain kind (``{choice: ...}``), even a malformed one."""
    return isinstance(value, dict) and any(k in DOMAIN_KINDS for k in value)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_args(path: str, kind: str, raw: Any) -> tuple:
    if kind in ("choice", "grid"):
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: {kind} needs a list of values, got {raw!r}")
        if not raw:
            raise ConfigError(f"{path}: {kind} is empty")
        for v in raw:
            if isinstance(v, dict):
                raise ConfigError(f"{path}: {kind} values cannot be mappings, got {v!r}")
        return freeze(raw)
    shape, size = ("[low, high, q]", 3) if kind == "quniform" else ("[low, high]", 2)
    if not isinstance(raw, list) or len(raw) != size or not all(_is_number(x) for x in raw):
        raise ConfigError(f"{path}: {kind} needs {shape} numbers, got {raw!r}")
    low, high = raw[0], raw[1]
    if kind == "randint" and not all(isinstance(x, int) for x in raw):
        raise ConfigError(f"{path}: randint needs integer [low, high) bounds, got {raw!r}")
    if kind == "loguniform" and not 0 < low < high:
        raise ConfigError(f"{path}: loguniform needs 0 < low < high, got {raw!r}")
    if not low < high:
        raise ConfigError(f"{path}: {kind} needs low < high, got {raw!r}")
    if kind == "quniform" and not raw[2] > 0:
        raise ConfigError(f"{path}: quniform needs q > 0, got {raw!r}")
    return tuple(raw)


def parse_domain(path: str, spec: dict, earlier: Mapping[str, Any]) -> Domain:
    """Parse ``spec`` (a mapping from the study) into a Domain for trial key ``path``.

    ``earlier`` maps the dotted keys set before this one in the file to their constant or Domain: a ``when``
    may only refer to those.

    Example:
        >>> parse_domain("training.lr", {"loguniform": [1e-4, 1e-2]}, {})
        Domain(path='training.lr', kind='loguniform', args=(0.0001, 0.01), when=())
    """
    kinds = [k for k in spec if k in DOMAIN_KINDS]
    for key in spec:
        if key not in DOMAIN_KINDS and key != "when":
            raise ConfigError(f"{path}.{key}: unknown domain key{suggest(str(key), DOMAIN_KINDS + ('when',))}"
                              f" (a domain is one of {', '.join(DOMAIN_KINDS)}, plus an optional when)")
    if len(kinds) != 1:
        got = ", ".join(kinds) if kinds else "none"
        raise ConfigError(f"{path}: a search domain needs exactly one of {', '.join(DOMAIN_KINDS)}; got {got}")
    kind = kinds[0]
    args = _check_args(path, kind, spec[kind])
    when = _parse_when(path, spec["when"], earlier) if "when" in spec else ()
    return Domain(path, kind, args, when)


def _parse_when(path: str, raw: Any, earlier: Mapping[str, Any]) -> tuple:
    where = f"{path}.when"
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a mapping {{dotted key: value or [values]}}, got {raw!r}")
    conds = []
    for key, values in raw.items():
        key = str(key)
        if key not in earlier:
            raise ConfigError(f"{where}: refers to {key}, which is not set before this field"
                              f"{suggest(key, list(earlier))}")
        allowed = freeze(values) if isinstance(values, list) else (values,)
        if not allowed or any(isinstance(v, dict) for v in allowed):
            raise ConfigError(f"{where}: expected a value or a non-empty list of values for {key}, got {values!r}")
        ref = earlier[key]
        if isinstance(ref, Domain):
            if ref.kind not in ("choice", "grid"):
                raise ConfigError(f"{where}: refers to {key}, a {ref.kind} domain; conditions need a constant "
                                  f"or a choice/grid domain")
            never = [v for v in allowed if v not in ref.args]
            if never:
                raise ConfigError(f"{where}: {key} can never be {never[0]!r} (its {ref.kind}: "
                                  f"{', '.join(map(str, ref.args))}){suggest(str(never[0]), map(str, ref.args))}")
        conds.append((key, allowed))
    return tuple(conds)
