"""``search.preselect``: rank the study's architectures by a transferability score of their frozen features
before the main search, and sweep only the best ones::

    search:
      preselect: {score: logme, top_k: 3}     # or top_k: 0.5, a fraction of the scored architectures

Only architectures with pretrained weights are scored (the pretraining stage's, ``imagenet`` or ``file:``); those
trained from scratch (``pretrain.skip``) have nothing to rank and stay in the sweep as baselines. The scores are
``tlsweep list scores`` (analysis.transferability.SCORES).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

from trainables.errors import ConfigError

KEYS = ("score", "top_k")
FORM = "{score: logme, top_k: 3} (top_k: a number of architectures, or a fraction in (0, 1))"


@dataclass
class PreselectSpec:
    score: str = "logme"
    top_k: Union[int, float] = 3

    def keep(self, scored: int) -> int:
        """How many of ``scored`` architectures to keep (a fraction rounds up, at least one).

        Example:
            >>> PreselectSpec(top_k=0.5).keep(5), PreselectSpec(top_k=2).keep(5)
            (3, 2)
        """
        if isinstance(self.top_k, float):
            return max(1, math.ceil(self.top_k * scored))
        return min(self.top_k, scored)


def parse_preselect(raw: Any) -> Optional[PreselectSpec]:
    """The ``search.preselect`` mapping (None or absent: no preselection); one line per mistake."""
    from analysis.transferability import SCORES  # numpy only
    path = "search.preselect"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping like {FORM}, got {raw!r}")
    from search_spaces.sections import check_keys
    check_keys(path, raw, KEYS)
    score = raw.get("score", "logme")
    if not isinstance(score, str):
        raise ConfigError(f"{path}.score: expected a score name ({', '.join(SCORES.names())}), got {score!r}")
    SCORES.check(score)
    top_k = raw.get("top_k", 3)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) \
            or (isinstance(top_k, int) and top_k < 1) or (isinstance(top_k, float) and not 0 < top_k < 1):
        raise ConfigError(f"{path}.top_k: expected a number of architectures (an int >= 1) or a fraction in "
                          f"(0, 1), got {top_k!r}")
    return PreselectSpec(score, top_k)


def scorable(study) -> tuple[list[str], list[str]]:
    """(architectures with pretrained weights to score, those trained from scratch) of a study's model.arch."""
    arch = next((d for d in study.domains if d.path == "model.arch"), None)
    archs = list(dict.fromkeys(arch.args)) if arch is not None and arch.kind in ("choice", "grid") else []
    weights = study.trial.get("model", {}).get("weights", "none")
    out: tuple[list, list] = ([], [])
    for a in archs:
        if study.pretrain is not None:
            pretrained = a not in study.pretrain.skip
        else:
            pretrained = weights not in (None, "none", False)
        out[0 if pretrained else 1].append(a)
    return out


def check_preselect(study) -> None:
    """What ``search.preselect`` needs from the rest of the study: architectures to choose from, with weights."""
    from analysis.transferability import needs_source
    spec = study.search.preselect
    if spec is None:
        return
    arch = next((d for d in study.domains if d.path == "model.arch"), None)
    if arch is None or arch.kind not in ("choice", "grid"):
        raise ConfigError("search.preselect: needs model.arch as a grid or choice of architectures to choose from")
    if arch.when:
        raise ConfigError("search.preselect: model.arch must not be conditional (when:) to be preselected")
    scored, scratch = scorable(study)
    if not scored:
        raise ConfigError(f"search.preselect: no architecture of model.arch has pretrained weights to score "
                          f"({', '.join(scratch)} train from scratch); set model.weights")
    if isinstance(spec.top_k, int) and spec.top_k >= len(scored):
        raise ConfigError(f"search.preselect.top_k: {spec.top_k} keeps all {len(scored)} architectures with "
                          f"pretrained weights ({', '.join(scored)}); nothing would be left out")
    if needs_source(spec.score):
        weights = study.trial.get("model", {}).get("weights")
        if study.pretrain is None and not (isinstance(weights, str) and weights.startswith("file:")):
            raise ConfigError(f"search.preselect.score: {spec.score} needs the source classifier: model.weights "
                              f"{{pretrain: ...}} or file:<checkpoint with its head>")
