"""Decode many image files at once on the trial's CPUs, in worker processes; no torch.

:func:`trainables.image_files.decode_array` decodes one file. A folder of tens of thousands of small PNGs spends
most of its time in Python (opening the file, PIL's plugin, conversions) under the GIL, so threads barely help
(``bench/decode_cache.py`` measures both); worker processes do. The workers are started with ``spawn`` (never
``fork``: a trial may hold Ray's or torch's threads) and import only this module, numpy and PIL. Each decodes a
chunk of files with the same ``decode_array`` as the serial path and sends back the raw uint8 pixels, so the
result is the same bit for bit. A file that cannot be decoded is not an exception here: its message (the
``DataError`` naming it) comes back with its index and the caller decides (``data.on_bad_image``).

Small sets, or a pool that cannot start (a daemonic process, no ``/dev/shm``, a main module that re-runs on
import), are decoded by threads in this process.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.full((5, 7), 9, np.uint8)).save(d / "a.png")
    >>> (d / "b.png").write_bytes(b"not a png")
    9
    >>> images, errors = decode_all([d / "a.png", d / "b.png"], 4, workers=1)
    >>> images.shape, int(images[0].max()), list(errors)
    ((2, 3, 4, 4), 9, [1])
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path  # noqa: F401 - the example uses it
from typing import Callable, Optional

import numpy as np

from trainables.errors import DataError
from trainables.image_files import decode_array

log = logging.getLogger(__name__)

CHUNK = 256          # files per task sent to a worker process (about 3 MB back at 64 px)
MIN_PROCESS = 2048   # fewer files than this: threads (starting processes costs more than it saves)


def cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a Ray trial's or a container's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def decode_chunk(paths: list, size: int) -> tuple[bytes, dict[int, str]]:
    """Files ``paths`` as one block of uint8 ``N x 3 x size x size`` bytes (zeros where a file failed) and
    ``{index in chunk: message}`` of the files that failed."""
    out = np.zeros((len(paths), 3, size, size), np.uint8)
    errors = {}
    for i, p in enumerate(paths):
        try:
            out[i] = decode_array(p, size).transpose(2, 0, 1)
        except DataError as e:
            errors[i] = str(e)
    return out.tobytes(), errors


def _threads(paths: list, size: int, out: np.ndarray, workers: int, done: Callable[[int], None]) -> dict:
    errors = {}

    def one(i: int) -> None:
        try:
            out[i] = decode_array(paths[i], size).transpose(2, 0, 1)
        except DataError as e:
            errors[i] = str(e)
        done(1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(len(paths))))
    return errors


def _processes(paths: list, size: int, out: np.ndarray, workers: int, done: Callable[[int], None]) -> dict:
    errors = {}
    starts = range(0, len(paths), CHUNK)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(decode_chunk, [str(p) for p in paths[s:s + CHUNK]], size): s for s in starts}
        for f in as_completed(futures):
            s = futures[f]
            block, errs = f.result()
            n = min(CHUNK, len(paths) - s)
            out[s:s + n] = np.frombuffer(block, np.uint8).reshape(n, 3, size, size)
            errors.update({s + i: m for i, m in errs.items()})
            done(n)
    return errors


def decode_all(paths: list, size: int, workers: Optional[int] = None, mode: str = "auto",
               done: Callable[[int], None] = lambda n: None) -> tuple[np.ndarray, dict[int, str]]:
    """``(images, errors)``: uint8 ``N x 3 x size x size`` (zeros for a file that failed) and
    ``{index: DataError message}`` of the files that failed, in order of index.

    ``workers``: processes or threads (default: :func:`cpus`); ``mode``: ``auto`` (processes for
    ``MIN_PROCESS`` files or more when ``workers > 1``), ``processes``, ``threads`` or ``serial``; ``done(n)``
    is called as files finish (progress)."""
    workers = max(1, workers or cpus())
    out = np.zeros((len(paths), 3, size, size), np.uint8)
    if mode == "auto":
        mode = "processes" if workers > 1 and len(paths) >= MIN_PROCESS else "threads"
    if mode == "serial":
        block, errors = decode_chunk(list(paths), size)
        out[:] = np.frombuffer(block, np.uint8).reshape(out.shape)
        done(len(paths))
    elif mode == "processes":
        try:
            errors = _processes(paths, size, out, workers, done)
        except (OSError, RuntimeError, AssertionError, EOFError) as e:  # BrokenProcessPool is a RuntimeError
            log.warning("decoding with threads: worker processes failed (%s: %s)", type(e).__name__, e)
            errors = _threads(paths, size, out, workers, done)
    else:
        errors = _threads(paths, size, out, workers, done)
    return out, dict(sorted(errors.items()))
