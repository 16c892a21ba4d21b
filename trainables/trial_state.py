"""What a trial's checkpoint holds, how a trainer resumes from it, and its best weights; shared by every task.

A trainer that mixes in :class:`Resumable` has ``model``, ``plan`` (the freezing phase), ``opt``, ``sched``,
``scaler``, ``gen`` (the loader's generator), ``best`` (with ``bad_epochs``), ``best_model``, ``cfg``, ``data``,
``bundle``, ``image_size``, ``start_epoch`` and ``ensure_phase(epoch)``; it adds its task's own keys in
``state_extra``.
"""
from __future__ import annotations

import contextlib
import copy

import torch


class Resumable:
    """``state(epoch, metrics)`` -> checkpoint dict; ``restore(state)`` continues exactly where it was saved."""

    def state_extra(self) -> dict:
        return {}

    def state(self, epoch: int, metrics: dict) -> dict:
        state = {
            "epoch": epoch, "phase": self.plan.phase, "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "loader": self.gen.get_state()},
            "best": dict(self.best), "config": self.cfg.to_dict(), "class_names": list(self.data.class_names),
            "arch": self.cfg.model.arch, "image_size": self.image_size, "mean": list(self.bundle.mean),
            "std": list(self.bundle.std),
            "metrics": {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))},
            **self.state_extra(),
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.best_model is not None:
            state["best_model"] = self.best_model
        return state

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.start_epoch = int(state["epoch"])
        self.ensure_phase(self.start_epoch)
        if state["phase"] == self.plan.phase:  # at a phase switch the new phase starts a fresh optimizer
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["loader"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.best = dict(state["best"])
        self.best_model = state.get("best_model")

    # ---- the best epoch's weights (evaluated on the test split at the end) ----------------------------------
    @property
    def has_test(self) -> bool:
        return "test" in self.data.splits

    def keep_best_weights(self) -> None:
        """Keep a CPU copy of the current weights as the best epoch's, when a test split will evaluate them."""
        if self.has_test:
            self.best_model = copy.deepcopy({k: v.cpu() for k, v in self.model.state_dict().items()})

    def is_final(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is the last: the configured number, or early stopping's patience is out."""
        t = self.cfg.training
        return epoch + 1 == t.epochs or (t.early_stop_patience is not None
                                         and self.best["bad_epochs"] >= t.early_stop_patience)

    @contextlib.contextmanager
    def best_weights(self):
        """The best epoch's weights in the model for the block; the current ones are put back after."""
        current = copy.deepcopy(self.model.state_dict())
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        try:
            yield
        finally:
            self.model.load_state_dict(current)
