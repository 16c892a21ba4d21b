"""Frozen-feature cache: run a frozen backbone over a data set once, then train only the head on its outputs.

Every linear-probe trial (and the first phase of ``two_phase``) repeats the same forward pass of the same frozen
backbone over the same images. When that pass is a pure function of the image (no augmentation, nothing random
or batch-dependent between the images and the head in training mode) its result, the input of the head module,
is computed once per (architecture and its options, backbone weights, split contents, preprocessing, precision,
device kind) and stored content-addressed on disk, ``$TLSWEEP_FEATURE_CACHE`` or ``$TLSWEEP_CACHE/features``
(default ``~/.cache/tlsweep/features``). Trials in other processes and later studies reuse it; the first process
that needs an entry computes it while the others wait on a lock file next to it. The trial then trains the head
on the stored features: the same batches, head initialisation and optimizer steps as training on images, so
the results agree up to float noise. For ``partial`` freezing, :mod:`trainables.prefix_cache` caches the output
of the frozen leading modules the same way.

Nothing is kept in memory between trials: every trial hashes its own weights and splits and reads the entry.

Example:
    >>> from trainables.classification import train
    >>> rows = []
    >>> _ = train({"data": {"name": "digits", "image_size": 16},
    ...            "model": {"arch": "scratch_cnn", "conv_layers": 2, "dropout": 0.0, "strategy": "linear_probe"},
    ...            "training": {"epochs": 1}}, rows.append)
    >>> rows[0]["feature_cache"]
    1
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from trainables.checkpoint import read, write_atomic
from trainables.config import TrialConfig
from trainables.data.base import Split
from trainables.freezing import Plan, set_train_mode
from trainables.inputs import CachedInputs, ImageInputs
from trainables.models import ModelBundle
from trainables.progress import Progress
from trainables.transforms import Preprocess

log = logging.getLogger(__name__)

FORMAT = 1           # bump when what an entry holds, or how it is computed, changes
PROBE_IMAGES = 4     # images of the run-time checks
# ModelConfig fields that do not change what the frozen part computes (the weights are hashed instead)
NOT_ARCHITECTURE = ("weights", "strategy", "freeze_depth", "freeze_unit", "unfreeze_k", "head_epochs",
                    "backbone_lr_mult")


def cache_dir() -> Path:
    """Where entries live: ``$TLSWEEP_FEATURE_CACHE``, else ``$TLSWEEP_CACHE/features`` (``~/.cache/tlsweep``)."""
    if os.environ.get("TLSWEEP_FEATURE_CACHE"):
        return Path(os.environ["TLSWEEP_FEATURE_CACHE"]).expanduser()
    return Path(os.environ.get("TLSWEEP_CACHE", Path.home() / ".cache" / "tlsweep")).expanduser() / "features"


class Unsafe(Exception):
    """The cache would not reproduce training on images; the message says why."""


# ---- content hashes --------------------------------------------------------------------------------------
def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)};".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # the raw bytes, without a copy


def state_digest(model: nn.Module, keep: Callable[[str], bool]) -> str:
    """sha256 of the parameters and buffers whose names ``keep`` accepts (the weights' identity)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if keep(name):
            h.update(name.encode())
            _hash_tensor(h, t)
    return h.hexdigest()


def split_digest(split: Split) -> str:
    """sha256 of a split's contents: its uint8 images and labels (lazy sets: paths, sizes, mtimes, image size)."""
    h = hashlib.sha256()
    _hash_tensor(h, split.labels)
    if isinstance(split.images, torch.Tensor):
        _hash_tensor(h, split.images)
    else:
        h.update(f"lazy {split.images.size};".encode())
        for p in split.images.paths:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def entry_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def key_parts(cfg: TrialConfig, model: nn.Module, pre: Preprocess, amp: Optional[torch.dtype]) -> dict:
    """What every entry of a trial is keyed on besides the weights, the split and the kind of cache."""
    import timm
    import torchvision
    arch = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in NOT_ARCHITECTURE}
    parts = {"format": FORMAT, "arch": arch, "module": f"{type(model).__module__}.{type(model).__qualname__}",
             "mean": pre.mean.flatten().tolist(), "std": pre.std.flatten().tolist(), "amp": str(amp),
             "device": pre.device.type, "versions": [torch.__version__, torchvision.__version__, timm.__version__]}
    if getattr(model, "cache_key", None):  # what the arch name does not pin down (hf: a folder's config.json)
        parts["model_key"] = model.cache_key
    return parts


# ---- the store: one file per entry, computed once under a lock, written atomically ---------------------------
def _read_entry(path: Path, labels: torch.Tensor) -> Optional[torch.Tensor]:
    if not path.is_file():
        return None
    try:
        entry = read(path)
        features = entry["features"]
        if torch.equal(entry["labels"], labels) and isinstance(features, torch.Tensor) \
                and len(features) == len(labels):
            return features
        log.warning("feature cache: %s does not match its key; computing it again", path)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is recomputed, never trusted
        log.warning("feature cache: cannot read %s (%s: %s); computing it again", path, type(e).__name__, e)
    return None


