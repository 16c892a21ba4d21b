"""What ``tlsweep run`` checks before Ray starts: every mistake that needs no cluster, in a second or two.

Ray, torch and timm take 5-20 s to import and start on a small machine; a typo found after that wastes them, and
one found inside the trials (a data root that does not exist) costs every trial's retries and ends in Ray's logs.
So :func:`check_study` reads only files and the small index of model names (:mod:`trainables.model_names`):

- the names a study can sample (models, data sets, strategies, augmentations, decoders, losses);
- the storage: writable, names the file system can hold, and no earlier results in the way (without
  ``--overwrite``); a folder left by a run that failed before any trial reported (:func:`mark_failed`) is not;
- ``resources`` against this machine when Ray starts here (no ``--address``);
- the packages of the ``logging`` callbacks;
- each data root: it exists; an image folder has its class folders (the same ones in every split), classes large
  enough to split, readable folders, and the first image of each class decodes;
- weights: a ``file:`` exists and looks like a checkpoint; timm's ``imagenet`` weights are in the local Hugging
  Face cache when the hub is offline.

Every failure is a :data:`~trainables.errors.USER_ERRORS` exception whose one line names the key or the path.
The task's own checks (:func:`orchestrator.cli.check_names`, which import torch) still run after these.
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

from search_spaces import Study
from trainables.config import TrialConfig, trial_config
from trainables.errors import ConfigError, DataError, WeightsError, suggest

FAILED_FILE = "failed.txt"   # written by a run in which no trial reported: its folder blocks no later run
MAX_COMBINATIONS = 256


def check_study(study: Study, storage: Optional[str] = None, overwrite: bool = False,
                address: Optional[str] = None, log=None) -> bool:
    """Check ``study`` as ``tlsweep run`` would run it; returns whether its folder is to be replaced
    (``overwrite``, or an earlier run there that failed before any trial reported). Writes nothing."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    configs = list(trial_configs(study))
    check = QUICK_NAMES.get(study.task)
    for cfg in configs if check else ():
        check(cfg)
    if not address:
        check_machine(study)
    from orchestrator.loggers import check_packages
    check_packages(study.logging)
    replace = check_storage(study, storage, overwrite, log)
    for cfg in _distinct(c.data for c in configs):
        check_data(cfg, log)
    if study.pretrain is not None:
        check_data(trial_config({"data": dict(study.pretrain.data)}).data, log)
    for model in _distinct(c.model for c in configs):
        check_weights(model.arch, model.weights)
    return replace


# ---- the configurations a study can sample ------------------------------------------------------------------
def trial_configs(study: Study) -> Iterator[TrialConfig]:
    """Trial configs of every combination of the choice / grid values of the keys checked here (each value on its
    own, the others at their first, beyond MAX_COMBINATIONS); other domains keep their defaults."""
    from orchestrator.cli import CHECKED
    for trial in combinations(study, lambda p: p in CHECKED or p.startswith("data.") or p == "model.weights"):
        yield trial_config({**trial, "task": study.task})


def combinations(study: Study, checked) -> Iterator[dict]:
    """The trial dicts of every combination of the values of the choice / grid domains whose path ``checked``
    accepts (each value on its own, the others at their first, beyond MAX_COMBINATIONS)."""
    from orchestrator.space import resolve
    choices = {d.path: list(d.args) for d in study.domains if d.kind in ("choice", "grid") and checked(d.path)}
    keys = list(choices)
    combos = list(itertools.islice(itertools.product(*choices.values()), MAX_COMBINATIONS + 1))
    if len(combos) > MAX_COMBINATIONS:
        first = {k: v[0] for k, v in choices.items()}
        combos = [tuple({**first, k: value}[c] for c in keys) for k in keys for value in choices[k]]
    for combo in combos or [()]:
        yield resolve(study.trial, dict(zip(keys, combo)))


def _distinct(items) -> list:
    seen, out = set(), []
    for item in items:
        if repr(item) not in seen:
            seen.add(repr(item))
            out.append(item)
    return out


