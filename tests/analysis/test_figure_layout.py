"""How the static figures read (issue #17): checked on the figure objects, the way the report saves them."""
import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from analysis.figures import FIGURES
from analysis.figures._common import colors, ordered_labels
from analysis.figures.asha import asha_data
from analysis.figures.curves import robust_limits
from analysis.figures.perclass import colour_range, per_class_matrix
from analysis.load import StudyTables
from analysis.synthetic import synthetic_tables
from tests.analysis.test_figures import rich_rows, _tables

REPORT_WIDTH = 11.0   # inches: the report's 1100 px column at the 100 dpi it saves figures with


@pytest.fixture(scope="module")
def rich():
    return _tables(rich_rows())


def _draw(fig):
    """Lay the figure out as the report does (tick labels exist after a draw)."""
    fig.savefig(io.BytesIO(), format="png", dpi=100, bbox_inches="tight")
    return fig


def _panels(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture(scope="module")
def classes_150():
    return synthetic_tables(n_trials=30, n_epochs=3, n_classes=150, seed=3, test_per_class=0)


def test_per_class_heatmap_of_150_classes_stays_readable_and_in_label_order(classes_150):
    few = _draw(FIGURES["per_class_heatmaps"].fn(synthetic_tables(n_trials=30, n_epochs=3, n_classes=10, seed=3)))
    fig = _draw(FIGURES["per_class_heatmaps"].fn(classes_150))
    wide, tall = fig.get_size_inches()
    assert wide <= REPORT_WIDTH and few.get_size_inches()[0] <= REPORT_WIDTH   # never shrunk by the page
    assert tall > 5 * few.get_size_inches()[1]                                 # it grows taller instead
    panels = _panels(fig)
    assert len(panels) == 2                                                    # accuracy and F1
    names = [t.get_text() for t in panels[0].get_yticklabels()]
    assert names == [f"class_{i}" for i in range(150)]       # label order (names would sort class_10 before class_2)
    for ax in panels:
        labels = ax.get_yticklabels() + ax.get_xticklabels()
        assert labels and min(t.get_fontsize() for t in labels) >= 8
        columns = list(dict.fromkeys(t.get_text() for t in ax.get_xticklabels()))   # above and below the panel
        assert columns == list(per_class_matrix(classes_150).columns)
    gain = FIGURES["per_class_gain"].fn(classes_150)   # the gain bars too: every class labelled at 8 pt
    labels = gain.axes[0].get_yticklabels()
    assert len(labels) == 150 and min(t.get_fontsize() for t in labels) >= 8
    assert gain.get_size_inches()[0] <= REPORT_WIDTH


def test_per_class_colours_span_the_data_not_zero_to_one(rich, classes_150):
    for tables in (rich, classes_150):
        fig = FIGURES["per_class_heatmaps"].fn(tables)
        for ax, value in zip(_panels(fig), ("accuracy", "f1")):
            data = per_class_matrix(tables, value).to_numpy(float)
            norm = ax.images[0].norm
            assert (norm.vmin, norm.vmax) == pytest.approx(colour_range(data))
            assert norm.vmax - norm.vmin < 0.95                                 # fitted, not the 0..1 scale
    finite = per_class_matrix(rich).to_numpy(float)
    finite = finite[np.isfinite(finite)]
    assert len(finite) < 50 and colour_range(finite) == (finite.min(), finite.max())
    spread = np.r_[np.linspace(0.80, 0.90, 98), 0.0, 1.0]   # two stray values do not stretch the scale
    low, high = colour_range(spread)
    assert 0.79 < low < 0.81 and 0.89 < high < 0.91
    assert colour_range(np.full(4, 0.9)) == pytest.approx((0.875, 0.925))


def test_lr_figure_has_a_panel_per_architecture_every_tick_labelled_legend_outside(rich):
    tables = synthetic_tables(n_trials=80, n_epochs=4, seed=5)
    for t in (rich, tables):
        fig = _draw(FIGURES["metric_vs_lr"].fn(t))
        ok = t.trials[(t.trials["status"] == "TERMINATED") & t.trials["best_val_acc"].notna()]
        archs = ordered_labels(ok["config.model.arch"], None)
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title().split(" (")[0] for ax in shown] == archs
        for ax, arch in zip(shown, archs):
            lrs = set(ok.loc[ok["config.model.arch"] == arch, "config.training.lr"].round(12))
            points = {round(x, 12) for c in ax.collections for x in c.get_offsets()[:, 0]}
            assert points and points <= lrs                  # this panel draws this architecture's trials only
            ticks = [lab.get_text() for lab in ax.get_xticklabels()]
            assert len(ticks) >= 2 and all(ticks)            # every major tick has its label
            assert len(ax.xaxis.get_minorticklocs()) == 0    # and there are no unlabelled minor ones
            assert ax.get_legend() is None
        assert len(fig.legends) == 1
    fig = FIGURES["metric_vs_lr"].fn(rich)
    assert [lab.get_text() for lab in fig.axes[0].get_xticklabels()] == ["1e-03", "1e-02"]   # the swept grid


