"""A backbone's frozen features on a target split, for transferability scores (``tlsweep rank``).

The features are the input of the classifier head in eval mode, the same entry of the frozen-feature cache
(:mod:`trainables.feature_cache`) that a linear-probe trial of the same architecture, weights and data reads: so
ranking computes them once, and the sweep (or a later ranking) reuses them. When the weights come with their
source classifier (the pretraining stage's checkpoints, a ``file:`` checkpoint holding its head), that head is
applied to the cached features to give the source logits LEEP needs.

Example:
    >>> ff = frozen_features({"data": {"name": "digits", "image_size": 16, "samples_per_class": 5},
    ...                       "model": {"arch": "scratch_cnn", "conv_layers": 2, "dense_units": 16}})
    >>> ff.features.shape, ff.source_logits is None
    ((50, 16), True)
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from trainables.config import trial_config
from trainables.feature_cache import head_input, head_module, key_parts, load_or_compute, state_digest


@dataclass
class FrozenFeatures:
    arch: str
    features: np.ndarray                  # n x D, float32: the head's input
    labels: np.ndarray                    # n
    source_logits: Optional[np.ndarray]   # n x Z from the source head, or None when there is none
    seconds: float                        # building the model and reading or computing the features
    cached: bool                          # read from the frozen-feature cache (not computed now)
    weights: str


def _source_head(weights: object, head_params: list[str], head_name: str) -> Optional[dict]:
    """The source classifier's tensors, named inside the head module, from a ``file:`` checkpoint (or None)."""
    if not (isinstance(weights, str) and weights.startswith("file:")):
        return None
    from trainables.models.weights import read_state_dict
    state = read_state_dict(weights[len("file:"):])
    if not all(p in state for p in head_params):
        return None
    prefix = f"{head_name}." if head_name else ""
    return {p[len(prefix):]: state[p].float() for p in head_params}


def frozen_features(trial: dict, split: str = "train", log: Callable[[str], None] = lambda line: None
                    ) -> FrozenFeatures:
    """Features of ``split`` (default: the target's training split) under a trial config's model and weights."""
    from trainables.classification import Trainer
    start = time.perf_counter()
    cfg = trial_config(copy.deepcopy(trial))
    trainer = Trainer(cfg)
    bundle, model, pre = trainer.bundle, trainer.model, trainer.task.pre
    model.eval()
    head = head_module(model, bundle.head)
    head_name = next(n for n, m in model.named_modules() if m is head)
    names = set(bundle.head)
    common = dict(key_parts(cfg, model, pre, trainer.amp), kind="features",
                  weights=state_digest(model, lambda n: n not in names))
    log(f"rank {cfg.model.arch}: features of the {split} split ({len(trainer.data.splits[split])} images)")
    cached = load_or_compute("features", head_name, common, lambda x: head_input(model, head, x)[0], head,
                             {split: trainer.data.splits[split]}, pre, trainer._autocast, cfg)
    raw = cached.splits[split].images.float()
    feats = raw.flatten(1)
    source = _source_head(cfg.model.weights, bundle.head, head_name)
    logits = None
    if source is not None:
        with torch.no_grad():
            logits = torch.func.functional_call(head, source, (raw.to(pre.device),)).float().cpu().numpy()
    return FrozenFeatures(cfg.model.arch, feats.numpy(), cached.splits[split].labels.numpy(), logits,
                          time.perf_counter() - start, split in cached.loaded, str(cfg.model.weights))


__all__ = ["FrozenFeatures", "frozen_features"]
