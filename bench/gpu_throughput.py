"""Training images/s of tlsweep's classification loop vs a plain PyTorch loop on one GPU (ResNet50 at 224 px).

Both train the same architecture (timm ``resnet50``, weights none: the compute of fine-tuning every layer is the
same with pretrained weights, and the GPU machine has no network) on the same images, already in GPU memory,
with bf16 autocast, channels-last and AdamW, batch 256. tlsweep: ``trainables.classification.Trainer`` with
``strategy: full`` on digits resized to 224 px (``training.data_on_gpu_mb`` puts them on the GPU); its
``train_images_per_s`` of each epoch (shuffle, normalise, forward, backward, step, loss check). Plain: the loop
one writes by hand over the same uint8 tensor on the GPU. Epochs alternate between the two, the first
``--warmup`` of each are not counted (cuDNN autotuning, allocator); the median of the rest is printed with the
ratio. Anchors: about 2,470 images/s for ResNet50 AMP training on one A100 (NVIDIA), 826 on an RTX 3090 (timm);
goal on an H100: at least 4,000.

Without a CUDA device it prints that it was skipped and exits 0 (``make bench`` runs it everywhere); ``--device
cpu`` with a small model runs it anyway, to check the script: ``--device cpu --arch resnet18 --size 32
--batch 64 --epochs 3 --warmup 1``.

Run: .venv/bin/python bench/gpu_throughput.py [--arch resnet50] [--size 224] [--batch 256] [--epochs 8]
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
from trainables.config import trial_config  # noqa: E402
from trainables.models import build_model  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch(model, opt, images, labels, bs, mean, std, gen, device, amp) -> float:
    """Images/s of one hand-written epoch over uint8 images held on ``device``."""
    model.train()
    sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(labels), generator=gen)
    seen = 0
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        if len(idx) < 2:
            continue
        x = ((images[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
    sync(device)
    return seen / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=8, help="epochs of each loop, warm-up included")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (skip without CUDA) | cuda | cpu")
    args = ap.parse_args()
    if args.device == "auto":
        if not torch.cuda.is_available():
            print("gpu_throughput: no CUDA device here: skipped (run it on a machine with a GPU)")
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    cfg = trial_config({
        "data": {"name": "digits", "image_size": args.size},
        "model": {"arch": args.arch, "weights": "none", "strategy": "full"},
        "training": {"device": args.device, "precision": "bf16", "batch_size": args.batch, "epochs": 1000,
                     "scheduler": "none", "feature_cache": False, "data_on_gpu_mb": 8192}})
    trainer = Trainer(cfg)
    trainer.ensure_phase(0)
    train = trainer.data.splits["train"]
    print(f"{args.arch} at {args.size} px, batch {args.batch}, {len(train)} images per epoch on "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; tlsweep: images on "
          f"{train.images.device}, amp {trainer.amp}, channels-last {trainer.task.pre.memory_format == torch.channels_last}")

    torch.manual_seed(0)
    model = build_model(cfg.model, trainer.data.num_classes, args.size).model.to(
        device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)
    images, labels = train.images.to(device), train.labels.to(device)
    mean = torch.tensor(trainer.bundle.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(trainer.bundle.std, device=device).view(1, 3, 1, 1) * 255
    gen = torch.Generator().manual_seed(0)
    amp = device.type == "cuda"

    ours, plain = [], []
    for epoch in range(args.epochs):
        sync(device)
        ours.append(trainer.train_epoch(epoch)["train_images_per_s"])
        plain.append(plain_epoch(model, opt, images, labels, args.batch, mean, std, gen, device, amp))
        print(f"epoch {epoch + 1}: tlsweep {ours[-1]:8.1f} images/s   plain {plain[-1]:8.1f} images/s"
              f"{'   (warm-up)' if epoch < args.warmup else ''}", flush=True)
    a, b = statistics.median(ours[args.warmup:]), statistics.median(plain[args.warmup:])
    print(f"median images/s: tlsweep {a:.1f}, plain PyTorch {b:.1f}; tlsweep / plain = {a / b:.3f}")
    if device.type == "cuda":
        print("anchors: ResNet50 AMP training ~2,470 images/s on an A100, 826 on an RTX 3090; goal on an H100: 4,000")
        if torch.cuda.max_memory_allocated(device):
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
