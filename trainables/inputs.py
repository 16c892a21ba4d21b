"""What a phase trains on, behind one interface: images, cached head inputs, or cached frozen-prefix outputs.

``batches(split, batch_size, shuffle, shard)`` yields host-side batches in the order drawn from the trial's
generator; ``prepare(x, y, train)`` turns one into device tensors (augmenting in training); ``forward(x, train)``
gives logits. The loop and the tasks' ``evaluate`` only see this, so an epoch has no branch per cache.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Protocol

import torch

from trainables.data import Split


class Inputs(Protocol):
    kind: str                   # "images" | "features" | "prefix"
    splits: dict

    def batches(self, split: str, batch_size: int, shuffle: bool,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple]: ...

    def prepare(self, x, y, train: bool) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor: ...


def iterate(split: Split, batch_size: int, shuffle: bool, gen: torch.Generator, num_workers: int = 0,
            shard: tuple[int, int] = (0, 1), pin_memory: bool = False):
    """Yield (uint8 images, labels) batches; in-memory splits are indexed directly (no per-epoch decoding).

    ``shard=(rank, world)``: this rank's samples ``order[rank::world]`` of the permutation every rank draws
    alike, after dropping the last ``n % world`` so that all ranks take the same number of equal batches;
    batch ``b`` of each rank is then a slice of the one-process batch ``b`` of size ``batch_size * world``.
    """
    rank, world = shard
    if isinstance(split.images, torch.Tensor) or world > 1:
        n = len(split)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        order = order[:n - n % world][rank::world]
        if not isinstance(split.images, torch.Tensor):
            yield from torch.utils.data.DataLoader(torch.utils.data.Subset(split.images, order.tolist()),
                                                   batch_size=batch_size, num_workers=num_workers,
                                                   pin_memory=pin_memory)
            return
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            yield split.images[idx], split.labels[idx]
    else:
        yield from torch.utils.data.DataLoader(split.images, batch_size=batch_size, shuffle=shuffle,
                                               generator=gen, num_workers=num_workers, pin_memory=pin_memory)


class ImageInputs:
    """Classification images: preprocessing (and augmentation) on the way in, the whole model forward.

    ``net`` trains (a DistributedDataParallel wrapper in data-parallel trials); ``model`` predicts, so that ranks
    predicting slices of different lengths never wait on each other's collectives.
    """

    kind = "images"

    def __init__(self, splits: dict, pre, net, model, gen: torch.Generator, num_workers: int = 0,
                 pin_memory: bool = False):
        self.splits, self.pre, self.net, self.model, self.gen = splits, pre, net, model, gen
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def batches(self, split, batch_size, shuffle, shard=(0, 1)):
        return iterate(self.splits[split], batch_size, shuffle, self.gen, self.num_workers, shard, self.pin_memory)

    def prepare(self, x, y, train):
        return self.pre(x, train=train), y.to(self.pre.device, non_blocking=True)

    def forward(self, x, train):
        return (self.net if train else self.model)(x)


class CachedInputs:
    """What a phase trains on instead of images: the frozen part's output per split, and the rest of the model
    (:mod:`trainables.feature_cache`, :mod:`trainables.prefix_cache`). Same batches and order as the images."""

    def __init__(self, kind: str, splits: dict[str, Split], rest: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, boundary: str = "",
                 memory_format: torch.memory_format = torch.contiguous_format,
                 gen: Optional[torch.Generator] = None):
        self.kind = kind                  # "features" (input of the head) | "prefix"
        self.splits = splits              # cached tensors (CPU) and labels, same order as the data
        self.rest = rest                  # cached batch (on the device) -> logits
        self.device = device
        self.boundary = boundary          # the module whose output (prefix) or input (head) is cached
        self.memory_format = memory_format
        self.gen = gen
        self.computed: list[str] = []     # splits this trial computed (the others were read)
        self.loaded: list[str] = []

    def batches(self, split, batch_size, shuffle, shard=(0, 1)):
        return iterate(self.splits[split], batch_size, shuffle, self.gen, shard=shard)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def prepare(self, x, y, train):
        return self.batch(x), y.to(self.device, non_blocking=True)

    def forward(self, x, train):
        return self.rest(x)
