"""Safe by default: YAML and --set values are data, never code; study names cannot leave the storage folder;
cluster files open no ports and hold no credentials. (Checkpoints: torch.load only with weights_only=True, see
tests/test_boundaries.py and tests/bad_input/test_weights_inputs.py; the dashboard on loopback:
tests/orchestrator/test_dashboard.py.)"""
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from search_spaces import study_from_dict
from tests.conftest import tiny_study
from trainables.config import parse_value, read_yaml, trial_config
from trainables.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CODE = "!!python/object/apply:os.system ['touch {marker}']"


def test_yaml_tags_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "study.yaml"
    path.write_text(f"name: s\ndata: {CODE.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match=r"study.yaml:.*invalid YAML"):
        read_yaml(path)
    assert not marker.exists()


def test_set_values_are_yaml_scalars_not_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    for text in (f"__import__('os').system('touch {marker}')", CODE.format(marker=marker)):
        value = parse_value(text)
        assert isinstance(value, str) and not marker.exists()
        with pytest.raises(ConfigError, match=r"training.lr: expected float"):
            trial_config({"training": {"lr": value}})
    code = main(["train", "--set", f"training.lr=__import__('os').system('touch {marker}')"])
    assert code == 2 and not marker.exists()
    assert "training.lr: expected float" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "..", ".hidden", "a\\b", "x\n"])
def test_study_names_cannot_point_outside_the_storage_folder(name):
    with pytest.raises(ConfigError, match=r"^name: .* names the results folder"):
        study_from_dict(tiny_study(name))


@pytest.mark.parametrize("path", sorted((ROOT / "cluster").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_files_open_no_ports_to_the_world(path):
    text = path.read_text()
    config = yaml.safe_load(text)
    assert "0.0.0.0/0" not in text and "::/0" not in text
    provider = config.get("provider", {})
    assert "security_group" not in provider and "firewall" not in str(provider).lower(), \
        "only the launcher's default rules (SSH, traffic between the cluster's own nodes)"
    for command in config.get("head_start_ray_commands", []):
        if "--dashboard-host" in command:
            assert "--dashboard-host=127.0.0.1" in command
