"""Progress of long steps (decoding images, computing frozen features, pretraining) on stderr: counts and an ETA.

A line at most every ``TLSWEEP_PROGRESS_S`` seconds (default 5; 0 prints every update), and none at all for a
step that ends sooner, so short steps and tests stay quiet. Inside a Ray trial stderr goes to the trial's log.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress("decoding train images", 4, "images", every=0, stream=out, clock=iter(range(9)).__next__) as p:
    ...     p.add(2)
    ...     p.add(2)
    >>> print(out.getvalue().strip())
    decoding train images: 2/4 images (50%), ETA 0:01
    decoding train images: 4/4 images in 0:03
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Callable, Optional, TextIO

EVERY_ENV = "TLSWEEP_PROGRESS_S"
DEFAULT_EVERY_S = 5.0


def duration(seconds: Optional[float]) -> str:
    """
    Example:
        >>> duration(65), duration(3725), duration(None)
        ('1:05', '1:02:05', '—')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def eta(done: float, total: float, elapsed: float) -> Optional[float]:
    """Seconds left at the rate so far; None before anything is done."""
    return elapsed / done * (total - done) if done > 0 and total >= done else None


def every_s() -> float:
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


class Progress:
    """Counts ``add``-ed from any thread; prints ``what: done/total unit (pct), ETA m:ss`` to ``stream``."""

    def __init__(self, what: str, total: int, unit: str = "", every: Optional[float] = None,
                 stream: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit = what, int(total), f" {unit}" if unit else ""
        self.every = every_s() if every is None else every
        self.stream, self.clock = stream, clock
        self.done, self.printed = 0, False
        self.start = self.last = clock()
        self.lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            now = self.clock()
            if now - self.last >= self.every and self.done < self.total:
                self.last = now
                left = eta(self.done, self.total, now - self.start)
                self._print(f"{self.done:,}/{self.total:,}{self.unit} ({self.done / max(self.total, 1):.0%}), "
                            f"ETA {duration(left)}")

    def _print(self, text: str) -> None:
        print(f"{self.what}: {text}", file=self.stream or sys.stderr, flush=True)
        self.printed = True

    def close(self) -> None:
        if self.printed or self.clock() - self.start >= self.every:
            self._print(f"{self.done:,}/{self.total:,}{self.unit} in {duration(self.clock() - self.start)}")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:  # a failed step says why elsewhere
            self.close()
