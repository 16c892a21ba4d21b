"""Where a trial's checkpoints go. The trainable only sees this small interface.

``save(state, epoch)`` is called right before ``report`` for the same epoch; ``latest()`` returns the state
to resume from (or None). The standalone implementation writes ``ckpt-0003.pt`` files atomically; the
orchestrator supplies one that hands the files to Ray Tune.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Protocol

import torch

from trainables.atomic_file import write_atomically


class Checkpoints(Protocol):
    def latest(self) -> Optional[dict]: ...

    def save(self, state: dict, epoch: int) -> None: ...


def write_atomic(state: dict, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written checkpoint."""
    write_atomically(Path(path), lambda f: torch.save(state, f))


def read(path: Path) -> dict:
    """A checkpoint's state; ``read_from`` names the file (errors about it say which)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        state["read_from"] = str(path)
    return state


class DirCheckpoints:
    """Checkpoints in a folder, keeping the newest ``keep``."""

    def __init__(self, folder: str | os.PathLike, keep: int = 2):
        self.folder = Path(folder)
        self.keep = keep

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("ckpt-*.pt")) if self.folder.is_dir() else []

    def latest(self) -> Optional[dict]:
        files = self._files()
        return read(files[-1]) if files else None

    def save(self, state: dict, epoch: int) -> None:
        write_atomic(state, self.folder / f"ckpt-{epoch:04d}.pt")
        for old in self._files()[:-self.keep]:
            old.unlink(missing_ok=True)


class NoCheckpoints:
    def latest(self) -> Optional[dict]:
        return None

    def save(self, state: dict, epoch: int) -> None:
        pass
