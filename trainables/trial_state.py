"""The loop's state that outlives an epoch: freezing phases, what a checkpoint holds, resuming, the best weights.

:class:`trainables.loop.Trainer` mixes in :class:`Resumable`: it sets ``cfg``, ``task``, ``objective``,
``strategy``, ``bundle``, ``model``, ``device``, ``amp``, ``steps_per_epoch``, ``gen`` (the loader's generator),
``data``, ``image_size``, ``plan = None``, ``start_epoch``, ``best`` (``value``, ``epoch``, ``bad_epochs``) and
``best_model``; ``ensure_phase`` then sets ``plan``, ``frozen_bn``, ``opt``, ``sched`` and ``scaler`` and calls
``on_new_phase``.

A checkpoint holds the current weights as the tensors that differ from the trial's base (``model``, with a
``base`` record naming what it left out: :mod:`trainables.checkpoint_delta`; all of them for a random-init model
or once full fine-tuning has moved every tensor) and the best epoch's as the tensors that differ from the current
weights (``best_model``; nothing when the best epoch is the checkpoint's own): :func:`best_state` rebuilds them.
The base is the model as built, snapshotted before the first phase starts or before restoring; restoring rebuilds
it the same way (the Trainer builds its model before it restores) and checks its digest.
"""
from __future__ import annotations

import contextlib

import torch

from trainables.checkpoint_delta import Base, best_weights, full_weights
from trainables.freezing import Plan, apply_plan, param_groups
from trainables.optim import Schedule, build_optimizer

REBASED = ("lr", "weight_decay", "momentum")  # what Schedule.rebase applies to a restored optimizer


class Resumable:
    """``state(epoch, metrics)`` -> checkpoint dict; ``restore(state)`` continues exactly where it was saved."""

    # ---- phases (two_phase rebuilds the optimizer when it unfreezes) -----------------------------------------
    def _phase_length(self, phase: int) -> int:
        return sum(1 for e in range(self.cfg.training.epochs)
                   if self.strategy(self.bundle, self.cfg.model, e).phase == phase)

    def ensure_phase(self, epoch: int) -> bool:
        """Freeze for ``epoch``'s phase and start its optimizer and schedule; False if that phase is running."""
        plan = self.strategy(self.bundle, self.cfg.model, epoch)
        if self.plan is not None and plan.phase == self.plan.phase:
            return False
        t = self.cfg.training
        self._base()  # the first phase: the model is still as built
        self.plan = plan
        self.frozen_bn = apply_plan(self.model, plan)
        self.opt = build_optimizer(param_groups(self.model, plan, t.lr), t)
        self.sched = Schedule(self.opt, t, self._phase_length(plan.phase), self.steps_per_epoch, self.objective.mode)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.on_new_phase(plan)
        return True

    def on_new_phase(self, plan: Plan) -> None:
        """The task's own work when a phase starts (the freezing and optimizer are set)."""

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    # ---- checkpoint state ------------------------------------------------------------------------------------
    def _base(self) -> Base:
        """The model as built (its pretrained tensors), taken the first time it is asked for."""
        if getattr(self, "base", None) is None:
            self.base = Base.of(self.model, self.bundle.head, self.cfg.model.weights)
        return self.base

    def state(self, epoch: int, metrics: dict) -> dict:
        current = self.model.state_dict()
        model, base = self._base().split(current)
        state = {
            "epoch": epoch, "phase": self.plan.phase, "model": model,
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "loader": self.gen.get_state()},
            "best": dict(self.best), "config": self.cfg.to_dict(), "class_names": list(self.data.class_names),
            "arch": self.cfg.model.arch, "image_size": self.image_size, "mean": list(self.bundle.mean),
            "std": list(self.bundle.std),
            "metrics": {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))},
            "task": self.task.name, "objective": {"metric": self.objective.metric, "mode": self.objective.mode},
            **self.task.state_extra(),
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if base is not None:
            state["base"] = base
        if self.best_model is not None:
            state["best_model"] = changed(self.best_model, current)
        return state

    def restore(self, state: dict) -> None:
        full = full_weights(state, self._base().tensors, state.get("read_from", "the checkpoint to resume from"))
        self.model.load_state_dict(full)
        self.start_epoch = int(state["epoch"])
        self.ensure_phase(self.start_epoch)
        if state["phase"] == self.plan.phase:  # at a phase switch the new phase starts a fresh optimizer
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            # a checkpoint another trial wrote (PBT's exploit) holds that trial's learning rate: use this one's
            t, theirs = self.cfg.training, state.get("config", {}).get("training", {})
            if any(theirs.get(k, getattr(t, k)) != getattr(t, k) for k in REBASED):
                self.sched.rebase(self.opt, t)
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["loader"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.best = dict(state["best"])
        self.best_model = best_weights(state, full)  # read-only: the base's tensors are shared, never written

    # ---- the best epoch's weights (evaluated on the test split at the end) ----------------------------------
    @property
    def has_test(self) -> bool:
        return "test" in self.data.splits

    def keep_best_weights(self) -> None:
        """Keep a CPU copy of the current weights as the best epoch's (test split, ``explain``, ``predict``)."""
        self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def is_final(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is the last: the configured number, or early stopping's patience is out."""
        t = self.cfg.training
        return epoch + 1 == t.epochs or (t.early_stop_patience is not None
                                         and self.best["bad_epochs"] >= t.early_stop_patience)

    def end_epoch(self, epoch: int, metrics: dict, report, checkpoints, save: bool = True) -> bool:
        """A checkpoint when due (``save``: this process writes them); then ``report(metrics)``. True when
        ``epoch`` was the last."""
        final = self.is_final(epoch)
        if save and (final or (epoch + 1) % self.cfg.training.checkpoint_every == 0):
            checkpoints.save(self.state(epoch + 1, metrics), epoch + 1)
        report(metrics)
        return final



def changed(best: dict, current: dict) -> dict:
    """The tensors of ``best`` that differ from ``current`` (frozen parts are the same: not stored twice)."""
    return {k: v for k, v in best.items()
            if k not in current or v.shape != current[k].shape or not torch.equal(v, current[k].cpu())}


def best_state(state: dict, full: dict | None = None) -> dict:
    """The best epoch's full weights of a checkpoint (its own weights when that epoch is the checkpoint's);
    ``full``: the checkpoint's own full weights (:func:`trainables.checkpoint_delta.full_weights`), needed for a
    delta checkpoint."""
    return best_weights(state, full_weights(state, None) if full is None else full)
