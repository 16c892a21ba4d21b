"""``tlsweep run``'s checks before Ray starts (orchestrator.preflight): each mistake that needs no cluster exits 2
with one line naming the key or path, before the task's torch-importing checks and Ray, and writes nothing.

(How fast: bench/cli_latency.py, figures in docs/BENCHMARKS.md; no timed assertions here.)
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import orchestrator.cli as cli
from orchestrator import loggers, preflight
from search_spaces import study_from_dict
from tests.conftest import tiny_study

ROOT = Path(__file__).resolve().parents[2]
STUDY = """name: s
data: {name: digits, image_size: 16}
model: {arch: scratch_cnn, conv_layers: 2}
training: {epochs: 1}
search: {num_samples: 1, scheduler: none}
"""


def image_folder(root: Path, classes=("cats", "dogs"), n: int = 3) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the CLI gets as far as the task's checks (torch) or Ray."""
    def reached(what):
        def fail(*a, **k):
            raise AssertionError(f"{what} reached: the mistake was not caught before it")
        return fail
    monkeypatch.setattr(cli, "task_class", reached("the task's checks"))
    monkeypatch.setattr(cli, "start_ray", reached("Ray"))


def run(capsys, tmp_path, text: str, *args: str):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    code = cli.main(["run", str(path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def folders(tmp_path):
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))


def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))


def bad_image_folders(tmp_path):
    out = {}
    out["missing"] = tmp_path / "nowhere"
    out["empty_class"] = image_folder(tmp_path / "empty")
    (out["empty_class"] / "birds").mkdir()
    out["too_small"] = image_folder(tmp_path / "small", n=1)
    out["disagree"] = tmp_path / "splits"
    image_folder(out["disagree"] / "train")
    image_folder(out["disagree"] / "val", classes=("cats", "dogs", "cows"))
    out["corrupt"] = image_folder(tmp_path / "corrupt")
    (out["corrupt"] / "cats" / "0.png").write_bytes(b"\x89PNG not really")
    return out


