"""Pretrained weights for trials on any node: a copy in the study folder, bytes through Ray's object store."""
import hashlib

import pytest

from orchestrator.storage import StudyStore, study_location
from orchestrator.weights_share import Shipped, fetch, publish, ship, with_weights
from tests.orchestrator.test_storage import s3_storage  # noqa: F401 - the moto S3 server fixture
from trainables.errors import ConfigError


@pytest.fixture
def driver_cache(tmp_path):
    path = tmp_path / "driver" / "baseline_cnn-0123.pt"
    path.parent.mkdir()
    path.write_bytes(b"weights of baseline_cnn")
    return path


def test_publish_copies_into_the_study_folder_under_relative_names(tmp_path, driver_cache):
    store = StudyStore(tmp_path / "study")
    published = publish(store, {"baseline_cnn": str(driver_cache)})
    assert published == {"baseline_cnn": "pretrained/baseline_cnn-0123.pt"}
    assert (tmp_path / "study" / "pretrained" / "baseline_cnn-0123.pt").read_bytes() == b"weights of baseline_cnn"
    assert not list((tmp_path / "study" / "pretrained").glob("*.tmp"))
    driver_cache.unlink()  # a second study of the same spec: the copy is there already
    assert publish(store, {"baseline_cnn": str(driver_cache)}) == published


def test_trials_get_a_node_local_copy_named_by_content(ray_session, tmp_path, driver_cache, monkeypatch):
    monkeypatch.setenv("TLSWEEP_CACHE", str(tmp_path / "node"))
    shipped = ship({"baseline_cnn": str(driver_cache)})
    assert "baseline_cnn" in shipped and "scratch_cnn" not in shipped
    trial = with_weights({"model": {"arch": "baseline_cnn"}}, shipped)
    path = trial["model"]["weights"][len("file:"):]
    sha = hashlib.sha256(b"weights of baseline_cnn").hexdigest()
    assert path == str(tmp_path / "node" / "pretrain" / "shipped" / f"{sha}.pt")
    assert open(path, "rb").read() == b"weights of baseline_cnn"
    assert shipped.local_path("baseline_cnn") == path  # once per node
    assert with_weights({"model": {"arch": "scratch_cnn"}}, shipped) == {"model": {"arch": "scratch_cnn"}}


def test_resume_reads_the_study_folder_copies_and_names_a_missing_one(ray_session, tmp_path, driver_cache,
                                                                      monkeypatch):
    monkeypatch.setenv("TLSWEEP_CACHE", str(tmp_path / "node"))
    store = StudyStore(tmp_path / "study")
    published = publish(store, {"baseline_cnn": str(driver_cache)})
    driver_cache.unlink()  # another machine: only the study folder
    shipped = fetch(store, published)
    assert isinstance(shipped, Shipped)
    assert open(shipped.local_path("baseline_cnn"), "rb").read() == b"weights of baseline_cnn"
    (tmp_path / "study" / published["baseline_cnn"]).unlink()
    with pytest.raises(ConfigError, match="pretrained weights of baseline_cnn .* are not there"):
        fetch(store, published)
    with pytest.raises(ConfigError, match="are not there"):  # a study from before: the driver path, now gone
        fetch(store, {"baseline_cnn": str(driver_cache)})


def test_the_copy_goes_to_an_object_store_too(ray_session, s3_storage, tmp_path, driver_cache, monkeypatch):
    monkeypatch.setenv("TLSWEEP_CACHE", str(tmp_path / "node"))
    store = StudyStore(study_location(s3_storage, "s3weights"))
    published = publish(store, {"baseline_cnn": str(driver_cache)})
    assert store.is_file(published["baseline_cnn"]) and not store.is_file(published["baseline_cnn"] + ".tmp")
    driver_cache.unlink()
    assert open(fetch(store, published).local_path("baseline_cnn"), "rb").read() == b"weights of baseline_cnn"
