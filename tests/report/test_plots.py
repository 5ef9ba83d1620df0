"""The report's plots (de3pipe/report/plots.py): a task's PNG draws exactly the lines, dots and
levels it is given (no interpolation of its own); the prototype-space figure has a panel per layer."""

import json

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from de3pipe.report.plots import plot_prototype_space, plot_task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Unevenly spaced, as a calibrated curve's achieved speed-ups are; a plot that resampled them would show
LINES = {
    "de3": (np.array([1.0, 1.37, 2.05, 2.9]), np.array([90.0, 89.1, 86.4, 80.2]), 1),
    "entropy": (np.linspace(1.0, 2.5, 9), np.linspace(90.0, 84.0, 9), 3),
    "control_entropy": (np.array([1.0, 1.8, 2.2]), np.array([90.0, 85.0, 83.5]), 3),
    "oracle": (np.array([1.0, 4.0]), np.array([90.0, 100.0]), 1),  # analysis only: never drawn
}
POINTS = {"de3": [(1.52, 88.0), (2.1, 86.0)], "entropy": [(1.49, 89.5)]}


def gate_entry(learned: bool = True) -> dict:
    return {"metric": "accuracy", "gate": {"full_model": {"value": 0.9, "low": 0.88, "high": 0.92},
                                           "trivial": {"value": 0.55, "low": 0.5, "high": 0.6}, "learned": learned}}


@pytest.fixture()
def drawn(monkeypatch):
    """The figures the plotting functions close, kept for inspection."""
    figures = []
    real_close = plt.close

    def keep(fig=None):
        figures.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figures


def by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_task_writes_a_png_of_the_stated_size(tmp_path):
    path = tmp_path / "sst2.png"
    plot_task("sst2", LINES, POINTS, gate_entry(), 3, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (816, 552)  # 6.8 x 4.6 inches at 120 dpi


def test_lines_are_drawn_as_given(tmp_path, drawn):
    plot_task("sst2", LINES, POINTS, gate_entry(), 3, tmp_path / "sst2.png")
    [fig] = drawn
    [ax] = fig.axes
    lines = by_label(ax)
    assert list(lines) == ["de3", "entropy", "control_entropy", "full model", "trivial predictor"]
    for name in ("de3", "entropy", "control_entropy"):
        xs, ys, _ = LINES[name]
        assert np.array_equal(lines[name].get_xdata(), xs) and np.array_equal(lines[name].get_ydata(), ys)
    assert "oracle" not in lines


def test_styles_say_seeds_and_study_variants(tmp_path, drawn):
    plot_task("sst2", LINES, POINTS, gate_entry(), 3, tmp_path / "sst2.png")
    lines = by_label(drawn[0].axes[0])
    assert lines["de3"].get_marker() == "."  # one seed, a few points: each point visible
    assert lines["entropy"].get_marker() == "None"
    assert lines["control_entropy"].get_linestyle() == "--" and lines["entropy"].get_linestyle() == "-"
    assert lines["control_entropy"].get_color() == lines["entropy"].get_color()  # a variant takes its rule's colour
    assert lines["de3"].get_color() != lines["entropy"].get_color()


def test_dots_and_levels(tmp_path, drawn):
    plot_task("sst2", LINES, POINTS, gate_entry(), 3, tmp_path / "sst2.png")
    ax = drawn[0].axes[0]
    dots = sorted(map(tuple, np.vstack([c.get_offsets() for c in ax.collections]).tolist()))
    assert dots == sorted(POINTS["de3"] + POINTS["entropy"])
    lines = by_label(ax)
    assert list(lines["full model"].get_ydata()) == pytest.approx([90.0, 90.0])  # the gate's values x100
    assert list(lines["trivial predictor"].get_ydata()) == pytest.approx([55.0, 55.0])
    assert ax.get_ylabel() == "accuracy (test, ×100)"
    assert "mean of 3 seeds" in ax.get_title() and "NOT LEARNED" not in ax.get_title()


def test_the_title_says_one_seed_and_not_learned(tmp_path, drawn):
    plot_task("rte", {"de3": LINES["de3"]}, {}, gate_entry(learned=False), 1, tmp_path / "rte.png")
    title = drawn[0].axes[0].get_title()
    assert title.startswith("rte: calibrated test curves — NOT LEARNED\n") and "one seed" in title
    assert (tmp_path / "rte.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_prototype_space(tmp_path, drawn):
    rng = np.random.default_rng(0)
    layers, n = 2, 10
    projection = {
        "coords": rng.normal(size=(layers, n, 2)),
        "labels": np.array([0, 1] * 5),
        "pred": rng.integers(0, 2, (n, layers)),
        "prototypes": np.array([[[0.0, 0.0], [1.0, 1.0]], [[np.nan, np.nan], [2.0, 0.0]]]),  # an unseen class
        "explained": np.array([0.61, 0.72]),
    }
    path = tmp_path / "prototype_space.png"
    plot_prototype_space({"sst2": projection}, path)
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (528, 264)  # 2.4 inches per panel at 110 dpi
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes] == ["sst2 layer 1 (61% var.)", "sst2 layer 2 (72% var.)"]
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == ["negative", "positive"]
    assert matplotlib.get_backend().lower() == "agg"


def test_plot_prototype_space_with_many_named_classes(tmp_path, drawn):
    """A dataset of your own with twelve classes: its names come from the projection's meta, and
    every class gets its own colour (tab10 would repeat two)."""
    rng = np.random.default_rng(1)
    k, n = 12, 60
    names = [f"topic_{i}" for i in range(k)]
    projection = {
        "coords": rng.normal(size=(1, n, 2)),
        "labels": np.arange(n) % k,
        "pred": rng.integers(0, k, (n, 1)),
        "prototypes": rng.normal(size=(1, k, 2)),
        "explained": np.array([0.5]),
        "meta": np.array(json.dumps({"label_names": names})),
    }
    plot_prototype_space({"topics": projection}, tmp_path / "prototype_space.png")
    legend = drawn[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == names
    colours = {tuple(np.round(handle.get_color(), 4)) for handle in legend.legend_handles}
    assert len(colours) == k
