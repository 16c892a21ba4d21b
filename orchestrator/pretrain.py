"""Source-task pretraining: train each architecture once on a source data set, cache it by content hash.

The cache key is a hash of everything that decides the weights (architecture, its builder options, the source
data spec, image size, epochs, training options, seed) and of the code that trains them (:func:`code_fingerprint`:
the training code's source and the torch, torchvision, timm and transformers versions), so every trial and every
later study with the same spec reuses the file, and weights trained by other code are never taken for today's.
The cache is the driver's: trials, which may run on other nodes, get the checkpoints through
the study folder and Ray's object store (orchestrator.weights_share).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

from search_spaces import Study
from trainables.checkpoint import NoCheckpoints, write_atomic

MODEL_KEYS = ("conv_layers", "first_layer_filters", "filter_org", "kernel_size", "activation", "batch_norm",
              "dropout", "dense_units", "drop_rate")


def cache_dir() -> Path:
    return Path(os.environ.get("TLSWEEP_CACHE", Path.home() / ".cache" / "tlsweep")) / "pretrain"


def architectures(study: Study) -> list[str]:
    """Every ``model.arch`` a study can sample, in order."""
    for d in study.domains:
        if d.path == "model.arch":
            return list(dict.fromkeys(d.args))
    return [study.trial.get("model", {}).get("arch", "scratch_cnn")]


def pretrain_config(study: Study, arch: str) -> dict:
    spec = study.pretrain
    data = dict(spec.data)
    data.setdefault("image_size", study.trial.get("data", {}).get("image_size"))
    model = {k: v for k, v in study.trial.get("model", {}).items() if k in MODEL_KEYS}
    model.update(arch=arch, weights="none", strategy="full")
    training = {"epochs": spec.epochs, **dict(spec.training)}
    return {"task": study.task, "data": data, "model": model, "training": training,
            "seed": study.trial.get("seed", 0)}


CODE = ("trainables", "search_spaces")  # the packages whose source decides the pretrained weights
LIBRARIES = ("torch", "torchvision", "timm", "transformers")


@functools.lru_cache(maxsize=4)
def code_fingerprint(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """A hash of the source of the training code (:data:`CODE` and this module, under ``root``: the project) and
    the libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version
    digest = hashlib.sha256()
    files = sorted(p for package in CODE for p in (root / package).rglob("*.py"))
    files += [p for p in [root / "orchestrator" / "pretrain.py"] if p.is_file()]
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in LIBRARIES:
        try:
            digest.update(f"{name}=={version(name)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{name} absent\0".encode())
    return digest.hexdigest()[:16]


def spec_hash(cfg: dict) -> str:
    """The cache key of a pretraining spec under today's code."""
    text = json.dumps(cfg, sort_keys=True, default=str) + code_fingerprint()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pretrain_all(study: Study, log=print) -> dict[str, str]:
    """``{arch: checkpoint path}`` for every architecture of the study not in ``pretrain.skip``."""
    if study.pretrain is None:
        return {}
    from trainables.classification import Trainer
    from trainables.config import trial_config
    out = {}
    for arch in architectures(study):
        if arch in study.pretrain.skip:
            continue
        cfg = pretrain_config(study, arch)
        path = cache_dir() / f"{arch.replace(':', '_')}-{spec_hash(cfg)}.pt"
        if path.is_file():
            log(f"pretrain {arch}: cached {path}")
        else:
            start = time.time()
            trainer = Trainer(trial_config(cfg))
            epochs = cfg["training"]["epochs"]
            result = trainer.run(epoch_line(f"pretrain {arch}", epochs, log), NoCheckpoints())
            write_atomic({"model": trainer.model.state_dict(), "config": cfg,
                          "best_val_acc": result["best_val_acc"]}, path)
            log(f"pretrain {arch}: val_acc {result['best_val_acc']:.3f} in {time.time() - start:.0f}s -> {path}")
        out[arch] = str(path)
    return out


def epoch_line(what: str, epochs: int, log=print):
    """The ``report`` of a pretraining run: one line per epoch with its metric, time and the ETA of the rest.

    Example:
        >>> report = epoch_line("pretrain resnet18", 4)
        >>> report({"epoch": 1, "val_acc": 0.5, "epoch_seconds": 12.0})
        pretrain resnet18: epoch 1/4 val_acc 0.500 (12.0 s/epoch), ETA 0:36
    """
    from trainables.progress import duration, eta
    seconds: list[float] = []

    def report(m: dict) -> None:
        seconds.append(float(m.get("epoch_seconds") or 0.0))
        left = eta(len(seconds), epochs, sum(seconds))
        log(f"{what}: epoch {m['epoch']}/{epochs} val_acc {m['val_acc']:.3f} ({seconds[-1]:.1f} s/epoch), "
            f"ETA {duration(left)}")
    return report
