"""A trial's model back from disk: pick the trial (an id or ``best``), find its newest checkpoint, rebuild the
model from the checkpoint's resolved config and load the weights (``weights_only=True``): by default the best
epoch's, by the trial's objective (the study's metric), which the checkpoint keeps next to the last epoch's
(``epoch="last"`` loads those).

A study folder holds one Tune trial folder per trial (``run_trial_<trial_id>_<n>_<tag>_<date>/``), each with
``checkpoint_<k>/state.pt`` written by ``orchestrator.trainable.TuneCheckpoints``; ``tlsweep train
--checkpoint-dir`` writes ``ckpt-<epoch>.pt`` files with the same state. Every state carries the trial's
config, class names, image size, mean and std; a checkpoint of a pretrained model whose backbone stayed (partly)
frozen holds only the tensors that changed, and its base is rebuilt from the pretrained weights it names (the
ImageNet cache or the ``file:`` checkpoint must be readable here: trainables.checkpoint_delta).

Example:
    >>> tm = load_trial("results/quickstart", "best")              # doctest: +SKIP
    >>> tm.label, tm.image_size, tm.class_names[:2]                 # doctest: +SKIP
    ('resnet18 / partial', 32, ['5', '6'])
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
from torch import nn

from trainables.config import TrainingConfig, TrialConfig, trial_config
from trainables.errors import ConfigError, DataError, WeightsError, suggest
from trainables.models import ModelBundle, build_model
from trainables.transforms import Preprocess
from trainables.checkpoint_delta import BASE_KEY, best_weights, full_weights, is_delta

EPOCHS = ("best", "last")

STATE_FILE = "state.pt"
STUDY_FILE = "study.yaml"
GROUP_COLUMNS = ("config.model.arch", "config.model.strategy")


@dataclass
class TrialModel:
    """A trained model ready for inference and attribution (eval mode, no in-place activations)."""
    model: nn.Module
    bundle: ModelBundle
    config: TrialConfig
    class_names: list[str]
    image_size: int
    mean: tuple
    std: tuple
    checkpoint: Path
    epoch: int
    trial_id: str = ""
    label: str = ""
    metrics: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x 3 x S x S at ``image_size`` -> the normalised batch validation uses."""
        return Preprocess(self.mean, self.std, self.device)(images, train=False)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        out = [torch.softmax(self.model(self.preprocess(images[s:s + batch])).float(), 1).cpu()
               for s in range(0, len(images), batch)]
        return torch.cat(out) if out else torch.empty(0, len(self.class_names))


def study_metric(study_dir: Path) -> tuple[str, str]:
    """The study's ``search.metric`` and ``search.mode`` (``val_acc``/``max`` without a study.yaml)."""
    from analysis.load import StudyUnreadable, read_study_yaml
    try:
        spec = read_study_yaml(study_dir)
    except StudyUnreadable as e:  # not UTF-8 or not YAML: one line naming the file
        raise DataError(str(e)) from None
    search = spec.get("search") if isinstance(spec, dict) and isinstance(spec.get("search"), dict) else {}
    return str(search.get("metric", "val_acc")), str(search.get("mode", "max"))


def trials_table(study_dir: Path) -> pd.DataFrame:
    from analysis.load import StudyNotFound, load
    try:
        return load(study_dir).trials
    except StudyNotFound as e:
        raise DataError(str(e)) from None


def trial_folder(study_dir: Path, trial_id: str) -> Optional[Path]:
    """The Tune folder of ``trial_id`` (its id is a ``_``-separated part of the folder name)."""
    found = [d for d in study_dir.iterdir() if d.is_dir() and f"_{trial_id}_" in f"_{d.name}_"]
    return sorted(found)[-1] if found else None


def _checkpoint_key(path: Path) -> int:
    digits = re.findall(r"\d+", path.parent.name if path.name == STATE_FILE else path.stem)
    return int(digits[-1]) if digits else -1


def newest_checkpoint(folder: Path) -> Optional[Path]:
    """The newest ``checkpoint_*/state.pt`` (Tune) or ``ckpt-*.pt`` (``tlsweep train``) under ``folder``."""
    if (folder / STATE_FILE).is_file():
        return folder / STATE_FILE
    found = list(folder.glob(f"checkpoint_*/{STATE_FILE}")) + list(folder.glob("ckpt-*.pt"))
    return max(found, key=_checkpoint_key) if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a folder holding one (``state.pt``, ``checkpoint_*/``, ``ckpt-*.pt``)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        found = newest_checkpoint(p)
        if found is not None:
            return found
        raise DataError(f"{p}: no checkpoint in this folder (expected {STATE_FILE}, checkpoint_*/{STATE_FILE} "
                        f"or ckpt-*.pt)")
    raise DataError(f"{p}: no such checkpoint")


def _no_inplace(model: nn.Module) -> None:
    """In-place activations break the backward hooks attribution methods put on layers; eval is unaffected."""
    for m in model.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False


def check_epoch(epoch: str) -> str:
    if epoch not in EPOCHS:
        raise ConfigError(f"--epoch: {epoch!r} is not one of best, last{suggest(str(epoch), EPOCHS)}")
    return epoch