CASES = [
    # (id, edit of the study text, extra CLI args, the one line)
    ("model_name", lambda t, d: t.replace("arch: scratch_cnn", "arch: resnet_18"), (),
     r"^tlsweep: error: model.arch: unknown model 'resnet_18' \(did you mean: resnet18"),
    ("strategy", lambda t, d: t.replace("conv_layers: 2", "conv_layers: 2, strategy: {grid: [full, linear]}"), (),
     r"^tlsweep: error: model.strategy: unknown name 'linear' \(did you mean: linear_probe"),
    ("cpu", lambda t, d: t + "resources: {cpu: 4096}\n", (),
     r"^tlsweep: error: resources.cpu: a trial needs 4096 CPU, but this machine has \d+; lower it"),
    ("gpu", lambda t, d: t + "resources: {gpu: 1}\n", (),
     r"^tlsweep: error: resources.gpu: a trial needs 1 GPU, but this machine has 0"),
    ("missing_root", lambda t, d: t.replace("name: digits", f"name: imagefolder, root: {d['missing']}"), (),
     r"^tlsweep: error: data.root: .*/nowhere does not exist \(data set 'imagefolder'\)$"),
    ("empty_class", lambda t, d: t.replace("name: digits", f"name: imagefolder, root: {d['empty_class']}"), (),
     r"^tlsweep: error: .*/empty/birds: class folder has no images$"),
    ("too_small", lambda t, d: t.replace("name: digits", f"name: imagefolder, root: {d['too_small']}"), (),
     r"^tlsweep: error: data \(small\): class\(es\) 'cats' \(1\), 'dogs' \(1\) have too few images to split off val"),
    ("disagree", lambda t, d: t.replace("name: digits", f"name: imagefolder, root: {d['disagree']}"), (),
     r"^tlsweep: error: .*/splits/val: class folder\(s\) cows are not in the training split"),
    ("corrupt", lambda t, d: t.replace("name: digits", f"name: imagefolder, root: {d['corrupt']}"), (),
     r"^tlsweep: error: .*/corrupt/cats/0.png: cannot read image"),
    ("imagenet", lambda t, d: t.replace("arch: scratch_cnn", "arch: resnet18, weights: imagenet"), (),
     r"^tlsweep: error: model.weights: imagenet weights for 'resnet18' are not cached and the hub is offline "
     r"\(HF_HUB_OFFLINE=1\): not in .*/hub; fill it once with network access \(huggingface-cli download timm/"),
    ("weights_missing", lambda t, d: t.replace("conv_layers: 2", f"conv_layers: 2, weights: 'file:{d['missing']}.pt'"),
     (), r"^tlsweep: error: model.weights: file .*/nowhere.pt does not exist$"),
    ("weights_junk", lambda t, d: t.replace("conv_layers: 2", f"conv_layers: 2, weights: 'file:{d['junk']}'"), (),
     r"^tlsweep: error: model.weights: .*/junk.pt is not a readable checkpoint"),
    ("logger", lambda t, d: t + "logging: [tensorboard, wandb]\n", (),
     r"^tlsweep: error: logging: wandb needs the tlsweep_no_such_package package"),
    ("storage_file", lambda t, d: t, ("--storage", "{tmp}/a_file/results"),
     r"^tlsweep: error: --storage: .*/a_file is not a folder \(the results would go to .*/a_file/results/s\)$"),
    ("long_name", lambda t, d: t.replace("name: s\n", f"name: {'n' * 300}\n"), (),
     r"^tlsweep: error: name: n{24}\.\.\. is 300 bytes long; this file system allows at most 255"),
    ("earlier_results", lambda t, d: t, (),
     r"^tlsweep: error: .*/out/s: results of study 's' already exist; continue them with 'tlsweep resume .*/out/s' "
     r"or start over with --overwrite$"),
]


@pytest.mark.parametrize("case, edit, args, line", CASES, ids=[c[0] for c in CASES])
def test_mistakes_exit_2_with_one_line_before_ray(capsys, monkeypatch, tmp_path, no_ray, case, edit, args, line):
    data = bad_image_folders(tmp_path / "data")
    data["junk"] = tmp_path / "junk.pt"
    data["junk"].write_text("not a checkpoint")
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setitem(loggers.PACKAGES, "wandb", "tlsweep_no_such_package")
    offline_hub(monkeypatch, tmp_path)
    if case == "earlier_results":
        (tmp_path / "out" / "s").mkdir(parents=True)
        (tmp_path / "out" / "s" / "study.yaml").write_text(STUDY)
    before = folders(tmp_path)
    storage = [a.format(tmp=tmp_path) for a in args] or ["--storage", str(tmp_path / "out")]
    code, err = run(capsys, tmp_path, edit(STUDY, data), *storage)
    assert code == 2 and len(err) == 1, err
    assert re.search(line, err[0]), err[0]
    assert folders(tmp_path) == sorted(before + ["study.yaml"]), "nothing written"


def test_a_class_missing_from_a_split_is_a_warning_naming_it(capsys, tmp_path, no_ray):
    root = tmp_path / "data"
    image_folder(root / "train")
    image_folder(root / "val", classes=("cats",))
    study = STUDY.replace("name: digits", f"name: imagefolder, root: {root}").replace(
        "conv_layers: 2", f"conv_layers: 2, weights: 'file:{tmp_path}/none.pt'")
    code, err = run(capsys, tmp_path, study, "--storage", str(tmp_path / "out"))
    assert code == 2 and err[0] == f"tlsweep: warning: data: {root / 'val'} has no images of class(es) dogs"
    assert err[1].startswith("tlsweep: error: model.weights: file")  # the checks went on


