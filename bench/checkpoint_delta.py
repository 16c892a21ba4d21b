"""Checkpoint bytes and write time per epoch: full state (before) vs only what changed from the base (after).

For each strategy (linear_probe, partial, full) one trial of resnet18 at 32 px on digits, "pretrained" weights
= a randomly initialised resnet18 (seed 1) saved to a file (``weights: file:...``: offline, and what the
checkpoint leaves out depends only on which tensors training moves, not on their values). At every epoch's
checkpoint both forms are built from the same trainer and written the way the loop writes them
(``Resumable.state`` + ``write_atomic``: temporary file, fsync, rename), alternating which goes first; "before" is
the same state with an empty base (every tensor stored, no ``base`` record: the format before
trainables.checkpoint_delta). Prints per strategy: bytes per checkpoint, ms per checkpoint (state + write, median
over epochs), bytes written per trial, and what a finished trial keeps (newest ``resources.keep`` = 2, without
optimizer and scaler: orchestrator.prune), before and after, and the ratios.

Run: .venv/bin/python bench/checkpoint_delta.py [--epochs 4] [--size 32] [--threads 1] [--folder /tmp]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from trainables.checkpoint import write_atomic  # noqa: E402
from trainables.checkpoint_delta import Base  # noqa: E402
from trainables.config import ModelConfig, trial_config  # noqa: E402
from trainables.loop import Trainer  # noqa: E402
from trainables.models import build_model  # noqa: E402

STRATEGIES = ("linear_probe", "partial", "full")
DROPPED = ("optimizer", "scaler")  # what orchestrator.prune strips from a finished trial's checkpoints
KEEP = 2


class BothForms:
    """A ``Checkpoints`` that writes each epoch's state twice: as the loop does now, and with every tensor."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.trainer: Trainer | None = None
        self.rows: dict[str, list[tuple[float, int, int]]] = {"before": [], "after": []}

    def latest(self):
        return None

    def _write(self, form: str, epoch: int, metrics: dict) -> None:
        t = self.trainer
        saved = t.base
        if form == "before":
            t.base = Base({}, None)  # nothing left out: the full state, as before
        try:
            start = time.perf_counter()
            state = t.state(epoch, metrics)
            path = self.folder / f"{form}-{epoch:04d}.pt"
            write_atomic(state, path)
            ms = (time.perf_counter() - start) * 1e3
        finally:
            t.base = saved
        kept = self.folder / f"{form}-{epoch:04d}-pruned.pt"
        torch.save({k: v for k, v in state.items() if k not in DROPPED}, kept)
        self.rows[form].append((ms, path.stat().st_size, kept.stat().st_size))
        path.unlink()
        kept.unlink()

    def save(self, state: dict, epoch: int) -> None:
        forms = ("before", "after") if epoch % 2 else ("after", "before")
        for form in forms:
            self._write(form, epoch, state["metrics"])


def pretrained(folder: Path) -> str:
    torch.manual_seed(1)
    path = folder / "resnet18-random.pt"
    torch.save(build_model(ModelConfig(arch="resnet18"), 10).model.state_dict(), path)
    return f"file:{path}"


def measure(strategy: str, weights: str, args, folder: Path) -> dict:
    cfg = {"data": {"name": "digits", "image_size": args.size, "augment": "none"},
           "model": {"arch": "resnet18", "weights": weights, "strategy": strategy, "freeze_depth": 0.5},
           "training": {"epochs": args.epochs, "batch_size": 64, "lr": 1e-3, "threads": args.threads,
                        "max_steps_per_epoch": args.steps}, "seed": 0}
    ckpts = BothForms(folder)
    ckpts.trainer = Trainer(trial_config(cfg))
    ckpts.trainer.run(lambda m: None, ckpts)
    out = {}
    for form, rows in ckpts.rows.items():
        ms, size, kept = zip(*rows)
        out[form] = {"ms": statistics.median(ms), "bytes": statistics.mean(size), "trial": sum(size),
                     "kept": sum(kept[-KEEP:])}
    return out


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="training steps per epoch (the checkpoint is the point)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folder", default=None, help="where checkpoints are written (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        weights = pretrained(folder)
        print(f"resnet18 at {args.size} px, {args.epochs} epochs, a checkpoint each epoch; written to {folder}")
        print("| strategy | bytes / checkpoint before | after | ratio | ms / checkpoint before | after | ratio | "
              "bytes written / trial before | after | kept / finished trial before | after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for strategy in STRATEGIES:
            r = measure(strategy, weights, args, folder / strategy)
            b, a = r["before"], r["after"]
            print(f"| {strategy} | {mb(b['bytes'])} | {mb(a['bytes'])} | {b['bytes'] / a['bytes']:.1f}x | "
                  f"{b['ms']:.0f} | {a['ms']:.0f} | {b['ms'] / a['ms']:.1f}x | {mb(b['trial'])} | {mb(a['trial'])} | "
                  f"{mb(b['kept'])} | {mb(a['kept'])} |", flush=True)


if __name__ == "__main__":
    main()
