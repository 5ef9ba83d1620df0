"""The report page (de3pipe/report/page.py): build_report over real evaluation folders in the run
layout writes report.md, summary.json and a plot per task into a ReportFiles folder, adds the
prototype-space figure (the first seed's projection per task) where a run has one, and
setup_lines states the config, each calibrated strategy's knob grid and the recipes included."""

import json
import shutil

import matplotlib.image
import numpy as np
import pytest

from de3pipe.config import CalibrationConfig, Config, DataConfig, FinetuneConfig, PrototypeConfig
from de3pipe.infra.layout import ReportFiles, RunLayout
from de3pipe.method.calibration import calibrate
from de3pipe.method.operating_points import write_thresholds
from de3pipe.method.projection import save_projection
from de3pipe.report.page import build_report, setup_lines
from de3pipe.report.tables import markdown
from de3pipe.stages import evaluate as evaluate_stage
from tests.method.test_calibration import random_signals
from tests.report.test_plots import PNG_SIGNATURE
from tests.report.test_tables import STRATEGIES, report_config

RUNS = [("sst2", 1), ("sst2", 2), ("rte", 1)]
FIGURE_BLOCK = "\n## Prototype space\n\n![prototype space per layer](plots/prototype_space.png)\n"


def task_signals(task: str, seed: int):
    signals = random_signals(seed=seed)
    signals.meta["task"] = task
    return signals


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder with sst2 (seeds 1, 2) and rte (seed 1) evaluated, as the pipeline lays them out."""
    results = tmp_path_factory.mktemp("results")
    for task, seed in RUNS:
        run = RunLayout.of(results, task, seed)
        cfg = CalibrationConfig(strategies=STRATEGIES, n_thresholds=20, curve_step=0.1)
        thresholds, _ = calibrate(task_signals(task, 10 + seed), cfg, 1e-8)
        write_thresholds(run.calibration.thresholds, thresholds)
        run.signals.folder.mkdir(parents=True)
        task_signals(task, 20 + seed).save(run.signals.split("test"))
        evaluate_stage.run(run.signals.folder, run.calibration.thresholds, run.evaluation.folder, Config(seed=seed))
    return results


def report_cfg() -> Config:
    calibration = CalibrationConfig(strategies=STRATEGIES, n_thresholds=20, curve_step=0.1)
    return Config(calibration=calibration, report=report_config(target_tolerance=0.07))


def metrics_files(results, runs=RUNS):
    return [RunLayout.of(results, task, seed).evaluation.metrics for task, seed in runs]


def png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    return width, height


def projection(layers: int, n: int = 12, seed: int = 0) -> dict:
    """A projection's arrays as project_prototype_space returns them, for ``layers`` exits."""
    rng = np.random.default_rng(seed)
    return {
        "coords": rng.normal(size=(layers, n, 2)).astype(np.float32),
        "prototypes": rng.normal(size=(layers, 2, 2)).astype(np.float32),
        "explained": np.full(layers, 0.5, dtype=np.float32),
        "labels": np.arange(n) % 2,
        "pred": rng.integers(0, 2, (n, layers)),
    }


def as_json(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else v.tolist()))


# ---- build_report ----

def test_the_page_the_summary_and_a_plot_per_task(results, tmp_path):
    out = ReportFiles(tmp_path / "site" / "report")  # its parents do not exist yet
    cfg = report_cfg()
    summary = build_report(metrics_files(results), out, cfg)
    assert sorted(p.name for p in out.folder.iterdir()) == ["plots", "report.md", "summary.json"]  # no temporaries
    assert sorted(p.name for p in out.plots.iterdir()) == ["rte.png", "sst2.png"]
    for task in ("rte", "sst2"):
        assert png_size(ReportFiles.task_plot(out.plots, task)) == (816, 552)
    assert set(summary["tasks"]) == {"rte", "sst2"} and summary["seeds"] == [1, 2]
    assert summary["protocol"]["target_tolerance"] == 0.07  # the config's, recorded with the protocol
    assert json.loads(out.summary.read_text()) == as_json(summary)
    page = out.page.read_text()
    assert page == markdown(summary)  # no setup, no figures: the tables alone
    assert "Setup:" not in page and "## Prototype space" not in page
    assert "setup" not in summary and "figures" not in summary
    assert summary["findings"], "two learned tasks give findings"
    assert "## Findings (generated from the numbers above)" in page
    assert all(f"- {finding}" in page for finding in summary["findings"])


def test_the_setup_is_stated_when_asked(results, tmp_path):
    out = ReportFiles(tmp_path / "report")
    cfg = report_cfg()
    summary = build_report(metrics_files(results, RUNS[:1]), out, cfg, setup=True)
    assert summary["setup"] == setup_lines(cfg)
    page = out.page.read_text()
    assert page == markdown(summary)
    assert ("- calibration: targets 1.5×, 2×, 3×; de3 lam 0, 0.25, 0.5, 1, 2, 4; 20 thresholds per curve; "
            "selection nearest; calibrated curves over targets every 0.1×\n") in page
    assert json.loads(out.summary.read_text())["setup"] == summary["setup"]


