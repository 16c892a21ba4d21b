"""Finished trials keep ``resources.keep`` checkpoints, without optimizer state (a Tune callback).

While a trial runs, Ray keeps at least two checkpoints (orchestrator.tuner.run_config: with one, a driver killed
between deleting the previous checkpoint and replacing the experiment snapshot that names it could not resume the
trial) and each holds the optimizer, scheduler, scaler and RNG state, so the trial resumes exactly. Once it has
ended none of that is needed: ``explain`` / ``predict`` / ``export`` read ``model`` and ``best_model`` (the best
epoch's tensors that differ from ``model``: trainables.trial_state), so of a TERMINATED trial only the newest
``keep`` checkpoint folders stay, and their ``state.pt`` is rewritten without ``optimizer`` and ``scaler``
(atomically: a temporary file, then a rename). On the quickstart that takes a resnet18 trial from two 127 MB
checkpoints to one of 43-86 MB. The weights stay as the trial wrote them: a delta checkpoint (only the tensors
that changed from the pretrained base, plus its ``base`` record: trainables.checkpoint_delta) stays one, and its
readers get the full weights from ``trainables.checkpoint_delta.full_weights``.

When: at the end of the experiment, after Tune's last experiment snapshot (which records the trials as
TERMINATED), so a driver killed at any moment leaves a study that ``tlsweep resume`` continues: a trial the
snapshot still calls running finds its checkpoints as Ray left them. Which: trials that completed
(``on_trial_complete``) or had completed when a resumed run began; not those Ray stops because the study was
interrupted (Ctrl-C, ``search.time_budget_s``: it calls them TERMINATED, its snapshot RUNNING, and resume continues
them), nor errored ones (resumed later). Under PBT, where a running trial may continue from a finished one's
checkpoint, nothing is pruned until every trial has ended.
"""
from __future__ import annotations

import io
import os
import re
import pyarrow.fs as pafs
from ray.tune import Callback

STATE_FILE = "state.pt"
DROPPED = ("optimizer", "scaler")  # what only resuming needs; the scheduler and RNG state are a few bytes
CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


def checkpoint_folders(fs: pafs.FileSystem, trial_path: str) -> list[str]:
    """The ``checkpoint_<n>`` folders of a trial folder, oldest first."""
    if fs.get_file_info(trial_path).type != pafs.FileType.Directory:
        return []
    found = [(int(m.group(1)), i.path) for i in fs.get_file_info(pafs.FileSelector(trial_path))
             if i.type == pafs.FileType.Directory and (m := CHECKPOINT.match(i.base_name))]
    return [p for _, p in sorted(found)]


def strip_state(fs: pafs.FileSystem, path: str) -> bool:
    """Rewrite one ``state.pt`` without optimizer and scaler state; False when there was none to drop."""
    import torch
    if fs.get_file_info(path).type != pafs.FileType.File:
        return False
    with fs.open_input_stream(path) as f:
        state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not any(k in state for k in DROPPED):
        return False
    state = {k: v for k, v in state.items() if k not in DROPPED}
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:  # an object store replaces an object whole
        buf = io.BytesIO()
        torch.save(state, buf)
        with fs.open_output_stream(path) as f:
            f.write(buf.getvalue())
    return True


def prune_trial(fs: pafs.FileSystem, trial_path: str, keep: int) -> tuple[int, int]:
    """Delete all but the newest ``keep`` checkpoint folders of a finished trial and strip the kept ones;
    returns (folders deleted, files rewritten)."""
    folders = checkpoint_folders(fs, trial_path)
    old, kept = folders[:-keep] if keep > 0 else folders, folders[-keep:] if keep > 0 else []
    for folder in old:
        fs.delete_dir(folder)
    rewritten = sum(strip_state(fs, f"{folder}/{STATE_FILE}") for folder in kept)
    return len(old), rewritten


class PruneFinishedCheckpoints(Callback):
    """Applies ``resources.keep`` to every TERMINATED trial once the experiment ends (see the module doc).

    Args:
        keep: checkpoints a finished trial keeps (``resources.keep``, at least 1).
        wait_for_all: prune only when every trial has ended (PBT: finished trials may still be donors).
    """

    def __init__(self, keep: int, wait_for_all: bool = False, log=print):
        self.keep = max(1, int(keep))
        self.wait_for_all = wait_for_all
        self.log = log
        self.ended: set[str] = set()
        self.seen = False

    def setup(self, **info) -> None:
        self.ended, self.seen = set(), False

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if not self.seen:  # a resumed study: trials that had ended before (their run may have been killed)
            self.seen = True
            self.ended.update(t.trial_id for t in trials if t.status == "TERMINATED")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.ended.add(trial.trial_id)

    def on_experiment_end(self, trials: list, **info) -> None:
        # Only trials that really completed: at the end of an interrupted study (Ctrl-C, a time budget) Ray stops
        # the running trials and calls them TERMINATED too, but its snapshot says RUNNING and resume continues
        # them from their checkpoints, optimizer state included.
        done = [t for t in trials if t.trial_id in self.ended and t.status == "TERMINATED"]
        if self.wait_for_all and len(done) < len(trials):
            return
        deleted = rewritten = 0
        for trial in done:
            if not getattr(trial, "path", None):
                continue
            fs = getattr(trial.storage, "storage_filesystem", None) or pafs.LocalFileSystem()
            try:
                d, r = prune_trial(fs, trial.path, self.keep)
            except Exception as e:  # noqa: BLE001 - a checkpoint left whole is no reason to fail a finished study
                self.log(f"warning: could not prune the checkpoints of trial {trial.trial_id}: {e}")
                continue
            deleted, rewritten = deleted + d, rewritten + r
        self.pruned = (deleted, rewritten)  # what the last experiment end did (tests read it)
