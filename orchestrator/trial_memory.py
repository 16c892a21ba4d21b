"""Private memory of reused trial processes: measured around each trial, and what a trial freed handed back.

With ``reuse_actors=True`` (orchestrator.tuner) one Ray worker process runs trial after trial. :func:`around`
wraps each trial in ``run_trial``; when the trial ends (finished, stopped or failed) it collects reference
cycles and asks glibc to return the free memory of its heaps to the OS (``malloc_trim(0)``), so the next trial
starts from what the process really holds, not from the peak of the trials before it. The objects alive when the
process's first trial starts (imported modules, Ray's state) are moved out of the collector's sight once
(``gc.freeze()``): each trial's collection then scans only what trials made (under a millisecond, against 0.3 s
over the ~480,000 objects torch, timm and Ray leave).

``TLSWEEP_MEMORY_LOG`` (a folder; Ray's worker processes inherit it from the driver that started Ray) makes each
trial process append one JSON line per trial to ``<folder>/<pid>.jsonl``: private memory (``Private_Clean`` +
``Private_Dirty`` of ``/proc/self/smaps_rollup``, in MiB) at the start, at the end, and after the release, and how
many tensors are still alive then. A file ``norelease`` in that folder turns the release off (bench/reused_memory.py
measures both side by side).
Measurements: docs/BENCHMARKS.md, "Memory of reused trial processes"; test: tests/orchestrator/test_reused_memory.py.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import time
from pathlib import Path
from typing import Iterator, Optional

ENV = "TLSWEEP_MEMORY_LOG"
NO_RELEASE = "norelease"  # a file of this name in the log folder: measure without releasing (the "before" figures)
_libc = None
_frozen = False  # gc.freeze() done in this process (around)


def private_mb() -> Optional[float]:
    """This process's private memory in MiB (None where ``/proc/self/smaps_rollup`` is missing: not Linux)."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return None
    kb = sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(("Private_Clean", "Private_Dirty")))
    return round(kb / 1024, 1)


def release() -> None:
    """Collect reference cycles, then hand the heaps' free pages back to the OS (glibc only; elsewhere a no-op)."""
    global _libc
    gc.collect()
    if _libc is None:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name) if name else None
        _libc = lib if lib is not None and hasattr(lib, "malloc_trim") else False
    if _libc:
        _libc.malloc_trim(0)


@contextlib.contextmanager
def around(trial_id: Optional[str]) -> Iterator[None]:
    """One trial of this process: release what it freed when it ends; log its memory if ``TLSWEEP_MEMORY_LOG``."""
    import torch
    global _frozen
    if not _frozen:  # the first trial of this process: what is alive now (modules, Ray) lives as long as it does
        gc.collect()
        gc.freeze()  # so each trial's collection looks at what that trial made only: ~0 s instead of 0.3 s
        _frozen = True
    folder = os.environ.get(ENV)
    start = private_mb() if folder else None
    try:
        yield
    finally:
        end = private_mb() if folder else None
        if not (folder and Path(folder, NO_RELEASE).exists()):
            release()
        if folder:
            row = {"trial_id": trial_id, "pid": os.getpid(), "time": time.time(), "start_mb": start,
                   "end_mb": end, "released_mb": private_mb(),
                   "tensors": sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())}  # not frozen ones
            with contextlib.suppress(OSError):  # measuring must never fail a trial
                Path(folder).mkdir(parents=True, exist_ok=True)
                with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
