"""Long steps (decoding an image folder, computing frozen features, pretraining) print counts and an ETA on stderr,
at most every TLSWEEP_PROGRESS_S seconds; short steps print nothing."""
import io
import os
import re
import subprocess
import sys
import threading

from PIL import Image

from orchestrator.pretrain import epoch_line
from trainables.progress import Progress

TLSWEEP = os.path.join(os.path.dirname(sys.executable), "tlsweep")


def image_folder(root):
    for c, colour in (("a", (0, 200, 0)), ("b", (200, 0, 0))):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (8, 8), (colour[0] + i, colour[1], i)).save(root / c / f"{i}.png")
    return root


def train(tmp_path, **env):
    args = [TLSWEEP, "train", "--set", "data.name=imagefolder", "--set", f"data.root={image_folder(tmp_path / 'imgs')}",
            "--set", "data.image_size=16", "--set", "model.conv_layers=2", "--set", "training.epochs=1",
            "--set", "model.strategy=linear_probe", "--set", "model.dropout=0.0"]
    base = {k: v for k, v in os.environ.items() if k != "TLSWEEP_PROGRESS_S"}  # the default interval unless given
    env = {**base, "HF_HUB_OFFLINE": "1", "TLSWEEP_FEATURE_CACHE": str(tmp_path / "features"), **env}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_decoding_and_feature_computation_print_counts_on_stderr(tmp_path):
    proc = train(tmp_path, TLSWEEP_PROGRESS_S="0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    assert re.search(r"decoding the train split of imgs: \d+/12 images \(\d+%\), ETA \d+:\d\d", err), err
    assert "decoding the train split of imgs: 12/12 images in " in err
    assert "decoding the val split of imgs: 4/4 images in " in err
    assert "computing scratch_cnn features of the train split: 12/12 images in " in err
    assert "decoding" not in proc.stdout and "epoch   1/1" in proc.stdout  # stdout keeps its one line per epoch


def test_short_steps_print_nothing_by_default(tmp_path):
    proc = train(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decoding" not in proc.stderr and "computing" not in proc.stderr


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_at_most_one_line_per_interval_with_an_eta():
    out, clock = io.StringIO(), Clock()
    with Progress("decoding x", 80, "images", every=5, stream=out, clock=clock) as p:
        for _ in range(80):
            clock.now += 0.125   # 10 s in all: a line at 5 s, and the closing one
            p.add()
    lines = out.getvalue().splitlines()
    assert lines == ["decoding x: 40/80 images (50%), ETA 0:05", "decoding x: 80/80 images in 0:10"]


def test_counts_from_many_threads():
    out = io.StringIO()
    with Progress("x", 4000, every=1e9, stream=out) as p:
        threads = [threading.Thread(target=lambda: [p.add() for _ in range(1000)]) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert p.done == 4000 and out.getvalue() == ""  # quick: nothing printed


def test_pretraining_epochs_say_what_is_left():
    lines = []
    report = epoch_line("pretrain resnet18", 3, lines.append)
    report({"epoch": 1, "val_acc": 0.25, "epoch_seconds": 10.0})
    report({"epoch": 2, "val_acc": 0.5, "epoch_seconds": 20.0})
    assert lines == ["pretrain resnet18: epoch 1/3 val_acc 0.250 (10.0 s/epoch), ETA 0:20",
                     "pretrain resnet18: epoch 2/3 val_acc 0.500 (20.0 s/epoch), ETA 0:15"]
