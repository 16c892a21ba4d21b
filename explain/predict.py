"""``tlsweep predict``: top-k classes of image files from a checkpoint or a study's trial, with the trial's
own validation preprocessing (resized to its image size, normalised with its mean and std).

Example:
    >>> tm = load_model("results/quickstart")                          # the best trial        # doctest: +SKIP
    >>> predict_files(tm, ["seven.png"], topk=3)[0]["top"][0]                                   # doctest: +SKIP
    {'class': '7', 'probability': 0.91}
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from explain import attributions as attr
from explain.images import read_image
from explain.loading import STUDY_FILE, TrialModel, load_checkpoint, load_trial
from explain.plots import Column, save, sheet
from trainables.errors import ConfigError, DataError


def is_study(path: Path) -> bool:
    return path.is_dir() and ((path / STUDY_FILE).is_file() or (path / "results" / "trials").is_dir())


def load_model(source: str | Path, trial: Optional[str] = None, epoch: str = "best") -> TrialModel:
    """A checkpoint (``state.pt``, ``ckpt-*.pt`` or a folder of one) or a study folder (``trial``, default best),
    with the weights of the trial's best epoch (``epoch="last"``: the checkpoint's own)."""
    p = Path(source).expanduser()
    if is_study(p):
        return load_trial(p, trial or "best", epoch=epoch)
    if trial:
        raise ConfigError(f"--trial: {p} is a checkpoint, not a study folder")
    if not p.exists():
        raise DataError(f"{p}: no such checkpoint or study folder")
    return load_checkpoint(p, epoch=epoch)


def predict_files(tm: TrialModel, paths: Sequence[str | Path], topk: int = 5) -> list[dict]:
    """``[{"image": path, "top": [{"class": name, "probability": p}, ...]}]``, best class first."""
    if topk < 1:
        raise ConfigError(f"--topk: expected at least 1, got {topk}")
    images = torch.stack([read_image(p, tm.image_size) for p in paths])  # every file read before any output
    probs = tm.probabilities(images)
    k = min(topk, len(tm.class_names))
    values, indices = probs.topk(k, dim=1)
    return [{"image": str(p), "top": [{"class": tm.class_names[i], "probability": round(float(v), 6)}
                                      for v, i in zip(vs.tolist(), idx.tolist())]}
            for p, vs, idx in zip(paths, values, indices)]


def gradcam_files(tm: TrialModel, paths: Sequence[str | Path], results: list[dict], out_dir: Path) -> list[Path]:
    """One ``<image>-gradcam.png`` per image in ``out_dir``: the image and Grad-CAM of its top class."""
    written = []
    for path, res in zip(paths, results):
        image = read_image(path, tm.image_size)[None]
        top = res["top"][0]
        target = tm.class_names.index(top["class"])
        maps, layer = attr.gradcam(tm, image, [target])
        caption = [f"pred {top['class']} ({top['probability']:.2f})"]
        fig = sheet([Column("image", image), Column(f"Grad-CAM\nat {layer}", image, "heat", maps, caption)],
                    [Path(path).name], f"{tm.label}: Grad-CAM of class {top['class']}")
        written.append(save(fig, out_dir / f"{Path(path).stem}-gradcam.png").resolve())
    return written


def format_predictions(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(res["image"])
        for rank, top in enumerate(res["top"], 1):
            lines.append(f"  {rank}. {top['class']:<20} {top['probability']:.4f}")
        if res.get("gradcam"):
            lines.append(f"  gradcam: {res['gradcam']}")
    return "\n".join(lines)
