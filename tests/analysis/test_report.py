"""``tlsweep report``: one self-contained HTML file, checked in headless Chromium; clear output when there is
nothing to report. Studies are synthetic Parquet parts (no Ray, no training)."""
import re
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.aggregate import aggregate_seeds, finished, swept_columns
from analysis.figures import FIGURES
from analysis.load import load
from analysis.report import leaderboard, rerun_command, write_report
from analysis.synthetic import synthetic_tables, write_tables
from orchestrator.cli import main

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def dump_dom(html_file: Path, profile: Path) -> str:
    """The report's DOM after Chromium loaded it and ran its load handler."""
    if not CHROMIUM.exists():
        pytest.skip("headless check skipped: chromium is not installed (/usr/bin/chromium); install it with "
                    "'sudo apt-get install -y chromium' (Debian/Ubuntu; .ci/run does this), then run make test again")
    proc = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           html_file.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture
def study(tmp_path):
    return write_tables(synthetic_tables(n_trials=24, n_epochs=8, seed=3), tmp_path / "study")


def test_report_renders_in_chromium(capsys, tmp_path, study):
    code, out, err = run_cli(capsys, "report", study)
    assert code == 0, err
    path = Path(out.strip().splitlines()[-1])
    assert path == (study / "report.html").resolve() and path.is_file()
    text = path.read_text()
    assert 'src="http' not in text and "<link" not in text  # self-contained

    dom = dump_dom(path, tmp_path / "chromium")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    broken = int(re.search(r'data-broken-images="(\d+)"', body).group(1))
    assert broken == 0, f"{broken} of {images} images did not decode"
    assert images == text.count("<img ")
    if FIGURES:
        assert images > 0

    # one seed per configuration: the best finished trial heads the leaderboard
    trials = load(study).trials
    best = finished(trials).sort_values("best_val_acc").iloc[-1]["trial_id"]
    table = re.search(r'<table id="leaderboard">(.*?)</table>', dom, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    assert len(rows) == 1 + min(10, len(finished(trials)))
    assert best in rows[1]
    assert "tlsweep train" in dom and f"model.arch={best_arch(trials, best)}" in dom


def best_arch(trials, trial_id):
    return trials.set_index("trial_id").loc[trial_id, "config.model.arch"]


def test_every_figure_sits_in_a_figure_with_caption(study):
    text = write_report(study).read_text()
    figures = re.findall(r"<figure[^>]*>(.*?)</figure>", text, re.S)
    assert len(figures) == text.count("<img ")
    assert all("<figcaption>" in f and "data:image/png;base64," in f for f in figures)


def test_leaderboard_means_over_seeds(tmp_path):
    t = synthetic_tables(n_trials=30, n_epochs=6, seeds=3, seed=1)
    board = leaderboard(t.trials)
    agg = aggregate_seeds(t.trials)
    assert list(board["mean"]) == sorted(agg["mean"], reverse=True)[:len(board)]
    first = board.iloc[0]
    by = swept_columns(t.trials)
    same = finished(t.trials)
    for c in by:
        same = same[same[c].isna()] if pd.isna(first[c]) else same[same[c] == first[c]]
    same = same[same["epochs_run"] == same["epochs_run"].max()]   # like with like: seeds of the same fidelity
    assert first["n"] == len(same) and first["best_trial"] == same.sort_values("best_val_acc").iloc[-1]["trial_id"]


def test_rerun_command_rebuilds_the_trial_config():
    from trainables.config import apply_overrides, trial_config
    t = synthetic_tables(n_trials=10, n_epochs=4, seed=2)
    row = t.trials.iloc[0].copy()
    row["config.data.classes"] = "[5, 6, 7]"        # lists are JSON strings in the tables
    row["config.training.batch_size"] = 32.0         # ints turned into floats by a column with gaps
    row["config.data.name"] = "digits"               # a registered data set (the synthetic tables' is made up)
    words = shlex.split(rerun_command(row, {row["config.model.arch"]: "/ckpt/a.pt"}).replace("\\\n", " "))
    assert words[:2] == ["tlsweep", "train"]
    sets = words[3::2]
    cfg = trial_config(apply_overrides({}, sets))
    assert cfg.data.classes == [5, 6, 7] and cfg.training.batch_size == 32
    assert cfg.model.arch == row["config.model.arch"] and cfg.training.lr == pytest.approx(row["config.training.lr"])
    assert cfg.model.weights == "file:/ckpt/a.pt"
    has_depth = any(s.startswith("model.freeze_depth=") for s in sets)
    assert has_depth == (row["config.model.strategy"] == "partial")  # empty values are left out


def test_missing_folder_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = run_cli(capsys, "report", tmp_path / "nope")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == ""
    assert lines[0].startswith("tlsweep: error: ") and "no such study folder" in lines[0]


def test_no_finished_trials_says_so(capsys, tmp_path):
    t = synthetic_tables(n_trials=6, n_epochs=3)
    t.trials["status"] = "ERROR"
    t.trials["error"] = "RuntimeError: boom"
    study = write_tables(t, tmp_path / "errored")
    code, out, err = run_cli(capsys, "report", study)
    assert code == 0, err
    assert "no finished trials yet" in out and "Traceback" not in out + err
    text = (study / "report.html").read_text()
    assert "No finished trials yet" in text and "RuntimeError: boom" in text
    assert 'id="leaderboard"' not in text


def test_folder_without_results_says_so(capsys, tmp_path):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "study.yaml").write_text("name: fresh\nsearch: {metric: val_acc, mode: max}\n")
    code, out, err = run_cli(capsys, "report", tmp_path / "fresh", "--out", tmp_path / "r" / "fresh.html")
    assert code == 0, err
    assert "no results yet" in out and out.strip().splitlines()[-1].endswith("fresh.html")
    assert "No results yet" in (tmp_path / "r" / "fresh.html").read_text()


def test_demo_ends_with_the_report(capsys, monkeypatch, study):
    import orchestrator.cli as cli
    monkeypatch.setattr(cli, "run_and_summarize", lambda ns: study)  # the sweep itself is tested elsewhere
    code, out, err = run_cli(capsys, "demo")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"report: {(study / 'report.html').resolve()}"


def test_without_chromium_the_skip_says_how_to_install_it(tmp_path, monkeypatch):
    import sys
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium.*make test"):
        dump_dom(tmp_path / "report.html", tmp_path / "profile")


def test_report_of_a_folder_that_is_not_a_study_writes_nothing(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"not a study")
    code, out, err = run_cli(capsys, "report", tmp_path / "photos")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "not a study folder" in lines[0]
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.jpg"]
