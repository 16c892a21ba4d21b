"""Decoded image folders on disk: decode a split's files once, and every later trial and study reads the pixels.

``data.share`` (``orchestrator.data_share``) decodes a data set once per node *within* a study and keeps it in
Ray's object store until the study ends. This cache sits under it, on disk, and outlives studies: the trial that
decodes (the one ``data_share`` picks, or any trial without Ray) first looks up the split's files here. An entry
holds the uint8 ``N x 3 x S x S`` pixels of one list of files at one image size, exactly what
:func:`trainables.decode_pool.decode_all` returns, plus the messages of the files that failed to decode (so
``data.on_bad_image: error`` fails with the same ``DataError`` naming the file, and ``skip`` leaves out the same
files, without decoding anything).

- **Where**: ``$TLSWEEP_DECODED_CACHE``, else ``$TLSWEEP_CACHE/decoded`` (``~/.cache/tlsweep/decoded``), next to
  the frozen-feature cache (``trainables.feature_cache``). ``data.decoded_cache: false`` turns it off. Delete the
  folder to reclaim space.
- **Key**: sha256 over the files sorted by path relative to their common folder, each with its size and
  ``mtime_ns`` (touching, adding or removing a file makes a new key; a folder copied with its times, ``cp -a``,
  keeps it), and what changes the pixels: image size, the resize and channel handling of ``decode_array`` (a hash
  of its source), Pillow's version, ``PIL.Image.MAX_IMAGE_PIXELS`` and :data:`FORMAT`.
- **Safety** (as the feature cache): the first process that needs an entry decodes it while holding
  ``<entry>.lock`` (``fcntl.flock``; released by the OS if the process dies), the others wait, then read. Entries
  are written to a temporary file and renamed (never half-written); an entry is an uncompressed ``.npz`` whose
  zip CRCs are checked on every read, so a truncated or damaged one is decoded and written again. A folder that
  cannot be written costs the reuse, never the trial. Lazily decoded sets (over ``data.memory_limit_mb``) are
  not cached.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> os.environ["TLSWEEP_DECODED_CACHE"] = str(d / "cache")
    >>> Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(d / "a.png")
    >>> first, again = load([d / "a.png"], 4), load([d / "a.png"], 4)
    >>> first.source, again.source, bool((first.images == again.images).all())
    ('decoded', 'cache', True)
    >>> del os.environ["TLSWEEP_DECODED_CACHE"]
"""
from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from trainables import decode_pool, image_files
from trainables.atomic_file import write_atomically

log = logging.getLogger(__name__)

FORMAT = 1  # bump when what an entry holds, or how it is read, changes


class Decoded(NamedTuple):
    images: np.ndarray        # uint8 N x 3 x S x S, in the order of the paths asked for (zeros where failed)
    errors: dict[int, str]    # index -> DataError message of the files that failed, in index order
    source: str               # "decoded" (and stored), "cache" (read), "off" (not cached)


def cache_dir() -> Path:
    """Where entries live: ``$TLSWEEP_DECODED_CACHE``, else ``$TLSWEEP_CACHE/decoded`` (``~/.cache/tlsweep``)."""
    if os.environ.get("TLSWEEP_DECODED_CACHE"):
        return Path(os.environ["TLSWEEP_DECODED_CACHE"]).expanduser()
    return Path(os.environ.get("TLSWEEP_CACHE", Path.home() / ".cache" / "tlsweep")).expanduser() / "decoded"


def pixel_parts(size: int) -> dict:
    """Everything besides the files that changes the decoded pixels or which files fail."""
    import PIL
    from PIL import Image
    code = "".join(inspect.getsource(f) for f in (image_files.decode_array, image_files._range))
    return {"format": FORMAT, "size": int(size), "pil": PIL.__version__, "max_pixels": Image.MAX_IMAGE_PIXELS,
            "wide_modes": image_files.WIDE_MODES, "code": hashlib.sha256(code.encode()).hexdigest()}