def test_loss_panel_limits_exclude_an_epoch_1_outlier(rich):
    epochs = rich.epochs.copy()
    best = rich.trials[rich.trials["status"] == "TERMINATED"].sort_values("best_val_acc").iloc[-1]
    outlier = (epochs["trial_id"] == best["trial_id"]) & (epochs["epoch"] == 1)
    epochs.loc[outlier, "val_loss"] = 50.0
    spiked = StudyTables(rich.trials, epochs, rich.per_class, rich.confusion)
    plain = _draw(FIGURES["learning_curves"].fn(rich))
    fig = _draw(FIGURES["learning_curves"].fn(spiked))
    loss = next(ax for ax in fig.axes if ax.get_title().startswith("loss"))
    rest = epochs.loc[~outlier, ["val_loss", "train_loss"]].to_numpy().ravel()
    low, high = loss.get_ylim()
    assert high < 50.0 and high < 2 * np.nanmax(rest)                          # the outlier does not squash it
    assert "1 point off scale" in loss.get_title() and any(t.get_text() == "50" for t in loss.texts)
    assert not any("off scale" in ax.get_title() for ax in plain.axes)       # nothing clipped without one
    acc = next(ax for ax in fig.axes if ax.get_title().startswith("acc"))
    assert acc.get_ylim() == next(ax for ax in plain.axes if ax.get_title().startswith("acc")).get_ylim()
    low, high, clipped = robust_limits([0.9, 0.7, 0.5, 0.4, 0.35, 0.3, 0.28, np.nan, 40.0])
    assert clipped.tolist() == [False] * 8 + [True] and 0.9 < high < 1.0


def test_asha_stopped_trials_are_coloured_by_architecture(rich):
    fig = FIGURES["asha"].fn(rich)
    ax = fig.axes[0]
    data = asha_data(rich.trials, rich.epochs)
    arch = rich.trials.set_index("trial_id")["config.model.arch"]
    palette = colors(ordered_labels(arch, None))
    stopped = data[data["stopped_early"]]
    assert stopped["trial_id"].map(arch).nunique() >= 2
    marks = next(c for c in ax.collections if isinstance(c, PathCollection))
    expected = [palette[arch[t]] for t in stopped["trial_id"]]
    np.testing.assert_allclose(marks.get_facecolors()[:, :3], np.array(expected)[:, :3])
    dashed = [c for c in ax.collections if isinstance(c, LineCollection)
              and any(d[1] is not None for d in c.get_linestyles())]
    assert dashed and len(dashed[0].get_colors()) == len(stopped)
    assert {tuple(c[:3]) for c in dashed[0].get_colors()} == {tuple(palette[arch[t]][:3]) for t in stopped["trial_id"]}
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert set(palette) <= set(labels) and "stopped early" in labels and ax.get_legend() is None


def test_parallel_coordinates_label_categories_and_real_values(rich):
    fig = _draw(FIGURES["parallel_coordinates"].fn(rich))
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    axes = dict(zip(names, ax.child_axes))
    ticks = {n: [t.get_text() for t in a.get_yticklabels()] for n, a in axes.items()}
    assert ticks["arch"] == ["mobilenetv3_small_100", "resnet18", "scratch_cnn"]
    assert ticks["strategy"] == ["linear_probe", "partial", "full", "n/a"]     # least to most trained
    assert ticks["freeze_depth"] == ["0.25", "0.5", "0.75", "n/a"]
    assert ticks["lr (log)"] == ["1e-03", "1e-02"]
    assert "normalised" not in ax.get_title()
    acc = [float(t) for t in ticks["val acc"]]
    ok = rich.trials[rich.trials["status"] == "TERMINATED"]["best_val_acc"]
    assert len(acc) >= 3 and ok.min() <= min(acc) and max(acc) <= ok.max()

    t = synthetic_tables(n_trials=60, n_epochs=3, seed=6)
    fig = _draw(FIGURES["parallel_coordinates"].fn(t))
    ax = fig.axes[0]
    axes = dict(zip([x.get_text() for x in ax.get_xticklabels()], ax.child_axes))
    lr = axes["lr (log)"]
    values = [float(x.get_text()) for x in lr.get_yticklabels()]
    lrs = pd.to_numeric(t.trials["config.training.lr"])
    assert len(values) >= 2 and all(lrs.min() <= v <= lrs.max() for v in values)
    assert all(np.log10(v) == pytest.approx(round(np.log10(v))) for v in values)   # decades on a log axis
    positions = lr.get_yticks()
    assert (np.diff(positions) > 0).all()