def load_checkpoint(path: str | Path, device: Optional[torch.device] = None, epoch: str = "best") -> TrialModel:
    """Rebuild the model of one checkpoint file (or folder) and load the weights of its best epoch (by the
    trial's objective) or, with ``epoch="last"``, of the epoch it was written at."""
    check_epoch(epoch)
    ckpt = resolve_checkpoint(path)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{ckpt}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    tree = state.get("config") if isinstance(state, dict) else None
    if not isinstance(tree, dict):
        raise DataError(f"{ckpt}: not a tlsweep checkpoint (no trial config in it)")
    task = tree.get("task", "classification")
    if task != "classification":
        raise ConfigError(f"{ckpt}: a {task} trial; tlsweep explain and predict handle classification trials")
    missing = [k for k in ("model", "class_names") if k not in state]
    if missing:
        raise DataError(f"{ckpt}: not a tlsweep checkpoint (missing {', '.join(missing)})")
    # A full checkpoint holds every weight: never fetch ImageNet or re-read a pretraining file. A delta one
    # (trainables.checkpoint_delta) holds what changed from its pretrained base: the base is rebuilt from the
    # weights it names and checked against its digest. Training settings play no part in inference: those this
    # version does not know (older or newer) are left out.
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    weights = state[BASE_KEY].get("weights") if is_delta(state) else "none"
    tree = {**tree, "model": {**tree.get("model", {}), "weights": weights},
            "training": {k: v for k, v in (tree.get("training") or {}).items() if k in known}}
    cfg = trial_config(tree)
    names = [str(c) for c in state["class_names"]]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # as the trial built it
            bundle = build_model(cfg.model, len(names), cfg.data.image_size)
    except (WeightsError, ConfigError) as e:
        if not is_delta(state):
            raise
        raise DataError(f"{ckpt}: holds only the weights that changed from its base; rebuilding that base failed "
                        f"({e})") from None
    full = full_weights(state, bundle.model.state_dict, str(ckpt))
    best = state.get("best") if isinstance(state.get("best"), dict) else {}
    use_best = epoch == "best" and ("best_model" in state or best.get("epoch") == state.get("epoch"))
    try:
        bundle.model.load_state_dict(best_weights(state, full) if use_best else full)
    except RuntimeError as e:
        raise DataError(f"{ckpt}: weights do not fit {cfg.model.arch} ({str(e).splitlines()[0]})") from None
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = bundle.model.to(device).eval()
    _no_inplace(model)
    size = int(state.get("image_size") or cfg.data.image_size or bundle.input_size)
    return TrialModel(model, bundle, cfg, names, size, tuple(state.get("mean", bundle.mean)),
                      tuple(state.get("std", bundle.std)), ckpt,
                      int(best.get("epoch") if use_best and best.get("epoch") else state.get("epoch", 0)),
                      label=config_label(cfg.model.arch, cfg.model.strategy),
                      metrics=dict(state.get("metrics", {})), device=device)


def config_label(arch, strategy=None) -> str:
    empty = strategy is None or (isinstance(strategy, float) and math.isnan(strategy))
    return str(arch) if empty else f"{arch} / {strategy}"


def best_trial_id(study_dir: Path, trials: Optional[pd.DataFrame] = None) -> str:
    """The best finished trial by the study's metric (ties: lowest trial id)."""
    from analysis.aggregate import best_per_group
    metric, mode = study_metric(study_dir)
    trials = trials_table(study_dir) if trials is None else trials
    best = best_per_group(trials, [], metric, mode)
    if best.empty:
        raise DataError(f"{study_dir}: no finished trial with a {metric} to pick the best from")
    return str(best.iloc[0]["trial_id"])


def load_trial(study_dir: str | Path, trial: str = "best", device: Optional[torch.device] = None,
               epoch: str = "best") -> TrialModel:
    """The model of trial ``trial`` (an id from ``tlsweep status``, or ``best``) from its newest checkpoint, with
    the weights of its best epoch (``epoch="last"``: of the checkpoint's own epoch)."""
    check_epoch(epoch)
    folder = Path(study_dir).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such study folder")
    trials = trials_table(folder)
    trial_id = best_trial_id(folder, trials) if trial == "best" else str(trial)
    known = trials["trial_id"].astype(str).tolist() if "trial_id" in trials.columns else []
    if trial_id not in known:
        raise ConfigError(f"--trial: no trial {trial_id!r} in {folder}{suggest(trial_id, known)}")
    tdir = trial_folder(folder, trial_id)
    ckpt = newest_checkpoint(tdir) if tdir is not None else None
    if ckpt is None:
        raise DataError(f"{tdir or folder / ('*_' + trial_id + '_*')}: no checkpoint of trial {trial_id} "
                        f"(expected checkpoint_*/{STATE_FILE}; were the trial folders copied with the results?)")
    tm = load_checkpoint(ckpt, device, epoch)
    tm.trial_id = trial_id
    row = trials[trials["trial_id"].astype(str) == trial_id].iloc[0]
    tm.label = config_label(row.get("config.model.arch", tm.config.model.arch), row.get("config.model.strategy"))
    return tm


def best_per_configuration(study_dir: str | Path) -> list[tuple[str, str]]:
    """(trial id, label) of the best finished trial of each architecture x strategy, best first."""
    from analysis.aggregate import best_per_group
    folder = Path(study_dir).expanduser().resolve()
    metric, mode = study_metric(folder)
    trials = trials_table(folder)
    best = best_per_group(trials, [c for c in GROUP_COLUMNS if c in trials.columns], metric, mode)
    if best.empty:
        raise DataError(f"{folder}: no finished trial with a {metric} to explain")
    best = best.sort_values(f"best_{metric}", ascending=mode == "min", kind="mergesort")
    return [(str(r["trial_id"]), config_label(r.get("config.model.arch", "?"), r.get("config.model.strategy")))
            for _, r in best.iterrows()]
