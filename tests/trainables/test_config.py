"""Trial configs: typed, defaults, unknown keys named, --set values parsed as YAML scalars (never code)."""
import pytest

from trainables.config import apply_overrides, parse_value, trial_config
from trainables.errors import ConfigError


def test_defaults_and_nested_build():
    cfg = trial_config({"model": {"arch": "resnet18"}, "training": {"lr": 1}})
    assert cfg.model.arch == "resnet18" and cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)
    assert cfg.to_dict()["data"]["name"] == "digits"


@pytest.mark.parametrize("values, message", [
    ({"modle": {}}, r"modle: unknown key \(did you mean: model\?\)"),
    ({"training": {"lr": "fast"}}, r"training.lr: expected float, got 'fast'"),
    ({"training": {"epochs": 2.5}}, r"training.epochs: expected int, got 2.5"),
    ({"training": {"epochs": 0}}, r"training.epochs: must be >= 1"),
    ({"model": {"freeze_depth": -0.1}}, r"model.freeze_depth: must be in \[0, 1\]"),
    ({"data": {"augment": "strng"}}, r"data.augment: unknown name 'strng' \(did you mean: strong"),
    ({"data": "digits"}, r"data: expected a mapping"),
    ({"data": {"classes": 3}}, r"data.classes: expected a list"),
    ({"model": {"batch_norm": "yes"}}, r"model.batch_norm: expected bool"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        trial_config(values)


def test_parse_value_is_yaml_scalar_not_code():
    assert parse_value("3") == 3
    assert parse_value("1e-3") == pytest.approx(0.001)
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("__import__('os').system('true')") == "__import__('os').system('true')"


def test_apply_overrides_creates_nested_keys():
    tree = apply_overrides({"model": {"arch": "x"}}, ["model.arch=resnet18", "training.epochs=3", "seed=7"])
    assert tree == {"model": {"arch": "resnet18"}, "training": {"epochs": 3}, "seed": 7}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["model.arch"])
