"""Prepared data that trials can share: a hook the orchestrator fills; without it, plain :func:`prepare`.

Every trial of a study usually trains on the same images at the same size. Under Ray the orchestrator installs a
provider (``orchestrator.data_share``) that decodes a data set once per node and lets the other trials read the
same uint8 arrays from Ray's object store; here, with no Ray in sight, the trainables only say *what* is shared
(:func:`spec_key`: every data field that changes the decoded images, the image size and a fingerprint of the
raw source) and *how* it travels (:func:`to_arrays` / :func:`from_arrays`: numpy arrays, which Ray reads
without copying). ``data.share: false`` always decodes in the trial.

Example:
    >>> from trainables.config import DataConfig
    >>> from trainables.data import load_raw
    >>> cfg = DataConfig(name="digits")
    >>> prepared(load_raw(cfg), cfg, 16).splits["train"].images.shape[1:]   # no provider: plain prepare
    torch.Size([3, 16, 16])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from typing import Callable, Optional

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.base import ImageData, RawData, Split, TensorSource, prepare

Provider = Callable[[RawData, DataConfig, int], ImageData]

# DataConfig fields that never change the decoded images: augmentation runs per batch, loader processes and
# the memory limit only decide how (lazily or not) the same pixels are read, the decoded cache where from.
# Every other field, including any added later, is part of the key: an unknown field costs sharing, never
# correctness.
NOT_CONTENT = frozenset({"augment", "num_workers", "share", "download", "memory_limit_mb", "sample_images",
                         "decoded_cache"})

_provider: Optional[Provider] = None


def set_provider(fn: Optional[Provider]) -> Optional[Provider]:
    """Install ``fn(raw, cfg, image_size) -> ImageData`` for this process (None: plain prepare); returns the old."""
    global _provider
    previous, _provider = _provider, fn
    return previous


def prepared(raw: RawData, cfg: DataConfig, image_size: int) -> ImageData:
    """The trial's :class:`ImageData`: from the installed provider when ``cfg.share``, else ``prepare``."""
    if _provider is None or not cfg.share:
        return prepare(raw, cfg, image_size)
    return _provider(raw, cfg, image_size)


def fingerprint(raw: RawData) -> dict:
    """What identifies the raw source cheaply: class names, split sizes, file paths and labels, sampled pixels."""
    out: dict = {"name": raw.name, "classes": [str(c) for c in raw.class_names]}
    for name, src in sorted(raw.splits.items()):
        h = hashlib.sha1(np.ascontiguousarray(src.labels.numpy()).tobytes())
        if isinstance(src, TensorSource):
            flat = src.images.reshape(-1)
            h.update(np.ascontiguousarray(flat[::max(1, flat.numel() // 65536)].numpy()).tobytes())
            out[name] = ["tensor", list(src.images.shape), str(src.images.dtype), h.hexdigest()]
        else:
            for p in src.paths:
                h.update(str(p).encode() + b"\0")
            out[name] = ["files", len(src.paths), h.hexdigest()]
    return out


def spec_key(raw: RawData, cfg: DataConfig, image_size: int) -> str:
    """A content key: equal keys mean equal prepared images, labels and splits."""
    spec = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_CONTENT}
    spec["image_size"] = int(image_size)
    spec["raw"] = fingerprint(raw)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def describe(cfg: DataConfig, image_size: int) -> str:
    classes = f", {len(cfg.classes)} classes" if cfg.classes else ""
    return f"{cfg.name} at {image_size} px{classes}"


def to_arrays(data: ImageData) -> Optional[dict]:
    """A picklable dict of contiguous numpy arrays; None for data decoded lazily (file lists are not shared)."""
    if not all(isinstance(s.images, torch.Tensor) for s in data.splits.values()):
        return None
    return {"splits": {name: (np.ascontiguousarray(s.images.numpy()), np.ascontiguousarray(s.labels.numpy()))
                       for name, s in data.splits.items()},
            "class_names": list(data.class_names), "image_size": data.image_size, "name": data.name,
            "dropped": list(data.dropped), "skipped": list(data.skipped)}


def from_arrays(arrays: dict) -> ImageData:
    """Rebuild :class:`ImageData` without copying: read-only arrays (the object store's) stay shared."""
    splits = {}
    with warnings.catch_warnings():  # torch warns that the arrays are read-only; the loop only indexes them
        warnings.simplefilter("ignore", UserWarning)
        for name, (images, labels) in arrays["splits"].items():
            splits[name] = Split(torch.from_numpy(images), torch.from_numpy(labels))
    return ImageData(splits, list(arrays["class_names"]), arrays["image_size"], arrays["name"],
                     dropped=list(arrays["dropped"]), skipped=list(arrays["skipped"]))


def nbytes(arrays: dict) -> int:
    return sum(i.nbytes + lab.nbytes for i, lab in arrays["splits"].values())
