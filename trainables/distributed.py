"""Data parallelism for the training loop, from ``torch.distributed`` alone (no launcher is assumed).

Whoever starts the processes (Ray Train's ``TorchTrainer``, ``torchrun``, a test with ``torch.multiprocessing``)
initialises the process group; the loop then asks :func:`rank_world`. With no process group, or a world of one,
every helper here is the identity, so a one-process run is exactly what it was before.

Example:
    >>> rank_world()
    (0, 1)
    >>> shard_bounds(10, rank=1, world=3)
    (3, 6)
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous [start, end) slice of ``n`` items that ``rank`` evaluates; ranks cover 0..n in order."""
    return n * rank // world, n * (rank + 1) // world


def wrap(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when there is more than one process (gradients are averaged).

    Build it again whenever the set of trainable parameters changes (a freezing phase): DDP registers its
    gradient hooks for the parameters that require grad when it is built.
    """
    if world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64, so counts stay exact)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(t: torch.Tensor, device: torch.device, world: int) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order (ranks may hold different row counts)."""
    if world == 1:
        return t
    local = t.to(device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(local)], dtype=torch.long, device=device))
    longest = max(int(s) for s in sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(s)] for p, s in zip(parts, sizes)]).to(t.device)
