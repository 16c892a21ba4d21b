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
from analysis.report import BOARD_ROWS, leaderboard, rerun_command, write_report
from analysis.synthetic import synthetic_tables, write_tables
from orchestrator.cli import main

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def dump_dom(html_file: Path, profile: Path, *flags: str) -> str:
    """The report's DOM after Chromium loaded it, ran its load handler and let its timers run (virtual time)."""
    if not CHROMIUM.exists():
        pytest.skip("headless check skipped: chromium is not installed (/usr/bin/chromium); install it with "
                    "'sudo apt-get install -y chromium' (Debian/Ubuntu; .ci/run does this), then run make test again")
    proc = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                           *flags, "--dump-dom", html_file.resolve().as_uri()], capture_output=True, text=True,
                          timeout=300)
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
    assert not REMOTE.search(text) and "<link" not in text  # self-contained

    dom = dump_dom(path, tmp_path / "chromium")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    broken = int(re.search(r'data-broken-images="(\d+)"', body).group(1))
    assert broken == 0, f"{broken} of {images} images did not decode"
    assert images == text.count("<img ")
    if FIGURES:
        assert images > 0
    assert_plots_drawn(body, text)

    # one seed per configuration: the best finished trial heads the leaderboard
    trials = load(study).trials
    best = finished(trials).sort_values("best_val_acc").iloc[-1]["trial_id"]
    table = re.search(r'<table id="leaderboard">(.*?)</table>', dom, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    assert len(rows) == 1 + min(BOARD_ROWS, len(finished(trials)))   # one seed each: a row per finished trial
    assert best in rows[1]
    assert "tlsweep train" in dom and f"model.arch={best_arch(trials, best)}" in dom


REMOTE = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def assert_plots_drawn(body: str, text: str) -> None:
    """Every interactive figure drew its SVG with as many traces as the report built, and no script failed."""
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert attrs["js-errors"] == "0", attrs.get("js-error-text")
    plots = text.count('<figure class="interactive"')
    assert plots >= 8, "the synthetic study should get most interactive figures"
    assert int(attrs["plots"]) == plots and attrs["plots-drawn"] == attrs["plots"], attrs["plot-state"]
    for state in attrs["plot-state"].split():
        name, built, drawn, svg = state.rsplit(":", 3)
        assert built == drawn and int(built) > 0 and svg == "1", state


def with_script(report: Path, script: str, out: Path) -> Path:
    """A copy of the report with ``script`` run once the page has loaded and settled (a test's page hook)."""
    hook = ("<script>window.addEventListener('load', function () { setTimeout(function () { "
            f"{script} }}, 400); }});</script>")
    out.write_text(report.read_text().replace("</body>", hook + "</body>"))
    return out


def best_arch(trials, trial_id):
    return trials.set_index("trial_id").loc[trial_id, "config.model.arch"]


def test_every_figure_sits_in_a_figure_with_caption(study):
    text = write_report(study).read_text()
    figures = re.findall(r'<figure class="static"[^>]*>(.*?)</figure>', text, re.S)
    assert len(figures) == text.count("<img ") > 0
    assert all("<figcaption>" in f and "data:image/png;base64," in f for f in figures)
    static = text.index('<details class="static"')   # the PNGs: collapsed, after the interactive figures
    assert all(text.index(f) > static for f in figures)
    interactive = re.findall(r'<figure class="interactive"[^>]*>(.*?)</figure>', text, re.S)
    assert interactive and all("<figcaption>" in f and "Plotly.newPlot" in f for f in interactive)
    assert text.count("Plotly.newPlot(") == len(interactive)


def test_plotly_js_is_embedded_once(study):
    from plotly.offline import get_plotlyjs
    text = write_report(study).read_text()
    bundle = get_plotlyjs()
    assert text.count(bundle[:200]) == 1 and bundle in text   # the whole bundle, inline, once
    assert text.index(bundle[:200]) < text.index("Plotly.newPlot(")


def test_report_opens_offline(tmp_path, study):
    path = write_report(study)
    text = path.read_text()
    assert not REMOTE.search(text), REMOTE.search(text)
    dom = dump_dom(path, tmp_path / "offline", '--host-resolver-rules=MAP * ~NOTFOUND', "--proxy-server=127.0.0.1:9")
    assert_plots_drawn(re.search(r"<body([^>]*)>", dom).group(1), text)


def test_leaderboard_header_click_sorts_and_box_filters(tmp_path, study):
    path = write_report(study)
    script = """
      var table = document.getElementById('leaderboard'), ths = table.tHead.rows[0].cells, col = -1;
      for (var i = 0; i < ths.length; i++) if (ths[i].textContent === "best trial's val_acc") col = i;
      function ids() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
        return r.querySelector('td.trial-id').textContent; }).join(','); }
      document.body.dataset.before = ids();
      ths[col].click(); document.body.dataset.ascending = ids();
      ths[col].click(); document.body.dataset.descending = ids();
      var box = document.getElementById('leaderboard-filter');
      box.value = 'scratch_cnn'; box.dispatchEvent(new Event('input'));
      document.body.dataset.shown = Array.prototype.filter.call(table.tBodies[0].rows, function (r) {
        return !r.hidden; }).length;
    """
    dom = dump_dom(with_script(path, script, tmp_path / "click.html"), tmp_path / "chromium")
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    board = leaderboard(load(study).trials, top=100)
    by_best = board.sort_values(["best_value"], kind="mergesort")
    assert attrs["before"].split(",") == board["best_trial"].tolist()
    assert attrs["ascending"].split(",") == by_best["best_trial"].tolist() != attrs["before"].split(",")
    assert attrs["descending"].split(",") == by_best["best_trial"].tolist()[::-1]
    assert int(attrs["shown"]) == (board["config.model.arch"] == "scratch_cnn").sum() > 0


def test_per_class_heatmap_of_150_classes_stays_readable(tmp_path):
    from analysis.interactive import per_class_in_label_order
    tables = synthetic_tables(n_trials=12, n_epochs=3, n_classes=150, seed=5, test_per_class=0, val_per_class=5)
    study = write_tables(tables, tmp_path / "many")
    path = write_report(study)
    script = """
      var fig = document.getElementById('ifig-per_class_accuracy_val');
      var ticks = Array.prototype.slice.call(fig.querySelectorAll('.yaxislayer-above .ytick text'));
      var ys = ticks.map(function (t) { var b = t.getBoundingClientRect(); return b.top + b.height / 2; });
      ys.sort(function (a, b) { return a - b; });
      var gap = Infinity;
      for (var i = 1; i < ys.length; i++) gap = Math.min(gap, ys[i] - ys[i - 1]);
      document.body.dataset.ticks = ticks.length;
      document.body.dataset.font = Math.min.apply(null, ticks.map(function (t) {
        return parseFloat(getComputedStyle(t).fontSize); }));
      document.body.dataset.gap = gap;
      document.body.dataset.labels = ticks.map(function (t) { return t.textContent; }).join(',');
      var box = fig.querySelector('.plot-scroll');
      document.body.dataset.scrolls = box.scrollHeight > box.clientHeight ? 1 : 0;
    """
    dom = dump_dom(with_script(path, script, tmp_path / "measure.html"), tmp_path / "chromium")
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert int(attrs["ticks"]) == 150                        # every class labelled
    assert float(attrs["font"]) >= 10 and float(attrs["gap"]) >= 12, attrs
    assert attrs["scrolls"] == "1"                           # the page scrolls the figure, it does not shrink it
    assert attrs["labels"].split(",") == [f"class_{i}" for i in range(150)]   # the data set's label order
    matrix = per_class_in_label_order(tables)
    assert list(matrix.index) == [f"class_{i}" for i in range(150)]


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


def _with_arch(row, arch, strategy):
    row = row.copy()
    row["config.model.arch"], row["config.model.strategy"] = arch, strategy
    row["config.model.conv_layers"], row["config.model.head_epochs"] = 3, 2   # the study set both for every trial
    row["config.model.freeze_depth"] = 0.5
    return row


def test_rerun_the_winner_lists_only_the_settings_that_apply():
    row = synthetic_tables(n_trials=4, n_epochs=2, seed=2).trials.iloc[0]
    resnet = rerun_command(_with_arch(row, "resnet18", "full"))
    scratch = rerun_command(_with_arch(row, "scratch_cnn", "full"))
    two_phase = rerun_command(_with_arch(row, "resnet18", "two_phase"))
    assert "model.conv_layers" not in resnet and "model.head_epochs" not in resnet
    assert "model.freeze_depth" not in resnet and "model.arch=resnet18" in resnet
    assert "--set model.conv_layers=3" in scratch and "model.head_epochs" not in scratch
    assert "--set model.head_epochs=2" in two_phase and "--set model.freeze_depth=0.5" in two_phase
    assert "model.conv_layers" not in two_phase
    seg = rerun_command(_with_arch(row, "resnet18", "full"), task="segmentation")
    assert seg.splitlines()[1].strip() == "--set task=segmentation \\"


def test_report_shows_the_settings_held_fixed(study):
    text = write_report(study).read_text()
    table = re.search(r'<table id="fixed-settings">(.*?)</table>', text, re.S).group(1)
    keys = re.findall(r"<th><code>([^<]+)</code></th>", table)
    trials = load(study).trials
    assert set(keys) == {c.removeprefix("config.") for c in trials.columns if c.startswith("config.")
                         and c not in swept_columns(trials) and c != "config.seed"}
    assert "training.epochs" in keys and "model.arch" not in keys


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