def fetch(path: Path, compute: Callable[[], torch.Tensor], labels: torch.Tensor, meta: dict
          ) -> tuple[torch.Tensor, bool]:
    """The entry at ``path`` and whether this call computed it.

    The first process to need it computes it while holding ``<entry>.lock`` (``fcntl.flock``; the OS releases it
    if the process dies); the others block on the lock, then read the file (``write_atomic``: never half-written).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")
    except OSError as e:
        log.warning("feature cache: %s is not writable (%s); computing without storing", path.parent, e)
        return compute(), True
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        features = _read_entry(path, labels)
        if features is not None:
            return features, False
        start = time.perf_counter()
        features = compute()
        meta = dict(meta, seconds=time.perf_counter() - start, pid=os.getpid(), created=time.time(),
                    shape=list(features.shape))
        try:
            write_atomic({"features": features, "labels": labels, "meta": meta}, path)
        except OSError as e:  # a full disk costs the reuse, not the trial
            log.warning("feature cache: cannot write %s (%s)", path, e)
        return features, True


# ---- running the frozen part ---------------------------------------------------------------------------------
def batches(split: Split, batch_size: int, num_workers: int = 0) -> Iterator[torch.Tensor]:
    """uint8 image batches of a split in order (in-memory tensors are sliced; lazy sets are decoded)."""
    if isinstance(split.images, torch.Tensor):
        for s in range(0, len(split), batch_size):
            yield split.images[s:s + batch_size]
    else:
        for x, _ in torch.utils.data.DataLoader(split.images, batch_size=batch_size, num_workers=num_workers):
            yield x


@torch.no_grad()
def run_over(fn: Callable[[torch.Tensor], torch.Tensor], split: Split, pre: Preprocess, autocast,
             num_workers: int, what: str = "frozen features") -> torch.Tensor:
    outs = []
    with Progress(f"computing {what}", len(split), "images") as progress:
        for x in batches(split, 256, num_workers):
            with autocast():
                outs.append(fn(pre(x, train=False)).cpu())
            progress.add(len(x))
    return torch.cat(outs)


def probe_batch(splits: dict[str, Split], pre: Preprocess) -> torch.Tensor:
    return pre(next(batches(splits["train"], PROBE_IMAGES)), train=False)


def close(a, b) -> bool:
    """Same shape and values up to float noise (dropout or batch statistics differ by far more)."""
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5))


@contextlib.contextmanager
def training_mode(model: nn.Module, frozen_bn: list[nn.Module], device: torch.device):
    """The model as it trains (frozen BatchNorm in eval mode); RNG and buffers are put back afterwards."""
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        set_train_mode(model, frozen_bn)
        try:
            yield
        finally:
            model.eval()
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(buffers[n])


def impurity(named: Iterator[tuple[str, nn.Module]], frozen_bn: list[nn.Module]) -> Optional[str]:
    """Why these modules are not a pure function of their input while training (None: they are)."""
    frozen = {id(m) for m in frozen_bn}
    for name, m in named:
        label = name or type(m).__name__
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in frozen:
            return f"{label}: BatchNorm uses batch statistics in training"
        if isinstance(m, nn.modules.instancenorm._InstanceNorm) and m.track_running_stats:
            return f"{label}: InstanceNorm tracks running statistics"
        kind = type(m).__name__.lower()
        probs = [getattr(m, a, 0) for a in ("p", "drop_prob", "drop_rate")]
        if ("drop" in kind or "stochasticdepth" in kind) and any(isinstance(p, float) and p > 0 for p in probs):
            return f"{label}: {type(m).__name__} is random in training"
        rate = getattr(m, "drop_rate", 0)
        if isinstance(rate, (int, float)) and rate > 0:  # timm applies F.dropout(p=drop_rate) before its head
            return f"{label}: drop_rate {rate} before the head"
    return None


# ---- the head's input ----------------------------------------------------------------------------------------
def head_module(model: nn.Module, head: list[str]) -> nn.Module:
    """The module whose parameters are exactly the bundle's head (the deepest one, if nested)."""
    want = set(head)
    found = [(name, m) for name, m in model.named_modules()
             if {f"{name}.{p}" if name else p for p, _ in m.named_parameters()} == want]
    if not found:
        raise Unsafe("no module holds exactly the head's parameters")
    return max(found, key=lambda nm: nm[0].count(".") + bool(nm[0]))[1]


