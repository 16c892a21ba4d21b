"""``tlsweep train``: a line per epoch; bad input gets one clear line and exit code 2."""
import os
import subprocess
import sys

import pytest
from PIL import Image

from orchestrator.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_a_line_per_epoch(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--set", "data.image_size=16", "--set", "model.conv_layers=2",
                             "--set", "training.epochs=2", "--checkpoint-dir", str(tmp_path))
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "val_acc" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0001.pt", "ckpt-0002.pt"]


def test_train_from_config_file(capsys, tmp_path):
    cfg = tmp_path / "trial.yaml"
    cfg.write_text("data: {name: digits, image_size: 16}\nmodel: {arch: scratch_cnn, conv_layers: 2}\n"
                   "training: {epochs: 1}\n")
    code, out, _ = run_cli(capsys, "train", "--config", str(cfg))
    assert code == 0 and "epoch   1/1" in out


def corrupt_folder(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "b" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return tmp_path


def empty_folder(tmp_path):
    (tmp_path / "cats").mkdir(parents=True)
    (tmp_path / "dogs").mkdir()
    return tmp_path


BAD = [
    (["--set", "model.arch=resnet19"], r"model.arch: unknown model 'resnet19' \(did you mean: .*resnet18"),
    (["--set", "data.name=cifar"], r"data.name: unknown name 'cifar' \(did you mean: cifar10"),
    (["--set", "data.name=cifar10", "--set", "data.root=/nonexistent/cifar"], r"/nonexistent/cifar"),
    (["--set", "data.name=imagefolder", "--set", "data.root=/nonexistent/imgs"], r"/nonexistent/imgs does not exist"),
    (["--set", "model.freeze_depth=1.5"], r"model.freeze_depth: must be in \[0, 1\], got 1.5"),
    (["--set", "data.classes=[0, 12]"], r"data.classes: no class 12 in digits"),
    (["--set", "model.strategy=freeze_all"], r"model.strategy: unknown name 'freeze_all'"),
    (["--set", "training.optimizer=rmsprop"], r"training.optimizer: unknown name .rmsprop. \(known: adam, adamw, sgd"),
    (["--set", "trainig.epochs=2"], r"trainig: unknown key \(did you mean: training\?\)"),
    (["--config", "/nonexistent/trial.yaml"], r"/nonexistent/trial.yaml: no such file"),
    (["--set", "model.weights=file:/nonexistent/w.pt"], r"model.weights: file /nonexistent/w.pt does not exist"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_exit_2_with_one_line(capsys, args, message):
    import re
    code, out, err = run_cli(capsys, "train", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsweep: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_image_folder_problems(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--set", "data.name=imagefolder",
                           "--set", f"data.root={empty_folder(tmp_path / 'e')}")
    assert code == 2 and "cats: class folder has no images" in err
    code, _, err = run_cli(capsys, "train", "--set", "data.name=imagefolder",
                           "--set", f"data.root={corrupt_folder(tmp_path / 'c')}")
    assert code == 2 and "bad.jpg: cannot read image" in err


def test_yaml_syntax_error_names_the_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  name: digits\n model: [\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad))
    assert code == 2 and "line 3" in err


def test_console_script_exit_code(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "tlsweep")
    proc = subprocess.run([exe, "train", "--set", "model.arch=nope_net"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("tlsweep: error: model.arch: unknown model 'nope_net'")


def test_list_commands(capsys):
    code, out, _ = run_cli(capsys, "list", "datasets")
    assert code == 0 and "digits" in out.split()
    code, out, _ = run_cli(capsys, "list", "strategies")
    assert [line.split()[0] for line in out.splitlines()] == ["full", "linear_probe", "partial", "two_phase",
                                                             "unfreeze_last_k"]  # each may have a description
    code, out, _ = run_cli(capsys, "list", "models", "tv:vgg1*")
    assert "tv:vgg16" in out.split()
