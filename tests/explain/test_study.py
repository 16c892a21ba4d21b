"""``tlsweep explain`` on a study run by the orchestrator: the side-by-side comparison, one trial, the index
the report reads, and the report's Explanations section."""
import json
import re

import pytest
from PIL import Image

from analysis.report import write_report
from orchestrator.cli import main

METHODS = ["gradcam", "occlusion", "guided", "filters", "grid"]


@pytest.fixture(scope="module")
def compared(small_study):
    code = main(["explain", str(small_study), "--from-val", "4"])
    assert code == 0
    return small_study / "explain"


def test_comparison_writes_one_png_per_method_and_an_index(compared):
    index = json.loads((compared / "index.json").read_text())
    entries = {e["file"]: e for e in index["images"]}
    assert set(entries) >= {f"compare-{m}.png" for m in METHODS}
    for m in METHODS:
        entry = entries[f"compare-{m}.png"]
        assert entry["method"] == m and len(entry["trials"]) == 4
        assert sorted(entry["configurations"]) == ["resnet18 / full", "resnet18 / linear_probe",
                                                   "scratch_cnn / full", "scratch_cnn / linear_probe"]
        with Image.open(compared / entry["file"]) as im:
            assert im.format == "PNG" and im.width > 400
    # rows = the 4 probe images, columns = the image plus 4 configurations: wider than tall
    with Image.open(compared / "compare-gradcam.png") as im:
        assert im.width > im.height
    assert len(entries["compare-gradcam.png"]["images"]) == 4


def test_report_embeds_the_explanations(compared, small_study):
    html = write_report(small_study).read_text()
    assert '<h2 id="explanations">Explanations</h2>' in html
    section = html.split('<h2 id="explanations">', 1)[1]
    for m in METHODS:
        assert f'id="explain-compare-{m}"' in section
    assert len(re.findall(r'<figure id="explain-[^"]+"><img src="data:image/png;base64,', section)) >= len(METHODS)


def test_one_trial_with_files_and_a_prediction_grid(capsys, small_study, compared, tmp_path):
    probe = tmp_path / "7" / "seven.png"  # under a folder named like a class: labelled 7
    probe.parent.mkdir()
    Image.new("RGB", (40, 40), (20, 20, 20)).save(probe)
    code = main(["explain", str(small_study), "--trial", "best", "--methods", "gradcam,grid,filters",
                 "--images", str(probe), "--grid", "2x3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    index = json.loads((compared / "index.json").read_text())
    files = [e["file"] for e in index["images"]]
    single = [f for f in files if f.startswith("trial-")]
    assert sorted(single) == sorted(f"trial-{index['images'][-1]['trials'][0]}-{m}.png"
                                    for m in ("gradcam", "grid", "filters"))
    assert all(f"compare-{m}.png" in files for m in METHODS)  # the comparison stays listed
    assert "3 images in" in out


def test_explain_errors_exit_2_with_one_line(capsys, small_study, tmp_path):
    for args, message in [(["--methods", "gradcam,saliency"], "--methods: unknown name 'saliency'"),
                          (["--trial", "nope"], "--trial: no trial 'nope'"),
                          (["--images", str(tmp_path / "none.png")], "none.png: no such image file"),
                          (["--grid", "ten"], "--grid: expected ROWSxCOLS"),
                          (["--window", "0"], "--window: expected a positive number, got 0")]:
        code = main(["explain", str(small_study), *args])
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    code = main(["explain", str(tmp_path / "no_study")])
    _, err = capsys.readouterr()
    assert code == 2 and "no_study: no such study folder" in err


def test_report_embeds_only_listed_pngs_inside_explain(tmp_path):
    (tmp_path / "results").mkdir()   # a study folder (the report refuses any other folder)
    (tmp_path / "explain").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "explain" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    (tmp_path / "explain" / "index.json").write_text(json.dumps({"images": [
        {"file": "a.png", "title": "A <b>"}, {"file": "../outside.png"}, {"file": "missing.png"}, "junk"]}))
    html = write_report(tmp_path).read_text()
    section = html.split('<h2 id="explanations">', 1)[1]
    assert section.count("<figure") == 1 and 'id="explain-a"' in section and "A &lt;b&gt;" in section
    (tmp_path / "explain" / "index.json").write_text("{not json")
    assert "could not be read" in write_report(tmp_path).read_text()
