"""Ray's PopulationBasedTraining, less one livelock (imported by orchestrator.schedulers when it builds ``pbt``).

Trials here are deterministic: the same checkpoint and config give the same epoch. When a trial exploited from a
donor's checkpoint scores no better than the donor's (older) score, Ray's PBT exploits the same checkpoint again,
the rerun gives the same number, and so on, while the paused donor never gets a turn. A trial therefore exploits
a given checkpoint at most once; after that it continues, and the donor runs again.
"""
from __future__ import annotations

import logging

from ray.tune.schedulers import PopulationBasedTraining

logger = logging.getLogger(__name__)


class PopulationBasedTrainingOnce(PopulationBasedTraining):
    """PopulationBasedTraining that never restarts a trial twice from the same donor checkpoint."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._exploited: dict[str, str] = {}  # trial id -> path of the checkpoint it last continued from

    def _exploit(self, tune_controller, trial, trial_to_clone):
        checkpoint = self._trial_state[trial_to_clone].last_checkpoint
        path = str(getattr(checkpoint, "path", checkpoint))
        if self._exploited.get(trial.trial_id) == path:
            logger.info(f"[pbt] {trial.trial_id} already continued from {path}; it continues on its own")
            return
        self._exploited[trial.trial_id] = path
        super()._exploit(tune_controller, trial, trial_to_clone)
