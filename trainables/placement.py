"""Where a trial's decoded images live while it trains on a GPU: in GPU memory when they fit, else pinned host memory.

A data set that fits (``training.data_on_gpu_mb``, and at most a quarter of the GPU's free memory) is copied to
the GPU once per trial: batches are then indexed there, augmentation (``data.augment``) runs on the GPU tensors
and no image crosses the PCIe bus again. A larger in-memory data set stays on the host in page-locked (pinned)
memory, so that the per-batch ``.to(device, non_blocking=True)`` overlaps with compute; data sets read lazily from
files go through a ``DataLoader`` with ``pin_memory`` instead. On a CPU nothing changes.

Example:
    >>> import torch
    >>> from trainables.data.base import ImageData, Split
    >>> data = ImageData({"train": Split(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2).long())},
    ...                  ["a"], 8)
    >>> place(data, torch.device("cpu"), 1024)[1]
    'host memory (CPU training)'
"""
from __future__ import annotations

import dataclasses

import torch

from trainables.data.base import ImageData, Split


def in_memory_bytes(data: ImageData) -> int:
    """Bytes of the splits held as tensors (images and labels)."""
    return sum(s.images.numel() * s.images.element_size() + s.labels.numel() * s.labels.element_size()
               for s in data.splits.values() if isinstance(s.images, torch.Tensor))


def gpu_budget(budget_mb: int, free_bytes: int) -> int:
    """Bytes of images a trial may keep on its GPU: the configured budget, at most a quarter of the free memory."""
    return min(max(budget_mb, 0) * 2**20, free_bytes // 4)


def place(data: ImageData, device: torch.device, budget_mb: int) -> tuple[ImageData, str]:
    """``data`` with its in-memory splits on ``device`` (when they fit) or pinned; and a line saying which."""
    if device.type != "cuda":
        return data, "host memory (CPU training)"
    size = in_memory_bytes(data)
    if size == 0:
        return data, "read from files (DataLoader with pin_memory)"
    free, _total = torch.cuda.mem_get_info(device)
    budget = gpu_budget(budget_mb, free)
    on_gpu = size <= budget

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device) if on_gpu else t.pin_memory()
    where = (f"GPU memory ({size / 2**20:.0f} MiB)" if on_gpu else
             f"pinned host memory ({size / 2**20:.0f} MiB > {budget / 2**20:.0f} MiB: training.data_on_gpu_mb "
             f"or a quarter of the free GPU memory)")
    splits = {name: Split(move(s.images), move(s.labels)) if isinstance(s.images, torch.Tensor) else s
              for name, s in data.splits.items()}
    return dataclasses.replace(data, splits=splits), where
