"""``tlsweep export``: a reloaded export predicts what its checkpoint predicts; the model card holds config,
metrics and preprocessing; a format whose package is missing is one line, exit 2."""
import importlib.util
import json

import pytest
import torch

from explain.export import FORMATS, example_input, export
from explain.loading import load_checkpoint, load_trial
from orchestrator.cli import main

INSTALLED = [f for f in FORMATS if f != "onnx" or (importlib.util.find_spec("onnx")
                                                     and importlib.util.find_spec("onnxruntime"))]


def reload_logits(path, fmt, card, x):
    if fmt == "safetensors":
        from safetensors.torch import load_file

        from trainables.config import trial_config
        from trainables.models import build_model
        tree = {**card["config"], "model": {**card["config"]["model"], "weights": "none"}}
        cfg = trial_config(tree)
        model = build_model(cfg.model, len(card["class_names"]), card["preprocessing"]["image_size"]).model
        model.load_state_dict(load_file(str(path)))
        with torch.no_grad():
            return model.eval()(x)
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(x)
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path))
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("fmt", INSTALLED)
@pytest.mark.parametrize("epoch", ["best", "last"])
def test_reloaded_export_predicts_as_the_checkpoint(quadrant_model, tmp_path, fmt, epoch):
    path, card_path = export(quadrant_model.checkpoint, epoch=epoch, fmt=fmt, out=tmp_path / f"m{FORMATS[fmt]}")
    card = json.loads(card_path.read_text())
    assert card_path == (tmp_path / f"m{FORMATS[fmt]}.json").resolve() and card["format"] == fmt
    tm = load_checkpoint(quadrant_model.checkpoint, torch.device("cpu"), epoch)
    assert card["class_names"] == tm.class_names and card["preprocessing"]["image_size"] == tm.image_size
    assert card["preprocessing"]["mean"] == pytest.approx(list(tm.mean))
    x = example_input(tm, 8)
    with torch.no_grad():
        expected = tm.model(x)
    got = reload_logits(path, fmt, card, x)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_study_export_has_the_trials_metrics(small_study, tmp_path, capsys):
    assert main(["export", str(small_study), "--format", "torchscript", "--out", str(tmp_path / "best.pt")]) == 0
    card = json.loads((tmp_path / "best.pt.json").read_text())
    tm = load_trial(small_study, "best", torch.device("cpu"))
    from analysis.load import load
    row = load(small_study).trials.set_index("trial_id").loc[tm.trial_id]
    assert card["trial_id"] == tm.trial_id and card["metrics"]["val_acc"] == pytest.approx(row["best_val_acc"])
    assert {f"best_{k}" for k in card["metrics"] if k.startswith("test_")} == \
        {c for c in row.index if c.startswith("best_test_") and row[c] == row[c]}
    assert card["config"]["model"]["arch"] == tm.config.model.arch
    x = example_input(tm, 4)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "best.pt"))(x), tm.model(x), atol=1e-4)
    assert main(["export", str(small_study), "--format", "safetensors"]) == 0  # default: <study>/export/
    assert (small_study / "export" / f"{tm.trial_id}-best.safetensors").is_file()
    assert (small_study / "export" / f"{tm.trial_id}-best.safetensors.json").is_file()


def test_onnx_without_the_package_is_one_line_exit_2(quadrant_model, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    assert main(["export", str(quadrant_model.checkpoint), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'onnx'" in err[0] and "pip install onnx" in err[0]


def test_unknown_format_is_one_line_exit_2(quadrant_model, capsys):
    assert main(["export", str(quadrant_model.checkpoint), "--format", "tflite"]) == 2
    assert "--format" in capsys.readouterr().err