def test_the_prototype_space_figure_from_each_tasks_first_seed(results, tmp_path):
    for task, seed in RUNS:
        shutil.copytree(RunLayout.of(results, task, seed).root, RunLayout.of(tmp_path, task, seed).root)
    meta = {"task": "sst2", "split": "validation"}
    # sst2's seed 1 has 2 exits, its seed 2 has 3: the figure's width tells which one was drawn
    save_projection(RunLayout.of(tmp_path, "sst2", 1).signals.prototype_space, projection(2), meta)
    save_projection(RunLayout.of(tmp_path, "sst2", 2).signals.prototype_space, projection(3, seed=1), meta)
    out = ReportFiles(tmp_path / "report")
    files = metrics_files(tmp_path, [("sst2", 2), ("sst2", 1), ("rte", 1)])  # seed 2 given first
    summary = build_report(files, out, report_cfg())
    assert summary["figures"] == {"prototype space per layer": "plots/prototype_space.png"}
    assert json.loads(out.summary.read_text())["figures"] == summary["figures"]
    page = out.page.read_text()
    assert page == markdown(summary) + FIGURE_BLOCK
    assert (out.folder / summary["figures"]["prototype space per layer"]).is_file()  # the link resolves
    assert sorted(p.name for p in out.plots.iterdir()) == ["prototype_space.png", "rte.png", "sst2.png"]
    # one task with a projection: 1 row x 2 exits at 2.4 inches and 110 dpi
    assert png_size(ReportFiles.prototype_space_plot(out.plots)) == (528, 264)

    # rte gets a projection too: a second row
    save_projection(RunLayout.of(tmp_path, "rte", 1).signals.prototype_space, projection(2, seed=2),
                    meta | {"task": "rte"})
    build_report(files, out, report_cfg())
    assert png_size(ReportFiles.prototype_space_plot(out.plots)) == (528, 528)

    # without any projection, a rebuild in the same folder leaves no stale figure behind
    for task, seed in RUNS:
        RunLayout.of(tmp_path, task, seed).signals.prototype_space.unlink(missing_ok=True)
    summary = build_report(files, out, report_cfg())
    assert "figures" not in summary and "figures" not in json.loads(out.summary.read_text())
    assert sorted(p.name for p in out.plots.iterdir()) == ["rte.png", "sst2.png"]
    assert out.page.read_text() == markdown(summary)


# ---- setup_lines ----

def test_setup_lines_of_the_default_config():
    assert setup_lines(Config()) == {
        "model": "packaged:all-MiniLM-L6-v2, max 128 tokens, pooling auto, distance euclidean",
        "data": "validation carved from train (0.1); caps train none, validation none, test none "
                "(test = the official dev set)",
        "stage 1": "3 epochs, batch 32, lr 2e-05, linear layer weights",
        "stage 2": "5 epochs, batch 32, lr 0.001, DAR ce, EMA γ 0.1, backbone frozen",
        "calibration": "targets 1.5×, 2×, 3×; de3 lam 0, 0.25, 0.5, 1, 2, 4; pcee t 1, 2, 3; 200 thresholds per "
                       "curve; selection nearest; calibrated curves over targets every 0.05×",
    }


def test_setup_lines_follow_the_config():
    cfg = Config(
        data=DataConfig(validation_size=200, max_train_samples=500, max_test_samples=64),
        finetune=FinetuneConfig(epochs=1.5, batch_size=16, learning_rate=3e-5, layer_weighting="uniform"),
        prototypes=PrototypeConfig(loss="margin", ema_gamma=0.2, controls=True),
        calibration=CalibrationConfig(
            targets=[2.0, 1.25], strategies=["de3", "de3_nodar", "entropy", "pcee"], n_thresholds=50,
            selection="best", curve_step=0.25, grids={"de3": {"lam": [0, 2]}, "pcee": {"t": [2, 4]}},
        ),
        recipes={"rte": {"finetune": {"epochs": 10, "learning_rate": 3e-5}, "data": {"max_train_samples": 100}},
                 "sst2": {}, "cola": {"prototypes": {"epochs": 2}}},
    )
    lines = setup_lines(cfg)
    assert lines["data"] == ("validation carved from train (200); caps train 500, validation none, test 64 "
                             "(test = the official dev set)")
    assert lines["stage 1"] == "1.5 epochs, batch 16, lr 3e-05, uniform layer weights"
    assert lines["stage 2"] == ("5 epochs, batch 32, lr 0.001, DAR margin, EMA γ 0.2, backbone frozen, "
                                "with the control heads")
    # the study variant de3_nodar shares de3's grid and is not listed again; entropy has no knob grid
    assert lines["calibration"] == ("targets 1.25×, 2×; de3 lam 0, 2; pcee t 2, 4; 50 thresholds per curve; "
                                    "selection best; calibrated curves over targets every 0.25×")
    assert lines["per-task recipes"] == ("rte: finetune.epochs 10, finetune.learning_rate 3e-05, "
                                         "data.max_train_samples 100; cola: prototypes.epochs 2")
    assert list(lines) == ["model", "data", "stage 1", "stage 2", "calibration", "per-task recipes"]


def test_empty_recipes_are_not_stated():
    assert "per-task recipes" not in setup_lines(Config(recipes={"sst2": {}}))


def test_a_grid_for_a_strategy_not_calibrated_is_not_stated():
    cfg = Config(calibration=CalibrationConfig(strategies=["de3"], grids={"pcee": {"t": [5]}}))
    assert "pcee" not in setup_lines(cfg)["calibration"]


def test_no_empty_clause_without_knob_grids():
    cfg = Config(calibration=CalibrationConfig(strategies=["entropy", "static"]))
    assert setup_lines(cfg)["calibration"] == ("targets 1.5×, 2×, 3×; 200 thresholds per curve; selection nearest; "
                                               "calibrated curves over targets every 0.05×")
