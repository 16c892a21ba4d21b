"""Explanation methods by name (``--methods``): each draws one figure for one or several trained models.

With one model a sheet shows each probe image next to its explanation; with several (a comparison) the
columns are the configurations. ``gradcam``, ``occlusion`` and ``guided`` explain the true class where it is
known (else the predicted one); ``filters`` shows first-layer filters; ``grid`` shows predictions.

Example:
    >>> fig, title = METHODS.get("gradcam")(Context([tm], probes))          # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from matplotlib.figure import Figure

from explain import attributions as attr
from explain.images import Probes
from explain.layers import first_conv
from explain.loading import TrialModel
from explain.plots import Column, filters_figure, prediction_grid, sheet
from trainables.registry import Registry

METHODS: Registry = Registry("--methods")
ALL_METHODS = ("gradcam", "occlusion", "guided", "filters", "grid")


@dataclass
class Context:
    models: list[TrialModel]
    probes: Probes                                  # the images every attribution explains
    grid_probes: Optional[Callable[[TrialModel], Probes]] = None   # one model's prediction grid images
    window: Optional[int] = None                    # occlusion, model-input pixels
    stride: Optional[int] = None
    grid: tuple[int, int] = (10, 3)                 # prediction grid rows x cols
    progress: bool = True
    _probs: dict = field(default_factory=dict, repr=False)

    def probabilities(self, tm: TrialModel, probes: Optional[Probes] = None) -> torch.Tensor:
        probes = probes or self.probes
        key = (id(tm), id(probes))
        if key not in self._probs:
            self._probs[key] = tm.probabilities(probes.at(tm.image_size))
        return self._probs[key]

    @property
    def single(self) -> bool:
        return len(self.models) == 1

    def column_title(self, tm: TrialModel, method: str, detail: str = "") -> str:
        """One trial: the method; a comparison: architecture, strategy and trial (one line each)."""
        if self.single:
            return "\n".join(x for x in (method, detail) if x)
        who = f"trial {tm.trial_id}" if tm.trial_id else tm.checkpoint.name
        return "\n".join(x for x in (*tm.label.split(" / "), who, detail) if x)

    def who(self) -> str:
        tm = self.models[0]
        if self.single:
            return f"trial {tm.trial_id} ({tm.label})" if tm.trial_id else f"{tm.label} ({tm.checkpoint})"
        return "best trial of each configuration"


def prediction_captions(tm: TrialModel, probs: torch.Tensor, targets: list[Optional[int]]):
    conf, pred = probs.max(1)
    captions = [f"pred {tm.class_names[p]} ({c:.2f})" for p, c in zip(pred.tolist(), conf.tolist())]
    correct = [None if t is None else t == p for t, p in zip(targets, pred.tolist())]
    return captions, correct


def _sheet(ctx: Context, kind: str, method: str, title: str, compute) -> tuple[Figure, str]:
    """Shared by the attribution methods: ``compute(tm, images, targets) -> (maps, detail)``."""
    base = max(ctx.models, key=lambda m: m.image_size)
    columns = [Column("image", ctx.probes.at(base.image_size))]
    for tm in ctx.models:
        images, targets = ctx.probes.at(tm.image_size), ctx.probes.targets(tm.class_names)
        maps, detail = compute(tm, images, targets)
        captions, correct = prediction_captions(tm, ctx.probabilities(tm), targets)
        columns.append(Column(ctx.column_title(tm, method, detail), images, kind, maps, captions, correct))
    rows = [f"{n}\ntrue {lab}" if lab is not None else n for n, lab in zip(ctx.probes.names, ctx.probes.labels)]
    full = f"{title}: {ctx.who()}"
    return sheet(columns, rows, full), full


@METHODS.register("gradcam")
def gradcam(ctx: Context) -> tuple[Figure, str]:
    def compute(tm, images, targets):
        maps, layer = attr.gradcam(tm, images, targets)
        return maps, f"at {layer}"
    return _sheet(ctx, "heat", "Grad-CAM", "Grad-CAM", compute)


@METHODS.register("occlusion")
def occlusion(ctx: Context) -> tuple[Figure, str]:
    def compute(tm, images, targets):
        maps, (w, s) = attr.occlusion(tm, images, targets, ctx.window, ctx.stride, ctx.progress)
        return maps, f"window {w} px, stride {s} px"
    return _sheet(ctx, "signed", "occlusion", "Occlusion (red: covering it lowers the class probability)", compute)


@METHODS.register("guided")
def guided(ctx: Context) -> tuple[Figure, str]:
    return _sheet(ctx, "guided", "guided backprop", "Guided backpropagation",
                  lambda tm, images, targets: (attr.guided_backprop(tm, images, targets), ""))


@METHODS.register("filters")
def filters(ctx: Context) -> Optional[tuple[Figure, str]]:
    panels = []
    for tm in ctx.models:
        found = first_conv(tm.model, tm.image_size, tm.device)
        if found is not None:
            name, conv = found
            panels.append((f"{tm.label}\n{name}" if not ctx.single else name, conv.weight))
    if not panels:
        return None
    title = f"First-layer filters: {ctx.who()}"
    return filters_figure(panels, title), title


@METHODS.register("grid")
def grid(ctx: Context) -> tuple[Figure, str]:
    rows, cols = ctx.grid
    if ctx.single:
        tm = ctx.models[0]
        probes = ctx.grid_probes(tm) if ctx.grid_probes else ctx.probes
        probs = ctx.probabilities(tm, probes)
        captions, correct = prediction_captions(tm, probs, probes.targets(tm.class_names))
        truths = [f"true {lab}\n" if lab is not None else "" for lab in probes.labels]
        title = f"Predictions: {ctx.who()}"
        return prediction_grid(probes.at(tm.image_size), [t + c for t, c in zip(truths, captions)], correct,
                               rows, cols, title), title
    columns = [Column("image", ctx.probes.at(max(m.image_size for m in ctx.models)))]
    for tm in ctx.models:
        targets = ctx.probes.targets(tm.class_names)
        captions, correct = prediction_captions(tm, ctx.probabilities(tm), targets)
        columns.append(Column(ctx.column_title(tm, "prediction"), ctx.probes.at(tm.image_size), "prediction",
                              captions=captions, correct=correct))
    rows_t = [f"{n}\ntrue {lab}" if lab is not None else n for n, lab in zip(ctx.probes.names, ctx.probes.labels)]
    title = f"Predictions: {ctx.who()}"
    return sheet(columns, rows_t, title), title


def parse_methods(text: Optional[str]) -> list[str]:
    """``gradcam,occlusion`` -> names, each checked (unknown names fail with the closest ones)."""
    names = [n.strip() for n in (text or ",".join(ALL_METHODS)).split(",") if n.strip()]
    for n in names:
        METHODS.get(n)
    return names
