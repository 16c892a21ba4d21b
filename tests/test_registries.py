"""One registry per kind of name: validation and ``tlsweep list`` read it, so an entry registered at run time is
accepted and listed, and an unknown name fails with the close matches."""
import os
import subprocess
import sys

import pytest

from orchestrator.cli import main
from orchestrator.listing import KINDS
from orchestrator.loggers import LOGGERS
from search_spaces import study_from_dict
from trainables import catalog
from trainables.config import trial_config
from trainables.errors import ConfigError


@pytest.fixture
def restore(monkeypatch):
    """Registries as they were after the test (entries are added to copies of their tables)."""
    def copy(*registries):
        for r in registries:
            monkeypatch.setattr(r, "_items", dict(r._items))
            monkeypatch.setattr(r, "_about", dict(r._about))
    return copy


def run_list(capsys, *args):
    code = main(["list", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_data_set_registered_at_run_time_is_valid_and_listed(capsys, restore):
    restore(catalog.DATASETS)

    @catalog.DATASETS.register("my_photos", description="my photos, for this test")
    def load(cfg):
        raise AssertionError("validation and listing never load a data set")

    assert trial_config({"data": {"name": "my_photos"}}).data.name == "my_photos"
    study = study_from_dict({"name": "s", "data": {"name": {"choice": ["digits", "my_photos"]}}})
    assert study.domains[0].args == ("digits", "my_photos")
    with pytest.raises(ConfigError, match=r"data\.name: unknown name 'my_photos' \(known: ade20k, segfolder, shapes\); "
                                          r"'my_photos' is a classification data\.name \(task: classification\)"):
        trial_config({"task": "segmentation", "data": {"name": "my_photos"}})
    code, out, _ = run_list(capsys, "datasets", "my_*")
    assert code == 0 and out.split() == ["my_photos", "classification", "my", "photos,", "for", "this", "test"]


def test_a_lazy_entry_is_valid_without_importing_it(restore):
    restore(catalog.SEG_AUGMENTATIONS)
    catalog.SEG_AUGMENTATIONS.add("elastic", "no_such_module:elastic", "elastic deformation")
    trial_config({"task": "segmentation", "data": {"name": "shapes", "augment": "elastic"}})
    with pytest.raises(ConfigError, match=r"data\.augment: unknown name 'elastic'"):
        trial_config({"data": {"augment": "elastic"}})  # classification has its own augmentations
    with pytest.raises(ModuleNotFoundError):
        catalog.SEG_AUGMENTATIONS.get("elastic")


def test_a_logger_registered_at_run_time_is_valid_and_listed(capsys, restore):
    restore(LOGGERS)
    LOGGERS.register("aim", description="Aim runs")(lambda study: None)
    assert study_from_dict({"name": "s", "logging": ["aim", "csv"]}).logging == ["aim", "csv"]
    code, out, _ = run_list(capsys, "loggers")
    assert code == 0 and "aim          Aim runs" in out.splitlines()


@pytest.mark.parametrize("tree, message", [
    ({"data": {"name": "digit"}}, r"data\.name: unknown name 'digit' \(did you mean: digits\?\)"),
    ({"data": {"name": {"choice": ["digits", "cifar11"]}}},
     r"data\.name: unknown name 'cifar11' \(did you mean: cifar10"),
    ({"data": {"augment": "strnog"}}, r"data\.augment: unknown name 'strnog' \(did you mean: strong\?\)"),
    ({"training": {"optimizer": "adamw2"}}, r"training\.optimizer: unknown name 'adamw2' \(did you mean: adamw"),
    ({"training": {"scheduler": "cosin"}}, r"training\.scheduler: unknown name 'cosin' \(did you mean: cosine\?\)"),
    ({"model": {"activation": "gelu2"}}, r"model\.activation: unknown name 'gelu2' \(did you mean: gelu"),
    ({"task": "segmentation", "data": {"name": "shapes"}, "training": {"loss": "dise"}},
     r"training\.loss: unknown name 'dise' \(did you mean: dice"),
    ({"task": "segmentation", "data": {"name": "shapes"}, "model": {"decoder": "unett"}},
     r"model\.decoder: unknown name 'unett' \(did you mean: unet\?\)"),
    ({"task": "segmentaton"}, r"task: unknown name 'segmentaton' \(did you mean: segmentation\?\)"),
    ({"logging": ["tensorbord"]}, r"logging: unknown name 'tensorbord' \(did you mean: tensorboard\?\)"),
])
def test_unknown_names_fail_with_the_close_matches(tree, message):
    with pytest.raises(ConfigError, match=message):
        study_from_dict({"name": "s", **tree})


def test_list_prints_every_kind(capsys):
    code, out, _ = run_list(capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == list(KINDS)
    by_kind = {line.split()[0]: line for line in lines[:-1]}
    assert "classification: " in by_kind["datasets"]
    assert "segmentation: ade20k, segfolder, shapes" in by_kind["datasets"]
    assert "tlsweep list models 'resnet*'" in by_kind["models"]
    for kind in KINDS:
        if kind != "models":
            code, out, _ = run_list(capsys, kind)
            assert code == 0 and out.strip(), kind
    # listing never imports Ray (in a fresh process: other tests of the session may have started one here)
    code = ("import contextlib, io, sys\nfrom orchestrator.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    [main(['list', *k]) for k in ([], ['searchers'], ['schedulers'], ['loggers'])]\n"
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def test_list_datasets_says_the_task(capsys):
    code, out, _ = run_list(capsys, "datasets")
    rows = {tuple(line.split()[:2]) for line in out.splitlines()}
    assert {("digits", "classification"), ("ade20k", "segmentation"), ("shapes", "classification"),
            ("shapes", "segmentation")} <= rows


def test_unknown_kind_is_one_line_and_exit_2(capsys):
    code, out, err = run_list(capsys, "dataset")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tlsweep: error: list: unknown kind 'dataset' (did you mean: datasets")


def test_every_catalog_entry_resolves():
    for registry in catalog.TRIAL_NAMES:
        for name in registry.names():
            assert callable(registry.get(name)), (registry.key, name)


def test_validation_imports_neither_torch_nor_ray():
    code = ("import sys; from search_spaces import load_study; load_study('quickstart'); "
            "load_study('shapes_quickstart'); bad = {'torch', 'ray', 'timm'} & set(sys.modules); assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr


def test_logger_callbacks_come_from_the_registry(monkeypatch):
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from orchestrator.loggers import callbacks
    study = study_from_dict({"name": "s", "logging": ["csv", "json"]})
    assert [type(c) for c in callbacks(study)] == [JsonLoggerCallback, CSVLoggerCallback]  # json once, first
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"logging: wandb needs the wandb package \(pip install wandb\)"):
        callbacks(study_from_dict({"name": "s", "logging": ["wandb"]}))
