"""Bad study files through ``tlsweep run``: one line naming the key, exit 2, before Ray starts, nothing written.
Plus a trial larger than every node of the cluster: said before the study would wait forever.

(Every single-key mistake of the study loader, with its exact message, is in tests/search_spaces/test_spec.py.)
"""
import re

import pytest

from orchestrator.cli import main
from orchestrator.tuner import run_study
from search_spaces import study_from_dict
from tests.conftest import tiny_study
from trainables.errors import ConfigError


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


GOOD_STUDY = """name: s
data: {name: digits, image_size: 16}
model: {arch: scratch_cnn, conv_layers: 2}
training: {epochs: 1, lr: {grid: [0.001, 0.01]}}
search: {algorithm: grid, scheduler: {type: asha, grace_period: 1, max_t: 1}}
"""

BAD_STUDIES = [
    ("name: s\ndata: {name: digits\n", r"line \d+"),                                            # YAML syntax
    (GOOD_STUDY.replace("search:", "serch:"), r"serch: unknown key"),                           # unknown key
    (GOOD_STUDY.replace("grace_period: 1", "grace_period: two"),
     r"search.scheduler.grace_period: expected int, got 'two'"),                                 # wrong type
    (GOOD_STUDY.replace("grace_period: 1", "grace_period: 3"), r"grace_period: 3 is larger than max_t 1"),
    (GOOD_STUDY.replace("{grid: [0.001, 0.01]}", "{loguniform: [0, 1]}"), r"training.lr: loguniform"),
    (GOOD_STUDY.replace("arch: scratch_cnn", "arch: {choice: []}"), r"model.arch: choice is empty"),
    (GOOD_STUDY.replace("algorithm: grid", "algorithm: grid, metric: val_accuracy"), r"search.metric: 'val_accuracy'"),
    (GOOD_STUDY.replace("arch: scratch_cnn", "arch: resnet_18"), r"model.arch: unknown model 'resnet_18'"),
    (GOOD_STUDY.replace("name: digits", "name: {choice: [digits, cifar11]}"), r"data.name: unknown name 'cifar11'"),
    (GOOD_STUDY + "resources: {gpu: -1}\n", r"resources.gpu"),
    (GOOD_STUDY.replace("name: s\n", ""), r"name: required"),
]


@pytest.mark.parametrize("text, message", BAD_STUDIES)
def test_bad_study_files_exit_2_before_ray_starts(capsys, monkeypatch, tmp_path, text, message):
    import orchestrator.cli as cli

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for a bad study file")
    monkeypatch.setattr(cli, "start_ray", no_ray)
    path = tmp_path / "study.yaml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "run", str(path), "--storage", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("resources, message", [
    ({"gpu": 1}, r"^resources.gpu: a trial needs 1 GPU, but no node of this Ray cluster has more than 0 \(0 in all\)"),
    ({"cpu": 64}, r"^resources.cpu: a trial needs 64 CPU, but no node of this Ray cluster has more than 2"),
    ({"by_arch": {"scratch_cnn": {"gpu": 2}}}, r"^resources.by_arch.scratch_cnn.gpu: a trial needs 2 GPU"),
    ({"workers_per_trial": 3}, r"^resources.cpu: each of the 3 workers of a trial needs 1 CPU.*\(2 in all\)"),
])
def test_a_trial_larger_than_the_cluster_is_an_error_before_waiting(ray_session, tmp_path, resources, message):
    study = study_from_dict(tiny_study("too_big", resources=resources))
    with pytest.raises(ConfigError, match=message):
        run_study(study, storage=str(tmp_path))
    assert not (tmp_path / "too_big").exists(), "nothing written"


def test_a_study_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from orchestrator.cli import main
    bad = tmp_path / "study.yaml"
    bad.write_bytes(b"name: x\nmodel: {arch: \xff\xfe}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("not a UTF-8 text file (invalid start byte at byte 22)")


@pytest.mark.parametrize("text, message", [
    (GOOD_STUDY + "model: {arch: resnet18}\n", r"study.yaml: line 6: invalid YAML \(duplicate key 'model' "
                                               r"\(first at line 3\)\)$"),
    (GOOD_STUDY.replace("epochs: 1,", "epochs: 1, epochs: 2,"), r"line 4: invalid YAML \(duplicate key 'epochs'"),
    (GOOD_STUDY.replace("lr: {grid: [0.001, 0.01]}", "lr: .nan"), r"^training.lr: expected a finite number, got nan$"),
    (GOOD_STUDY.replace("{grid: [0.001, 0.01]}", "{loguniform: [1.0e-4, .inf]}"),
     r"^training.lr.loguniform\[1\]: expected a finite number, got inf$"),
    (GOOD_STUDY + "resources: {cpu: .inf}\n", r"^resources.cpu: expected a finite number, got inf$"),
])
def test_duplicate_keys_and_non_finite_numbers_are_one_line(capsys, monkeypatch, tmp_path, text, message):
    import orchestrator.cli as cli
    monkeypatch.setattr(cli, "start_ray", lambda *a, **k: pytest.fail("Ray was started"))
    path = tmp_path / "study.yaml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "run", str(path), "--storage", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert re.search(message, lines[0].removeprefix("tlsweep: error: ")), lines[0]
    assert not (tmp_path / "out").exists()


def test_non_finite_set_values_are_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "quickstart", "--set", "training.lr=.inf", "--storage", str(tmp_path))
    assert code == 2 and err.strip() == "tlsweep: error: training.lr: expected a finite number, got inf"
    assert list(tmp_path.iterdir()) == []
