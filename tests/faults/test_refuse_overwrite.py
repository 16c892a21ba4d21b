"""A second ``run`` of a study that has results refuses and leaves them as they were; ``--overwrite`` starts over."""
import pytest

from analysis.load import load
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study
from trainables.errors import ConfigError


def test_run_refuses_existing_results_then_overwrite_starts_over(ray_session, tmp_path):
    study = study_from_dict(tiny_study("twice", training={"epochs": 1}))
    folder, _ = run_study(study, storage=str(tmp_path))
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"twice: results of study 'twice' already exist; continue them with "
                                          r"'tlsweep resume .*twice' or start over with --overwrite"):
        run_study(study, storage=str(tmp_path))
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == files, "nothing touched"
    first = load(folder).trials["trial_id"].tolist()
    run_study(study, storage=str(tmp_path), overwrite=True)
    second = load(folder).trials["trial_id"].tolist()
    assert len(second) == 1 and second != first
