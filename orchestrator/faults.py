"""Fault-injection points for the reliability suite (tests/faults/, docs/RELIABILITY.md); inert unless configured.

A few places where a crash hurts most call :func:`point`: the sink between writing a Parquet part's temporary file
and renaming it (``sink.write``), a trial between writing its checkpoint file and handing it to Tune
(``checkpoint.write``), and a trial just before it reports an epoch (``trial.report``). ``TLSWEEP_FAULTS`` (JSON,
read once per process; Ray's worker processes inherit it from the driver that started Ray) says which of them
act, on which call in that process, and how::

    [{"at": "sink.write", "count": 5, "action": "pause", "seconds": 30, "marker": "/tmp/f/paused"},
     {"at": "trial.report", "epoch": 2, "match": {"training.lr": 0.01}, "action": "raise", "error": "oom"}]

Conditions: ``count`` (the n-th call of that point in this process, or since the trial started when the point
is inside a trial), ``epoch`` (the epoch being reported) and ``match`` (values of the running trial's config, by
dotted key). ``pause`` writes ``marker`` with the process id (so a test knows the process is inside the point,
e.g. mid-write, and which pid to kill) and sleeps; a pause whose marker exists already does not fire again (a
retried trial is not paused twice). ``raise`` raises ``oom`` (``torch.OutOfMemoryError``), ``error``
(RuntimeError) or ``nan`` (FloatingPointError). Without the variable a point costs one dictionary lookup.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

ENV = "TLSWEEP_FAULTS"
_plan: Optional[list[dict]] = None
_calls: dict[str, int] = {}
_context: dict = {}


def _faults() -> list[dict]:
    global _plan
    if _plan is None:
        text = os.environ.get(ENV, "")
        _plan = json.loads(text) if text else []
    return _plan


def _error(kind: str) -> BaseException:
    if kind == "oom":
        import torch
        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by TLSWEEP_FAULTS)")
    if kind == "nan":
        return FloatingPointError("loss became NaN (injected by TLSWEEP_FAULTS)")
    return RuntimeError("injected failure (TLSWEEP_FAULTS)")


def trial_started(config: dict) -> None:
    """The trial this process now runs (its resolved config): ``match`` conditions and counts refer to it."""
    if not _faults():
        return
    _context.clear()
    _context.update(_flat(config))
    _calls.clear()


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _applies(fault: dict, name: str, epoch: Optional[int]) -> bool:
    if fault.get("at") != name:
        return False
    if "count" in fault and int(fault["count"]) != _calls[name]:
        return False
    if "epoch" in fault and fault["epoch"] != epoch:
        return False
    return all(_context.get(k) == v for k, v in fault.get("match", {}).items())


def point(name: str, epoch: Optional[int] = None) -> None:
    """A named fault point: does nothing unless ``TLSWEEP_FAULTS`` names it for this call."""
    faults = _faults()
    if not faults:
        return
    _calls[name] = _calls.get(name, 0) + 1
    for fault in faults:
        if not _applies(fault, name, epoch):
            continue
        if fault.get("action") == "raise":
            raise _error(fault.get("error", "error"))
        marker = fault.get("marker")
        if marker:
            if Path(marker).exists():
                continue
            Path(marker).parent.mkdir(parents=True, exist_ok=True)
            Path(marker).write_text(str(os.getpid()))
        time.sleep(float(fault.get("seconds", 60)))