# ---- names, without importing the task (torch) ----------------------------------------------------------------
def _arch(arch: str) -> None:
    from trainables.model_names import index
    if arch.startswith("hf:"):
        return  # a hub id or a folder: the task's check (trainables.models.hf) knows its syntax
    models = index()["models"]
    if arch not in models:
        raise ConfigError(f"model.arch: unknown model {arch!r}{suggest(arch, models)}")


def _strategy(name: str) -> None:
    from trainables.model_names import index
    from trainables.registry import Registry
    strategies = Registry("model.strategy")
    for n in index()["strategies"]:
        strategies.add(n, "")
    strategies.check(name)


def _classification(cfg: TrialConfig) -> None:
    from trainables.catalog import AUGMENTATIONS, DATASETS
    _arch(cfg.model.arch)
    DATASETS.check(cfg.data.name)
    _strategy(cfg.model.strategy)
    AUGMENTATIONS.check(cfg.data.augment)


def _segmentation(cfg: TrialConfig) -> None:
    from trainables.catalog import DECODERS, LOSSES, SEG_AUGMENTATIONS, SEG_DATASETS
    SEG_DATASETS.check(cfg.data.name)
    DECODERS.check(cfg.model.decoder)  # the encoder (model.arch) against its decoder: the task's own check
    _strategy(cfg.model.strategy)
    SEG_AUGMENTATIONS.check(cfg.data.augment)
    LOSSES.check(cfg.training.loss)


QUICK_NAMES = {"classification": _classification, "segmentation": _segmentation}


