"""The pretraining cache key covers the code that trains the weights: an entry from other code is never reused."""
import shutil
from pathlib import Path

import orchestrator.pretrain as pretrain
from orchestrator.pretrain import code_fingerprint, spec_hash

ROOT = Path(pretrain.__file__).resolve().parent.parent


def copy_of_the_code(dest: Path) -> Path:
    for package in pretrain.CODE:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "orchestrator").mkdir()
    shutil.copy(ROOT / "orchestrator" / "pretrain.py", dest / "orchestrator" / "pretrain.py")
    return dest


def test_the_fingerprint_changes_with_the_training_code_and_only_with_it(tmp_path):
    first, second = copy_of_the_code(tmp_path / "a"), copy_of_the_code(tmp_path / "b")
    assert code_fingerprint(first) == code_fingerprint(second) == code_fingerprint(ROOT)
    loop = second / "trainables" / "loop.py"
    loop.write_text(loop.read_text() + "\n# a change to the training loop\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(second) != code_fingerprint(first)
    (first / "README.md").write_text("not code")  # files outside the training code do not count
    code_fingerprint.cache_clear()
    assert code_fingerprint(first) == code_fingerprint(ROOT)


def test_the_cache_key_holds_the_spec_and_the_code(monkeypatch):
    spec = {"model": {"arch": "resnet18"}, "training": {"epochs": 4}, "seed": 0}
    key = spec_hash(spec)
    assert key == spec_hash(dict(spec)) and key != spec_hash({**spec, "seed": 1})
    monkeypatch.setattr(pretrain, "code_fingerprint", lambda: "other code")
    assert spec_hash(spec) != key
