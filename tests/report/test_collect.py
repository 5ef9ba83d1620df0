"""Collecting the runs a report covers (de3pipe/report/collect.py): real evaluation folders written
by the evaluate stage in the run layout, what collect attaches to each run, and its one-line
errors for incomplete or corrupt files."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from de3pipe.config import CalibrationConfig, Config
from de3pipe.errors import De3Error
from de3pipe.infra.io import write_json, write_npz
from de3pipe.infra.layout import RunLayout
from de3pipe.method.calibration import calibrate
from de3pipe.method.operating_points import write_thresholds
from de3pipe.report.collect import collect, load_points
from de3pipe.report.comparison import RunPoints, summarise
from de3pipe.report.tables import markdown
from de3pipe.stages import evaluate as evaluate_stage
from tests.method.test_calibration import random_signals
from tests.report.test_tables import STRATEGIES, report_config

SEEDS = (1, 2)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The results folder with two evaluated seeds of sst2, as the pipeline lays them out."""
    results = tmp_path_factory.mktemp("results")
    for seed in SEEDS:
        run = RunLayout.of(results, "sst2", seed)
        cfg = CalibrationConfig(strategies=STRATEGIES, n_thresholds=20, curve_step=0.1)
        thresholds, _ = calibrate(random_signals(seed=10 + seed), cfg, 1e-8)
        write_thresholds(run.calibration.thresholds, thresholds)
        run.signals.folder.mkdir(parents=True)
        random_signals(seed=20 + seed).save(run.signals.split("test"))
        evaluate_stage.run(run.signals.folder, run.calibration.thresholds, run.evaluation.folder, Config(seed=seed))
    return results


def copy_run(results, tmp_path, seed=1) -> RunLayout:
    """A private copy of one run, to damage."""
    shutil.copytree(RunLayout.of(results, "sst2", seed).root, RunLayout.of(tmp_path, "sst2", seed).root)
    return RunLayout.of(tmp_path, "sst2", seed)


def one_line_error(metrics_files) -> str:
    with pytest.raises(De3Error) as exc:
        collect(metrics_files)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_each_run_with_its_curves_and_points(results):
    files = [RunLayout.of(results, "sst2", seed).evaluation.metrics for seed in SEEDS]
    runs = collect(files)
    assert [(r["task"], r["seed"]) for r in runs] == [("sst2", 1), ("sst2", 2)]
    for run, path in zip(runs, files, strict=True):
        stored = json.loads(path.read_text())
        assert {k: v for k, v in run.items() if not k.startswith("_")} == stored
        assert run["_curves"].equals(pd.read_csv(path.parent / "test_curves.csv"))
        points = run["_points"]
        assert isinstance(points, RunPoints) and points.seed == run["seed"] and points.num_layers == 6
        test = random_signals(seed=20 + run["seed"])
        assert np.array_equal(points.labels, test.labels) and np.array_equal(points.full_prediction, test.pred[:, -1])
        assert points.exit_layer.shape == (len(points.table), 200)
        assert set(points.strategies("curve")) == set(run["_curves"]["strategy"])
        assert run["_training"] is None and run["_prototype_space"] is None


def test_collected_runs_make_a_report(results):
    runs = collect([RunLayout.of(results, "sst2", seed).evaluation.metrics for seed in SEEDS])
    summary, _ = summarise(runs, report_config())
    assert summary["seeds"] == [1, 2] and list(summary["tasks"]) == ["sst2"]
    assert "| sst2 | accuracy |" in markdown(summary)


def test_training_records_and_projection_are_found_through_the_run(results, tmp_path):
    run = copy_run(results, tmp_path)
    write_json(run.finetune_metrics, {"epochs": [{"validation": [{"accuracy": 0.6}]}]})
    [collected] = collect([run.evaluation.metrics])
    assert collected["_training"] is None  # one stage's record alone is not enough
    write_json(run.prototypes_metrics, {"epochs": []})
    coords = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    write_npz(run.signals.prototype_space, coords=coords, labels=np.array([0, 1]))
    [collected] = collect([run.evaluation.metrics])
    assert collected["_training"] == {"finetune": {"epochs": [{"validation": [{"accuracy": 0.6}]}]},
                                      "prototypes": {"epochs": []}}
    assert set(collected["_prototype_space"]) == {"coords", "labels"}
    assert np.array_equal(collected["_prototype_space"]["coords"], coords)


def test_empty_or_absent_test_curves_give_none(results, tmp_path):
    run = copy_run(results, tmp_path)
    run.evaluation.test_curves.write_text("")  # no strategy had a calibrated curve point
    assert collect([run.evaluation.metrics])[0]["_curves"] is None
    run.evaluation.test_curves.unlink()
    assert collect([run.evaluation.metrics])[0]["_curves"] is None


@pytest.mark.parametrize("damage", [
    lambda m: m.pop("task"), lambda m: m.pop("full_model"), lambda m: m.pop("strategies"),
    lambda m: m.update(task=3), lambda m: m.update(strategies=[]),
])
def test_metrics_lacking_keys(results, tmp_path, damage):
    run = copy_run(results, tmp_path)
    metrics = json.loads(run.evaluation.metrics.read_text())
    damage(metrics)
    run.evaluation.metrics.write_text(json.dumps(metrics))
    assert one_line_error([run.evaluation.metrics]) == (
        f"evaluation metrics {run.evaluation.metrics} lack task, full_model or strategies; re-run `de3pipe evaluate`")


def test_metrics_that_are_not_json_or_absent(results, tmp_path):
    run = copy_run(results, tmp_path)
    text = run.evaluation.metrics.read_text()
    run.evaluation.metrics.write_text(text[: len(text) // 2])
    assert one_line_error([run.evaluation.metrics]).startswith(
        f"evaluation metrics {run.evaluation.metrics} is not valid JSON, or truncated")
    absent = tmp_path / "rte" / "seed1" / "evaluation" / "metrics.json"
    assert one_line_error([absent]) == f"evaluation metrics {absent} does not exist"


def corrupt(path):
    path.write_bytes(b"not a zip archive at all")


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drop_labels(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "labels"}
    write_npz(path, **arrays)


@pytest.mark.parametrize("damage", [corrupt, truncate, drop_labels, lambda p: p.unlink()])
def test_a_corrupt_or_missing_points_file(results, tmp_path, damage):
    run = copy_run(results, tmp_path)
    damage(run.evaluation.points)
    message = one_line_error([run.evaluation.metrics])
    assert message.startswith(f"{run.evaluation.points} is missing, corrupt or truncated (")
    assert message.endswith("); re-run `de3pipe evaluate`")


def test_load_points_directly(results):
    points = load_points(RunLayout.of(results, "sst2", 2).evaluation.points, seed=7)
    assert points.seed == 7 and list(points.table.columns) == ["strategy", "kind", "target", "knob_value", "guarantee", "row"]
    assert set(points.table["kind"]) == {"target", "curve"}


def test_nothing_to_collect():
    with pytest.raises(De3Error, match="the report needs at least one evaluation metrics.json"):
        collect([])


def test_a_corrupt_prototype_space_file(results, tmp_path):
    run = copy_run(results, tmp_path)
    corrupt(run.signals.prototype_space)
    message = one_line_error([run.evaluation.metrics])
    assert str(run.signals.prototype_space) in message