# ---- this machine -------------------------------------------------------------------------------------------------
def visible_gpus() -> Optional[int]:
    """NVIDIA GPUs a local Ray would see (CUDA_VISIBLE_DEVICES, else the driver's list); None: cannot tell."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([d for d in env.split(",") if d.strip() and d.strip() != "-1"])
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return len(list(proc.iterdir()))
    return None if list(Path("/dev").glob("nvidia[0-9]*")) else 0


def check_machine(study: Study) -> None:
    """A trial larger than this machine would wait forever in a local Ray: say so before starting it."""
    have = {"cpu": float(os.cpu_count() or 1), "gpu": visible_gpus()}
    workers = study.resources.workers_per_trial
    arch = next((d for d in study.domains if d.path == "model.arch" and d.kind in ("choice", "grid")), None)
    archs = list(arch.args) if arch is not None else [study.trial.get("model", {}).get("arch")]
    for a in archs:
        where = f"resources.by_arch.{a}" if isinstance(a, str) and a in study.resources.by_arch else "resources"
        need = study.resources.for_arch(a if isinstance(a, str) else None)
        for kind in ("cpu", "gpu"):
            if have[kind] is None or need[kind] * workers <= have[kind]:
                continue
            who = f"each of the {workers} workers of a trial" if workers > 1 else "a trial"
            raise ConfigError(f"{where}.{kind}: {who} needs {need[kind]:g} {kind.upper()}, but this machine has "
                              f"{have[kind]:g}; lower it, or run on a cluster that has them (--address)")


# ---- storage --------------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_storage(study: Study, storage: Optional[str], overwrite: bool, log) -> bool:
    """The study folder can be made, and holds no earlier results (unless ``overwrite``). Returns whether an
    existing folder is to be replaced."""
    base = storage or study.storage
    key = "--storage" if storage else "storage"
    if "://" in base:  # orchestrator.storage.is_uri (that module imports pyarrow and pandas)
        return _check_uri_folder(study, base, overwrite, log)
    folder = Path(base).expanduser().resolve() / study.name
    above = _existing_ancestor(folder)
    try:
        limit = os.pathconf(above if above.is_dir() else above.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in folder.relative_to(above).parts:
        if len(part.encode()) > limit:
            where = "name" if part == study.name else key
            raise ConfigError(f"{where}: {part[:24]}... is {len(part.encode())} bytes long; this file system "
                              f"allows at most {limit} in a folder name")
    if not above.is_dir():
        raise ConfigError(f"{key}: {above} is not a folder (the results would go to {folder})")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {above} (permission denied or a read-only file system; "
                          f"the results would go to {folder})")
    if above != folder or not folder.is_dir() or not any(folder.iterdir()):
        return overwrite
    failed = (folder / FAILED_FILE).is_file() and not any((folder / "results" / "epochs").glob("*.parquet"))
    return _earlier(study, str(folder), overwrite, failed, log)


def _earlier(study: Study, where: str, overwrite: bool, failed: bool, log) -> bool:
    if overwrite:
        return True
    from orchestrator.stopping import running_driver
    if failed and running_driver(where) is not None:
        failed = False  # a run of it has started again since; never replace a running study
    if failed:
        log(f"tlsweep: note: {where} holds a run of {study.name!r} in which no trial reported; replacing it")
        return True
    # the message of orchestrator.tuner.prepare_folder, which checks again once Ray has started
    raise ConfigError(f"{where}: results of study {study.name!r} already exist; continue them with "
                      f"'tlsweep resume {where}' or start over with --overwrite")


def _check_uri_folder(study: Study, base: str, overwrite: bool, log) -> bool:
    import pyarrow.fs as pafs

    from orchestrator.storage import StudyStore, study_location
    store = StudyStore(study_location(base, study.name))
    if not store.has_content():
        return overwrite
    epochs = store.fs.get_file_info(pafs.FileSelector(store.join("results", "epochs"), allow_not_found=True))
    failed = store.is_file(FAILED_FILE) and not any(i.base_name.endswith(".parquet") for i in epochs)
    return _earlier(study, str(store), overwrite, failed, log)


def mark_failed(folder, why: str) -> None:
    """Mark a study folder whose run ended with no trial reporting: the corrected run may replace it."""
    from orchestrator.storage import StudyStore
    try:
        StudyStore(folder).write_text(FAILED_FILE, why.rstrip() + "\n")
    except OSError:
        pass  # the study failed already; an unwritable folder keeps blocking, as before


# ---- data and weights -------------------------------------------------------------------------------------------
def check_data(cfg, log) -> None:
    """The data a trial would load: its root exists; an image folder's layout, classes and first images."""
    import warnings

    from trainables import image_files as layout
    if cfg.name != "imagefolder":
        root = Path(cfg.root).expanduser() if cfg.root and "://" not in cfg.root else None
        if root is not None and not cfg.download and not root.exists():
            raise DataError(f"data.root: {root} does not exist (data set {cfg.name!r})")
        return
    root = layout.require_root(cfg, "imagefolder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits, classes = layout.imagefolder_splits(root)
    for w in caught:
        log(f"tlsweep: warning: {w.message}")
    paths, labels = splits["train"]
    chosen = layout.class_indices(classes, cfg.classes, root.name) if cfg.classes else range(len(classes))
    counts = {classes[i]: 0 for i in chosen}
    first: dict[int, Path] = {}
    for p, lab in zip(paths, labels):
        if classes[lab] in counts:
            counts[classes[lab]] += 1
            first.setdefault(lab, p)
    split_off = [k for k, off in (("val", "val" not in splits),
                                  ("test", "test" not in splits and cfg.test_fraction > 0)) if off]
    layout.check_splittable(counts, split_off, f"data ({root.name})")
    if cfg.on_bad_image == "error":
        for p in first.values():
            layout.decode_array(p)


def check_weights(arch: str, weights) -> None:
    """``file:<path>``: exists and is a torch or safetensors file; ``imagenet`` (timm): cached when offline."""
    if isinstance(weights, str) and weights.startswith("file:"):
        _checkpoint_file(Path(weights[len("file:"):]).expanduser())
    elif weights in ("imagenet", "pretrained", True):
        from trainables.model_names import imagenet_weights_error
        why = imagenet_weights_error(arch)
        if why:
            raise WeightsError(why)


def _checkpoint_file(p: Path) -> None:
    if not p.is_file():
        raise WeightsError(f"model.weights: file {p} does not exist")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if p.suffix == ".safetensors":
                import json
                n = int.from_bytes(head, "little") if len(head) == 8 else 0
                ok = 0 < n < 100 * 2**20 and isinstance(json.loads(f.read(n)), dict)
            else:
                ok = head.startswith((b"PK\x03\x04", b"\x80"))  # torch.save's zip, or its legacy pickle
    except (OSError, ValueError) as e:
        raise WeightsError(f"model.weights: {p} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not ok:
        raise WeightsError(f"model.weights: {p} is not a readable checkpoint (neither a torch nor a safetensors "
                           f"file)")
