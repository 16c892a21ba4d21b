"""The trial function: a reused trial process waits long enough for its last trial to end (Ray's default, 2 s,
failed the next trial on a loaded machine)."""
import contextlib
import inspect
import os

from ray.tune.trainable.function_trainable import FunctionTrainable

import orchestrator.trainable as trainable


def test_ray_reads_the_thread_timeout_when_it_resets_a_reused_process():
    assert "TUNE_FUNCTION_THREAD_TIMEOUT_S" in inspect.getsource(FunctionTrainable.reset_config)


def test_a_trial_sets_the_wait_for_the_process_it_runs_in(monkeypatch):
    monkeypatch.delenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", raising=False)
    ran = []
    monkeypatch.setattr(trainable, "_run_trial", lambda config, **kw: ran.append(config))
    monkeypatch.setattr(trainable.trial_memory, "around", lambda tid: contextlib.nullcontext())
    monkeypatch.setattr(trainable.TuneCheckpoints, "trial_id", staticmethod(lambda: "t1"))
    trainable.run_trial({"training.lr": 0.1}, base={}, task="classification")
    assert ran == [{"training.lr": 0.1}]
    assert float(os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"]) >= 60
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "7")  # a user's own setting stays
    trainable.run_trial({}, base={}, task="classification")
    assert os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] == "7"
