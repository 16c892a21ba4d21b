"""``tlsweep export``: a trial's model as one file to deploy (safetensors, TorchScript or ONNX) with a model card.

The model is loaded as ``explain`` / ``predict`` load it (explain.loading: the trial's own config, the weights of
its best epoch by the study's metric or, ``epoch="last"``, of its newest checkpoint). Next to the model file goes
``<model file>.json``, its model card: the trial's resolved config, its validation and test metrics from the study's
``trials`` table (``best_*`` or ``last_*`` by the epoch exported), and the preprocessing the model expects:
uint8 RGB resized to ``image_size``, scaled to [0, 1], minus ``mean``, over ``std``; outputs are logits over
``class_names`` in that order.

- ``safetensors``: the state dict (``safetensors.torch.load_file``; rebuild the model with
  ``trainables.models.build_model`` from the card's config, ``model.weights: none``).
- ``torchscript``: ``torch.jit.trace`` of the eval-mode model on one normalised batch (``torch.jit.load``).
- ``onnx``: ``torch.onnx.export`` with a dynamic batch axis; needs the ``onnx`` package.

Example:
    >>> model_path, card_path = export("results/quickstart", fmt="torchscript")    # doctest: +SKIP
    >>> torch.jit.load(model_path)(torch.zeros(1, 3, 32, 32)).shape                 # doctest: +SKIP
    torch.Size([1, 5])
"""
from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import Optional

import torch

from explain.loading import TrialModel, trials_table
from trainables.errors import ConfigError, suggest

FORMATS = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}
NEEDS = {"onnx": "onnx"}  # format -> the Python package torch needs for it


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}{suggest(str(fmt), FORMATS)}")
    package = NEEDS.get(fmt)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--format {fmt}: needs the '{package}' Python package, which is not installed "
                          f"(pip install {package}); safetensors and torchscript need nothing more")
    return fmt


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _plain(value.item())
    return value


def trial_metrics(study_dir: Path, trial_id: str, epoch: str) -> dict:
    """The trial's ``val_*`` and ``test_*`` numbers of the exported epoch from the ``trials`` table."""
    trials = trials_table(study_dir)
    rows = trials[trials["trial_id"].astype(str) == str(trial_id)] if "trial_id" in trials.columns else trials[:0]
    if rows.empty:
        return {}
    row = rows.iloc[0]
    prefix = "best_" if epoch == "best" else "last_"
    out = {k.removeprefix(prefix): _plain(v) for k, v in row.items()
           if k.startswith((f"{prefix}val_", f"{prefix}test_"))}
    if epoch == "best" and "best_epoch" in row:
        out["epoch"] = _plain(row["best_epoch"])
    return {k: v for k, v in out.items() if v is not None}


def model_card(tm: TrialModel, fmt: str, model_file: Path, epoch: str, metrics: dict) -> dict:
    return {"format": fmt, "file": model_file.name, "trial_id": tm.trial_id or None, "label": tm.label,
            "epoch": epoch, "epoch_number": tm.epoch, "checkpoint": str(tm.checkpoint),
            "metrics": metrics,
            "preprocessing": {"image_size": tm.image_size, "mean": [float(x) for x in tm.mean],
                              "std": [float(x) for x in tm.std], "channels": "RGB", "layout": "NCHW",
                              "steps": "resize to image_size x image_size, scale to [0, 1], subtract mean, "
                                       "divide by std"},
            "class_names": list(tm.class_names), "outputs": "logits, one per class in class_names order",
            "config": tm.config.to_dict()}


def example_input(tm: TrialModel, n: int = 2) -> torch.Tensor:
    """A normalised batch of the model's input size (a fixed random image, so tracing sees real values)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, tm.image_size, tm.image_size), generator=g, dtype=torch.uint8)
    return tm.preprocess(images).cpu()


def write_model(tm: TrialModel, fmt: str, path: Path) -> None:
    model = tm.model.cpu().eval()
    if fmt == "safetensors":
        from safetensors.torch import save_file
        # clones: tensors that share storage (tied weights, views) cannot be saved side by side
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    elif fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.x calls TorchScript deprecated; it still loads
            traced = torch.jit.trace(model, example_input(tm), check_trace=False)
        traced.save(str(path))
    else:  # onnx: the TorchScript-based exporter (the torch.export-based one needs onnxscript too)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example_input(tm),), str(path), input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)


def export(source: str | Path, trial: Optional[str] = None, epoch: str = "best", fmt: str = "safetensors",
           out: Optional[str | Path] = None) -> tuple[Path, Path]:
    """Write the model of ``source`` (a study folder with ``trial``, default best, or a checkpoint) in ``fmt``
    and its model card (``<model file>.json``); returns both paths.

    Default ``out``: ``<study>/export/<trial id>-<epoch><suffix>`` (next to the checkpoint for a checkpoint).
    """
    from explain.predict import is_study, load_model
    check_format(fmt)
    src = Path(source).expanduser().resolve()
    tm = load_model(src, trial, epoch)
    tm.device = torch.device("cpu")
    tm.model = tm.model.cpu()
    study = src if is_study(src) else None
    name = f"{tm.trial_id or tm.checkpoint.parent.name}-{epoch}{FORMATS[fmt]}"
    path = Path(out).expanduser() if out else (study / "export" / name if study else tm.checkpoint.parent / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = trial_metrics(study, tm.trial_id, epoch) if study is not None and tm.trial_id else {}
    if not metrics:  # a checkpoint on its own: the metrics it was written with (its own epoch's)
        metrics = {k: _plain(v) for k, v in tm.metrics.items() if k.startswith(("val_", "test_"))}
    write_model(tm, fmt, path)
    card = path.with_name(path.name + ".json")  # one card per file: exports in two formats do not collide
    card.write_text(json.dumps(model_card(tm, fmt, path, epoch, metrics), indent=1, default=str) + "\n")
    return path.resolve(), card.resolve()
