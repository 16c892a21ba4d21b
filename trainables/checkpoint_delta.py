"""Checkpoints that hold only the weights that changed from the trial's base.

A trial's *base* is its model as built at the start: the pretrained weights loaded, nothing trained yet. Every
epoch's checkpoint keeps, in ``model``, only the tensors that differ from it (``torch.equal``: a BatchNorm of a
frozen layer that is in train mode moves, and is kept) plus a ``base`` record: the weights it was built from
(``weights``), the names of the tensors left out (``keys``) and a sha256 of them (``digest``). Only tensors that
came from the pretrained weights are ever left out: a model built with ``weights: none`` (random init), the new
head and its buffers are always stored, so nothing assumes a random init can be drawn again. Full fine-tuning
changes every tensor after one epoch, so its checkpoints are full ones, without a ``base`` record, as before.

Readers get full weights from one function, :func:`full_weights`; the base is rebuilt the way the trial built it
(:func:`rebuild_base`, or the Trainer's own model before it restores) and checked against the digest, so a
different base is an error naming the checkpoint, never silently wrong weights. Checkpoints without ``base``
(older ones, scratch models, ``full``) are full and load as they are.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> base = Base.of(net, head=["1.weight", "1.bias"], weights="file:pretrained.pt")
    >>> with torch.no_grad():
    ...     _ = net[1].weight.add_(1.0)
    >>> model, record = base.split(net.state_dict())
    >>> sorted(model), record["keys"]
    (['1.bias', '1.weight'], ['0.bias', '0.weight'])
    >>> full = full_weights({"model": model, "base": record}, base.tensors, "ckpt.pt")
    >>> all(torch.equal(full[k], v) for k, v in net.state_dict().items())
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Iterable, Optional, Union

import torch
from torch import nn

from trainables.errors import DataError

BASE_KEY = "base"
Tensors = dict[str, torch.Tensor]


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of one tensor's dtype, shape and raw bytes."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)};".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def combined_digest(per_tensor: dict[str, str], keys: Iterable[str]) -> str:
    """sha256 over ``keys`` (sorted) and their tensors' digests: the identity of what a checkpoint left out."""
    h = hashlib.sha256()
    for k in sorted(keys):
        h.update(f"{k}={per_tensor[k]};".encode())
    return h.hexdigest()


def _head_modules(head: Iterable[str]) -> set[str]:
    return {k.rpartition(".")[0] for k in head}


def _pretrained(weights) -> bool:
    return weights not in (None, "none", False)


class Base:
    """The tensors of a trial's model that came from its pretrained weights, as built (CPU copies)."""

    def __init__(self, tensors: Tensors, weights):
        self.tensors = tensors
        self.weights = weights
        self._digests: dict[str, str] = {}

    @classmethod
    def of(cls, model: nn.Module, head: Iterable[str], weights) -> "Base":
        """Snapshot ``model`` now (before any training). Nothing for random-init weights; never the head (its
        parameters and the buffers of its modules)."""
        if not _pretrained(weights):
            return cls({}, weights)
        head = set(head)
        head_mods = _head_modules(head)
        tensors = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                   if k not in head and k.rpartition(".")[0] not in head_mods}
        return cls(tensors, weights)

    def digest(self, keys: Iterable[str]) -> str:
        keys = list(keys)
        for k in keys:
            if k not in self._digests:
                self._digests[k] = tensor_digest(self.tensors[k])
        return combined_digest(self._digests, keys)

    def split(self, current: Tensors) -> tuple[Tensors, Optional[dict]]:
        """``current`` -> (the tensors that differ from the base, the ``base`` record or None when none is left
        out). Exact comparison: same dtype, shape and values. A tensor that moved is dropped from the base (from
        then on it is stored: still exact, and full fine-tuning does not keep a second copy of the model)."""
        model, same = {}, []
        for k, v in current.items():
            b = self.tensors.get(k)
            c = v.detach()
            if b is not None and c.dtype == b.dtype and c.shape == b.shape and torch.equal(c.cpu(), b):
                same.append(k)
            else:
                model[k] = v
                self.tensors.pop(k, None)
        if not same:
            return model, None
        return model, {"weights": str(self.weights), "keys": sorted(same), "digest": self.digest(same)}


def is_delta(state: dict) -> bool:
    """Whether a checkpoint leaves tensors out (and needs its base to be rebuilt)."""
    return isinstance(state.get(BASE_KEY), dict) and bool(state[BASE_KEY].get("keys"))


def full_weights(state: dict, base: Union[Tensors, Callable[[], Tensors], None], source: str = "checkpoint"
                 ) -> Tensors:
    """The full weights of a checkpoint's own epoch: ``model`` over its rebuilt base.

    ``base``: the base's tensors, or a function building them (called only for a delta checkpoint). A base that
    lacks a left-out tensor or whose left-out tensors hash differently raises DataError naming ``source``.
    """
    model = state["model"]
    if not is_delta(state):
        return model
    record = state[BASE_KEY]
    keys = [str(k) for k in record["keys"]]
    if base is None:
        raise DataError(f"{source}: holds only the weights that changed from its base ({record.get('weights')}); "
                        f"the base is needed to load it")
    tensors = base() if callable(base) else base
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise DataError(f"{source}: its base ({record.get('weights')}) has no {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''}: built from other weights or another architecture")
    digests = {k: tensor_digest(tensors[k]) for k in keys}
    if combined_digest(digests, keys) != record.get("digest"):
        raise DataError(f"{source}: the {len(keys)} tensors this checkpoint leaves out differ from its rebuilt base "
                        f"({record.get('weights')}: digest {combined_digest(digests, keys)[:12]}, the checkpoint's "
                        f"{str(record.get('digest'))[:12]}); the pretrained weights changed since it was written")
    return {**{k: tensors[k] for k in keys}, **model}


def best_weights(state: dict, full: Tensors) -> Tensors:
    """The best epoch's full weights, given the checkpoint's own (``best_model``: the tensors that differ)."""
    return {**full, **(state.get("best_model") or {})}


def rebuild_base(state: dict, source: str = "checkpoint") -> Tensors:
    """Build a delta checkpoint's base as its trial did (its config, its ``base.weights``, seeded the same), for
    readers without a Trainer (``model.weights: file:<checkpoint>``)."""
    from trainables.config import TrainingConfig, trial_config
    tree = state.get("config")
    if not isinstance(tree, dict):
        raise DataError(f"{source}: a delta checkpoint without the trial config to rebuild its base")
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    tree = {**tree, "model": {**(tree.get("model") or {}), "weights": state[BASE_KEY].get("weights")},
            "training": {k: v for k, v in (tree.get("training") or {}).items() if k in known}}
    cfg = trial_config(tree)
    n = len(state.get("class_names") or [])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # as the task did; only the pretrained tensors are compared anyway
        if cfg.task == "segmentation":
            from trainables.segmentation.models import build_seg_model
            bundle = build_seg_model(cfg.model, n)
        else:
            from trainables.models import build_model
            bundle = build_model(cfg.model, n, cfg.data.image_size)
    return bundle.model.state_dict()


def checkpoint_weights(state: dict, source: str = "checkpoint") -> Tensors:
    """The full weights of any checkpoint's own epoch, rebuilding its base when it is a delta one."""
    return full_weights(state, lambda: rebuild_base(state, source), source)
