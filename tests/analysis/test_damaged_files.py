"""Damage is contained (issue 15): a truncated Parquet part is named in one warning and left out, the rest of the
study reads; a study.yaml that is not UTF-8 or not YAML is one line naming it, exit code 2."""
import warnings
from pathlib import Path

import pytest

from analysis.load import DamagedPart, StudyUnreadable, compact, load, read_study_yaml
from analysis.synthetic import synthetic_tables, write_tables
from orchestrator.cli import main
from orchestrator.sink import ParquetSink, read_part


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy interrupted half way


@pytest.fixture
def damaged_study(tmp_path):
    tables = synthetic_tables(n_trials=6, n_epochs=3, seed=3, error_fraction=0, data_name="digits")
    study = write_tables(tables, tmp_path / "s")
    part = sorted((study / "results" / "epochs").glob("*.parquet"))[2]
    truncate(part)
    return study, part


def damage_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DamagedPart)]


def test_load_warns_once_naming_the_part_and_returns_the_rest(damaged_study):
    study, part = damaged_study
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t = load(study)
    messages = damage_warnings(record)
    assert len(messages) == 1 and str(part) in messages[0], messages
    assert len(t.trials) == 6
    assert t.epochs["trial_id"].nunique() == 5 and part.stem not in set(t.epochs["trial_id"])


def test_a_snapshot_made_with_a_damaged_part_still_names_it(damaged_study):
    study, part = damaged_study
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        compact(study)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t = load(study)
    messages = damage_warnings(record)
    assert len(messages) == 1 and str(part) in messages[0], messages
    assert t.epochs["trial_id"].nunique() == 5


def test_status_and_report_exit_0_with_the_warning(damaged_study, capsys):
    study, part = damaged_study
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr()
    assert "trials: " in out.out
    assert main(["report", str(study), "--out", str(study / "r.html")]) == 0
    assert (study / "r.html").is_file()


def test_status_warning_is_one_line_on_stderr(damaged_study, tmp_path):
    import subprocess
    import sys
    study, part = damaged_study
    exe = Path(sys.executable).with_name("tlsweep")
    proc = subprocess.run([str(exe), "status", str(study)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("tlsweep: warning: ") and str(part) in lines[0], lines
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"name: s\ndata: {name: caf\xe9}\n", b"name: [unclosed\n"])
def test_unreadable_study_yaml_is_one_line_exit_2(damaged_study, capsys, content):
    study, _ = damaged_study
    (study / "study.yaml").write_bytes(content)
    with pytest.raises(StudyUnreadable, match="study.yaml"):
        read_study_yaml(study)
    for command in ("status", "report", "resume", "explain", "export"):
        extra = ["--format", "safetensors"] if command == "export" else []
        assert main([command, str(study), *extra]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "study.yaml" in err[0] and err[0].startswith("tlsweep: error: "), (command, err)


class FakeTrial:
    def __init__(self, tid: str, path: str = ""):
        self.trial_id, self.config, self.path = tid, {"training.lr": 0.1}, path
        self.placement_group_factory = None

    def get_error(self):
        return None


@pytest.mark.parametrize("with_log", [True, False])
def test_sink_resumes_a_trial_whose_part_is_damaged(tmp_path, with_log):
    """Its earlier epochs come back from Tune's result.json when there is one; the driver never crashes."""
    import json

    def view(config):
        return {"training": {"lr": config["training.lr"], "epochs": 3}, "seed": 0}, {"training.lr": None}
    sink = ParquetSink(str(tmp_path / "results"), "s", view, lambda nested: nested["training"]["epochs"])
    sink.setup()
    trial_dir = tmp_path / "run_trial_t1"
    trial_dir.mkdir()
    trial = FakeTrial("t1", str(trial_dir))
    first = {"epoch": 1, "val_acc": 0.5, "time_total_s": 1.0}
    sink.on_trial_start(0, [], trial)
    sink.on_trial_result(0, [], trial, first)
    if with_log:  # what Tune's JSON logger wrote, plus a line cut short
        (trial_dir / "result.json").write_text(json.dumps({**first, "trial_id": "t1", "done": False}) + "\n{\"epo")
    part = tmp_path / "results" / "epochs" / "t1.parquet"
    truncate(part)
    with pytest.warns(DamagedPart, match="t1.parquet"):
        assert read_part(str(part)) == []
    sink.setup()  # a resumed driver: the rows are read back from the (damaged) part
    with pytest.warns(DamagedPart):
        sink.on_trial_result(0, [], trial, {"epoch": 2, "val_acc": 0.6, "time_total_s": 2.0})
    sink.on_trial_complete(0, [], trial)
    t = load(tmp_path)
    assert t.epochs["epoch"].tolist() == ([1, 2] if with_log else [2])
    assert t.trials["status"].tolist() == ["TERMINATED"] and t.trials["epochs_run"].tolist() == [2 if with_log else 1]
    if with_log:
        assert t.epochs["val_acc"].tolist() == [0.5, 0.6] and "done" not in t.epochs.columns
