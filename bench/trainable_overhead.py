"""Epoch time of tlsweep's classification loop vs a minimal hand-written PyTorch loop.

Same model (resnet18, weights none), same data (digits at 32 px, already in memory), same batch size,
threads and optimizer, no augmentation; both train one epoch and evaluate the validation split. The two
loops alternate epoch by epoch in one process (the hand loop runs inside our ``report`` callback), so
machine noise hits both alike. Prints the median ratio; goal: at most 1.05.

Run: .venv/bin/python bench/trainable_overhead.py [--epochs 6] [--arch resnet18]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainables.classification import Trainer  # noqa: E402
from trainables.checkpoint import NoCheckpoints  # noqa: E402
from trainables.config import trial_config  # noqa: E402
from trainables.models import build_model  # noqa: E402


def hand_epoch(model, opt, train_x, train_y, val_x, val_y, bs, mean, std, gen) -> float:
    """The loop a user would write: shuffle, normalise, forward, backward, step; then accuracy on val."""
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(train_y), generator=gen)
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        x = (train_x[idx].float() - mean) / std
        loss = F.cross_entropy(model(x), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(val_y), 256):
            x = (val_x[s:s + 256].float() - mean) / std
            correct += (model(x).argmax(1) == val_y[s:s + 256]).sum().item()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = trial_config({"data": {"name": "digits", "image_size": 32},
                        "model": {"arch": args.arch, "weights": "none"},
                        "training": {"epochs": args.epochs, "batch_size": 64, "optimizer": "adamw", "lr": 1e-3,
                                     "scheduler": "none", "threads": args.threads}})
    ours = Trainer(cfg)
    tr, va = ours.data.splits["train"], ours.data.splits["val"]
    torch.manual_seed(0)
    hand_model = build_model(cfg.model, ours.data.num_classes, 32).model
    hand_opt = torch.optim.AdamW(hand_model.parameters(), lr=1e-3, weight_decay=cfg.training.weight_decay)
    mean = torch.tensor(ours.bundle.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(ours.bundle.std).view(1, 3, 1, 1) * 255
    gen = torch.Generator().manual_seed(0)
    pairs = []

    def report(m: dict) -> None:
        hand = hand_epoch(hand_model, hand_opt, tr.images, tr.labels, va.images, va.labels, 64, mean, std, gen)
        pairs.append((m["epoch_seconds"], hand))
        print(f"epoch {m['epoch']}: tlsweep {m['epoch_seconds']:.2f}s  hand-written {hand:.2f}s  "
              f"ratio {m['epoch_seconds'] / hand:.3f}", flush=True)

    ours.run(report, NoCheckpoints())
    ratios = [a / b for a, b in pairs[1:]]  # the first epoch warms caches for both
    print(f"arch={args.arch} images={len(tr)} batch=64 threads={args.threads}")
    print(f"trainable_overhead ratio (median of {len(ratios)} epochs): {statistics.median(ratios):.3f} "
          f"(goal <= 1.05)")


if __name__ == "__main__":
    main()
