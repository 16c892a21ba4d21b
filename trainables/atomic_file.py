"""Files written whole or not at all: a temporary file in the target's folder, flushed to disk, then renamed.

Used for checkpoints (trainables.checkpoint), decoded-cache entries (trainables.decoded_cache) and the node's copies
of shipped pretrained weights (orchestrator.weights_share): a process killed mid-write leaves the old file or
none, never half of one. No torch, no numpy.

Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "sub" / "hello.bin"
    >>> write_atomically(target, lambda f: f.write(b"hello"))
    >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
    (b'hello', ['hello.bin'])
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: Path, write: Callable[[BinaryIO], object], suffix: str = "") -> None:
    """Call ``write(f)`` on a temporary file beside ``path`` (its folder made if missing), fsync it, rename it to
    ``path``; on any error (KeyboardInterrupt included) the temporary file is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