def test_every_sampled_value_is_checked(capsys, tmp_path, no_ray):
    good = image_folder(tmp_path / "good")
    study = STUDY.replace("name: digits", f"name: imagefolder, root: {{choice: [{good}, {tmp_path}/bad]}}")
    code, err = run(capsys, tmp_path, study, "--storage", str(tmp_path / "out"))
    assert code == 2 and err == [f"tlsweep: error: data.root: {tmp_path}/bad does not exist (data set 'imagefolder')"]


def test_a_failed_run_does_not_block_the_corrected_one(tmp_path, capsys):
    """A run in which no trial reported marks its folder; the next run replaces it (and says so), without
    --overwrite. A folder whose trials reported is kept."""
    study = study_from_dict(tiny_study("s"))
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.yaml").write_text("name: s\n")
    with pytest.raises(Exception, match="no trial of"):
        cli.end_of_run(folder, study)       # nothing reported: StudyFailed, and the mark
    assert (folder / preflight.FAILED_FILE).is_file()
    notes = []
    assert preflight.check_study(study, str(tmp_path), log=notes.append) is True
    assert notes == [f"tlsweep: note: {folder} holds a run of 's' in which no trial reported; replacing it"]
    assert (folder / "study.yaml").is_file(), "the check itself removes nothing"
    (folder / "results" / "epochs").mkdir(parents=True)
    (folder / "results" / "epochs" / "t1.parquet").write_bytes(b"")
    with pytest.raises(Exception, match="already exist"):
        preflight.check_study(study, str(tmp_path))


def test_resources_are_not_checked_against_this_machine_with_an_address(tmp_path):
    study = study_from_dict(tiny_study("s", resources={"cpu": 4096}))
    assert preflight.check_study(study, str(tmp_path), address="auto") is False
    assert not (tmp_path / "s").exists()


CHILD = """
import sys
from orchestrator.cli import main
for path in sys.argv[1:]:
    assert main(["run", path, "--storage", path + ".out"]) == 2
heavy = sorted(m for m in ("ray", "torch", "timm", "torchvision", "pandas") if m in sys.modules)
print("imported:", heavy)
"""


def test_the_checks_import_neither_torch_nor_ray(tmp_path):
    """The point of checking first: none of these mistakes costs the seconds of importing torch or Ray."""
    from trainables import model_names
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / model_names.cache_path().name).write_text(json.dumps(model_names.index()))
    studies = []
    for i, text in enumerate([STUDY.replace("scratch_cnn", "resnet_18"), STUDY + "resources: {cpu: 4096}\n",
                              STUDY.replace("name: digits", f"name: imagefolder, root: {tmp_path}/nowhere"),
                              STUDY.replace("name: s\n", "serch: {}\nname: s\n")]):
        studies.append(tmp_path / f"s{i}.yaml")
        studies[-1].write_text(text)
    env = {**os.environ, "TLSWEEP_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, studies)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("imported: []"), out.stdout + out.stderr


def test_the_corrected_run_replaces_a_run_in_which_every_trial_failed(ray_session, tmp_path, capsys):
    """Through the CLI, with Ray: a bad image the checks cannot see (not the first of its class) fails every
    trial (exit 1); once it is removed, the same command runs without --overwrite and says what it replaced."""
    root = image_folder(tmp_path / "imgs")
    (root / "dogs" / "9.png").write_bytes(b"\x89PNG not really")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.replace("name: digits", f"name: imagefolder, root: {root}") +
                     "resources: {max_failures: 0}\nlogging: []\n")
    argv = ["run", str(study), "--storage", str(tmp_path / "out")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "no trial of" in err and "dogs/9.png: cannot read image" in err
    assert (tmp_path / "out" / "s" / preflight.FAILED_FILE).is_file()
    (root / "dogs" / "9.png").unlink()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"tlsweep: note: {tmp_path / 'out' / 's'} holds a run of 's' in which no trial reported; replacing it" \
        in err
    assert not (tmp_path / "out" / "s" / preflight.FAILED_FILE).exists()