def head_input(model: nn.Module, head: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of ``head``, model output) for images ``x``."""
    seen = []

    def grab(_m, args):
        seen.append(args[0] if len(args) == 1 else None)
    handle = head.register_forward_pre_hook(grab)
    try:
        out = model(x)
    finally:
        handle.remove()
    if len(seen) != 1 or not isinstance(seen[0], torch.Tensor):
        raise Unsafe(f"the head is called {len(seen)} times per forward, or not on one tensor")
    return seen[0], out


def _features(cfg: TrialConfig, bundle: ModelBundle, frozen_bn: list[nn.Module], splits: dict[str, Split],
              pre: Preprocess, autocast, amp) -> CachedInputs:
    model = bundle.model
    if cfg.model.drop_rate > 0:
        raise Unsafe(f"model.drop_rate {cfg.model.drop_rate}: dropout between backbone and head")
    head = head_module(model, bundle.head)
    inside = {id(m) for m in head.modules()}
    why = impurity(((n, m) for n, m in model.named_modules() if id(m) not in inside), frozen_bn)
    if why:
        raise Unsafe(why)
    x = probe_batch(splits, pre)
    model.eval()
    with torch.no_grad(), autocast():
        feats, out = head_input(model, head, x)
        if not close(head(feats), out):
            raise Unsafe("the head's output is not the model's output")
        with training_mode(model, frozen_bn, pre.device):
            again = head_input(model, head, x)[0]
    if not close(again, feats):
        raise Unsafe("the backbone computes something else in training mode")

    def extract(images: torch.Tensor) -> torch.Tensor:
        return head_input(model, head, images)[0]
    head_names = set(bundle.head)
    common = dict(key_parts(cfg, model, pre, amp), kind="features",
                  weights=state_digest(model, lambda n: n not in head_names))
    head_name = next(n for n, m in model.named_modules() if m is head)
    return load_or_compute("features", head_name, common, extract, head, splits, pre, autocast, cfg)


def load_or_compute(kind: str, boundary: str, common: dict, fn: Callable, forward: Callable,
                    splits: dict[str, Split], pre: Preprocess, autocast, cfg: TrialConfig) -> CachedInputs:
    cached = CachedInputs(kind, {}, forward, pre.device, boundary, pre.memory_format)
    folder = cache_dir() / cfg.model.arch.replace(":", "_").replace("/", "_")
    for name, split in splits.items():
        parts = dict(common, split=name, data=split_digest(split))
        path = folder / f"{kind}-{entry_key(parts)}.pt"
        meta = {"kind": kind, "arch": cfg.model.arch, "split": name, "data": dataclasses.asdict(cfg.data),
                "key": json.dumps(parts, sort_keys=True, default=str)}
        labels = split.labels.cpu()  # the images (and labels) may be held on the GPU (trainables.placement)
        what = f"{cfg.model.arch} {kind} of the {name} split"
        features, computed = fetch(path, lambda: run_over(fn, split, pre, autocast, cfg.data.num_workers, what),
                                   labels, meta)
        cached.splits[name] = Split(features, labels)
        (cached.computed if computed else cached.loaded).append(name)
    return cached


def for_phase(cfg: TrialConfig, bundle: ModelBundle, plan: Plan, frozen_bn: list[nn.Module], images: ImageInputs,
              autocast, amp: Optional[torch.dtype], world: int) -> tuple[Optional[CachedInputs], str]:
    """The cached inputs this phase trains on, or None; and a line saying which cache applies or why none does.

    The head-input cache applies when only the head trains (``linear_probe``, ``two_phase``'s first phase, ...);
    the prefix cache when leading modules are frozen (``partial``, ``unfreeze_last_k``; not the second phase of
    ``two_phase``). Both need ``training.feature_cache`` on, ``data.augment: none`` and one process per trial.
    """
    from trainables.prefix_cache import frozen_prefix
    t = cfg.training
    splits, pre = images.splits, images.pre
    if not t.feature_cache:
        return None, "training.feature_cache is off"
    if cfg.data.augment != "none" or pre.augment is not None or pre.batch_augment is not None:
        return None, f"data.augment is {cfg.data.augment}"
    if world > 1:
        return None, "data-parallel trial"
    if all(name in plan.trainable for name, _ in bundle.model.named_parameters()):
        return None, "every parameter trains"
    head_only = plan.trainable <= set(bundle.head)
    if not head_only and (cfg.model.strategy == "two_phase" or t.prefix_cache_mb <= 0):
        return None, "the backbone trains"
    try:
        if head_only:
            cached = _features(cfg, bundle, frozen_bn, splits, pre, autocast, amp)
        else:
            cached = frozen_prefix(cfg, bundle, frozen_bn, splits, pre, autocast, amp)
    except Unsafe as e:
        return None, f"not cached: {e}"
    finally:
        bundle.model.eval()
    where = f"input of {cached.boundary}" if cached.kind == "features" else f"output of {cached.boundary}"
    note = (f"{cached.kind} cache ({where}): computed {', '.join(cached.computed) or '-'}; "
            f"read {', '.join(cached.loaded) or '-'} ({cache_dir()})")
    return cached, note
