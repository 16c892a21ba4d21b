"""``--storage s3://...``: a study's results, study file and Tune checkpoints live in an object store, and
``analysis.load`` / ``tlsweep status`` / ``tlsweep resume`` read them back from there.

The object store is moto's S3 server on loopback; the URI carries the endpoint and test credentials the way a
user's would carry ``?endpoint_override=`` for MinIO (real AWS credentials come from the environment or role).
"""
import socket

import pyarrow.fs as pafs
import pytest

from analysis.load import load
from orchestrator import cli
from orchestrator.storage import StudyStore, redact, study_location
from orchestrator.tuner import resume_study, run_study, study_dir
from search_spaces import study_from_dict
from tests.conftest import tiny_study
from trainables.errors import ConfigError

BUCKET = "tlsweep-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_storage():
    from moto.server import ThreadedMotoServer
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    pafs.S3FileSystem(access_key="testing", secret_key="testing", endpoint_override=f"127.0.0.1:{port}",
                      scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
    yield f"s3://testing:testing@{BUCKET}/studies?{query}"
    server.stop()


def test_locations():
    assert study_location("s3://b/x?region=eu", "s") == "s3://b/x/s?region=eu"
    assert str(study_location("results", "s")).endswith("/results/s")
    assert redact("s3://KEY:SECRET@bucket/x") == "s3://***@bucket/x"
    assert str(StudyStore("s3://KEY:SECRET@bucket/x?region=us-east-1")) == "s3://***@bucket/x?region=us-east-1"


def test_study_on_s3_runs_reads_back_refuses_rerun_and_resumes(ray_session, s3_storage, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.chdir(tmp_path)  # nothing may land in a local ./results
    study = study_from_dict(tiny_study("s3study", training={"lr": {"grid": [0.003, 0.01]}}))
    folder, grid = run_study(study, storage=s3_storage)
    assert not grid.errors and folder == study_dir(study, s3_storage)

    store = StudyStore(folder)
    assert store.is_file("study.yaml") and store.is_file("pretrained.yaml")
    names = [i.path for i in store.fs.get_file_info(pafs.FileSelector(store.path, recursive=True))]
    assert any(n.endswith("/state.pt") for n in names), "Tune's checkpoints are in the bucket"
    assert any("/results/epochs/" in n for n in names)
    assert not (tmp_path / "results").exists()

    tables = load(folder)
    assert sorted(tables.trials["status"]) == ["TERMINATED", "TERMINATED"]
    assert len(tables.epochs) == 4 and not tables.epochs.duplicated(["trial_id", "epoch"]).any()
    assert tables.confusion.groupby("trial_id")["count"].sum().tolist() == [359, 359]

    with pytest.raises(ConfigError, match="already exist.*tlsweep resume"):
        run_study(study, storage=s3_storage)

    assert cli.main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "TERMINATED" in out and "testing:testing" not in out

    # resume of a finished study: the experiment state is read from the bucket, nothing reruns or duplicates
    _, grid = resume_study(folder)
    assert not grid.errors
    again = load(folder)
    assert len(again.epochs) == 4
    assert again.epochs.sort_values(["trial_id", "epoch"])["time_total_s"].tolist() == \
        tables.epochs.sort_values(["trial_id", "epoch"])["time_total_s"].tolist()