def file_list(paths: list) -> Optional[tuple[list[int], list[tuple[str, int, int]]]]:
    """(order, rows): the indices of ``paths`` sorted by relative path, and their ``(relative path, size,
    mtime_ns)``; None when a file cannot be stat-ed (decoding it then names it)."""
    strs = [os.fspath(p) for p in paths]
    common = os.path.commonpath([os.path.dirname(s) or "." for s in strs]) if strs else ""
    rel = [os.path.relpath(s, common) for s in strs]
    order = sorted(range(len(strs)), key=rel.__getitem__)
    rows = []
    try:
        for i in order:
            st = os.stat(strs[i])
            rows.append((rel[i], st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return order, rows


def entry_key(rows: list[tuple[str, int, int]], size: int) -> str:
    h = hashlib.sha256(json.dumps(pixel_parts(size), sort_keys=True).encode())
    for r, n, t in rows:
        h.update(f"{r}\0{n}\0{t}\n".encode())
    return h.hexdigest()[:32]


# ---- entries ---------------------------------------------------------------------------------------------
def _suffix(message: str, path: str) -> str:
    """A file's error without its path (an entry may be read for a copy of the folder elsewhere)."""
    return message[len(path):] if message.startswith(path) else "\0" + message


def _message(suffix: str, path: str) -> str:
    return suffix[1:] if suffix.startswith("\0") else path + suffix


def write_entry(path: Path, images: np.ndarray, errors: dict[int, str], meta: dict) -> None:
    """An uncompressed npz written to a temporary file in the same folder, then renamed."""
    blob = json.dumps({"errors": {str(i): m for i, m in errors.items()}, "meta": meta}).encode()
    write_atomically(path, lambda f: np.savez(f, images=images, info=np.frombuffer(blob, np.uint8)), suffix=".npz")


def read_entry(path: Path, n: int, size: int) -> Optional[tuple[np.ndarray, dict[int, str]]]:
    """The entry's (images, {index: error suffix}), or None when absent, damaged or not what its key promises."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:  # reading a member checks its zip CRC: damage is an error
            images = z["images"]
            info = json.loads(z["info"].tobytes())
        errors = {int(i): m for i, m in info["errors"].items()}
        if images.dtype == np.uint8 and images.shape == (n, 3, size, size) and all(0 <= i < n for i in errors):
            return images, errors
        log.warning("decoded cache: %s does not match its key; decoding again", path)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is decoded again, never trusted
        log.warning("decoded cache: cannot read %s (%s: %s); decoding again", path, type(e).__name__, e)
    return None


# ---- the cached decode -----------------------------------------------------------------------------------
def load(paths: list, size: int, cache: bool = True, workers: Optional[int] = None,
         done: Callable[[int], None] = lambda n: None) -> Decoded:
    """Files ``paths`` decoded at ``size`` (see :class:`Decoded`): read from the cache, or decoded on ``workers``
    processes (:func:`trainables.decode_pool.decode_all`) and stored; ``cache=False`` only decodes."""
    def _decode(files: list[str], size: int, done: Callable[[int], None]) -> tuple[np.ndarray, dict[int, str]]:
        return decode_pool.decode_all(files, size, workers, done=done)
    strs = [os.fspath(p) for p in paths]
    listed = file_list(strs) if cache and strs else None
    if listed is None:
        images, errors = _decode(strs, size, done)
        return Decoded(images, errors, "off")
    order, rows = listed
    entry = cache_dir() / f"{size}px-{entry_key(rows, size)}.npz"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = open(entry.with_suffix(".lock"), "a")
    except OSError as e:
        log.warning("decoded cache: %s is not writable (%s); decoding without storing", entry.parent, e)
        images, errors = _decode(strs, size, done)
        return Decoded(images, errors, "off")
    sorted_strs = [strs[i] for i in order]
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = read_entry(entry, len(strs), size)
        if found is not None:
            images, suffixes = found
            errors = {i: _message(m, sorted_strs[i]) for i, m in suffixes.items()}
            source = "cache"
            done(len(strs))
        else:
            start = time.perf_counter()
            images, errors = _decode(sorted_strs, size, done)
            meta = {"files": len(strs), "size": size, "root": os.path.commonpath(sorted_strs),
                    "seconds": round(time.perf_counter() - start, 3), "pid": os.getpid(), "created": time.time()}
            suffixes = {i: _suffix(m, sorted_strs[i]) for i, m in errors.items()}
            try:
                write_entry(entry, images, suffixes, meta)
            except OSError as e:  # a full disk costs the reuse, not the trial
                log.warning("decoded cache: cannot write %s (%s)", entry, e)
            source = "decoded"
    if order != list(range(len(order))):  # back to the order asked for
        inverse = np.empty(len(order), np.int64)
        inverse[np.asarray(order)] = np.arange(len(order))
        images = images[inverse]
        errors = {order[j]: m for j, m in errors.items()}
    return Decoded(images, dict(sorted(errors.items())), source)
