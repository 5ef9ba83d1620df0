"""Wall-clock timings at frozen points (de3pipe/inference/wallclock.py) on a tiny checkpoint and the
toy SST-2 folder: which rows come back and how their numbers fit together (never the timings)."""

import json

import numpy as np
import pytest

from de3pipe.errors import De3Error

from de3pipe.config import CalibrationConfig, DataConfig
from de3pipe.data.prepare import prepare_task
from de3pipe.inference.engine import EarlyExitEngine
from de3pipe.inference.wallclock import measure_points, measure_speed, timing_inputs
from de3pipe.method.calibration import calibrate
from de3pipe.method.metrics import layer_speedup
from de3pipe.method.operating_points import operating_points, write_thresholds
from de3pipe.modeling.batching import collate
from tests.conftest import write_sst2
from tests.helpers import invoke, prototyped_tiny_model
from tests.method.test_calibration import random_signals, with_controls

TEST_ROWS = 20  # the toy folder's dev.tsv: our test split


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """Prepared data, a prototyped 4-layer checkpoint and thresholds calibrated for 4 layers."""
    root = tmp_path_factory.mktemp("wallclock")
    glue = write_sst2(root / "glue")
    prepare_task("sst2", DataConfig(glue_dir=str(glue), validation_size=20), seed=0, out_dir=root / "data")
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    model.save_pretrained(root / "model", tokenizer)
    thresholds, _ = calibrate(random_signals(m=4), CalibrationConfig(targets=[1.5, 2.0], n_thresholds=20), 1e-8)
    write_thresholds(root / "thresholds.json", thresholds)
    return root, thresholds


@pytest.fixture(scope="module")
def inputs(run):
    root, _ = run
    return timing_inputs(root / "model", root / "data", "test")


def test_timing_inputs_are_the_checkpoint_and_the_encoded_split(inputs):
    network, tokenizer, encoded = inputs
    assert network.num_layers == 4 and network.config.stage == "prototyped"
    assert len(encoded) == TEST_ROWS and len(encoded.labels) == TEST_ROWS
    assert set(encoded.labels.tolist()) == {0, 1}
    assert encoded.features[0]["input_ids"][0] == tokenizer.cls_token_id


def test_a_seeded_subset_of_the_split(run, inputs):
    root, _ = run
    _, _, full = inputs
    _, _, subset = timing_inputs(root / "model", root / "data", "test", max_samples=8)
    _, _, again = timing_inputs(root / "model", root / "data", "test", max_samples=8)
    assert len(subset) == 8 and np.array_equal(subset.idx, again.idx)
    assert set(subset.idx) <= set(full.idx) and list(subset.idx) == sorted(subset.idx)
    _, _, capped_above = timing_inputs(root / "model", root / "data", "test", max_samples=100)
    assert np.array_equal(capped_above.idx, full.idx)


def test_measure_points_rows(run, inputs):
    _, thresholds = run
    network, tokenizer, encoded = inputs
    rows = measure_points(network, tokenizer, encoded, thresholds, ["static", "de3"], batch_size=8, repeats=1)
    expected = [(p.name, p.target.key) for p in operating_points(thresholds) if p.name in {"static", "de3"}]
    assert [(r["strategy_name"], r["target"]) for r in rows] == expected  # in the thresholds' order
    assert {t for _, t in expected} == {"1.5", "2"}
    for row in rows:
        assert row["batch_size"] == 8 and row["samples"] == TEST_ROWS
        assert row["strategy"].startswith(row["strategy_name"] + "(")
        assert row["full_seconds"] > 0 and row["early_exit_seconds"] > 0
        assert row["wallclock_speedup"] == pytest.approx(row["full_seconds"] / row["early_exit_seconds"])
        assert row["ratio"] == pytest.approx(row["wallclock_speedup"] / row["layer_speedup"])
        assert 1.0 <= row["layer_speedup"] <= 4.0
    static = {r["target"]: r for r in rows if r["strategy_name"] == "static"}
    assert static["2"]["layer_speedup"] == 2.0  # k = 2 of 4 layers
    assert static["1.5"]["strategy"] == "static(k=2)"  # k = 3 gives 4/3x, short of 1.5x
    assert static["1.5"]["layer_speedup"] == 2.0


def test_layer_speedup_is_that_of_the_engines_exits(run, inputs):
    _, thresholds = run
    network, tokenizer, encoded = inputs
    rows = measure_points(network, tokenizer, encoded, thresholds, ["entropy"], batch_size=4, repeats=1)
    engine = EarlyExitEngine(network, thresholds["eps"])
    batch = collate(tokenizer, encoded.features)
    for point, row in zip([p for p in operating_points(thresholds) if p.name == "entropy"], rows, strict=True):
        result, _ = engine.run(batch, point.strategy)
        assert row["layer_speedup"] == pytest.approx(layer_speedup(result.exit_layer, 4))


def test_measure_points_refuses_strategies_it_cannot_time(run, inputs):
    _, thresholds = run
    network, tokenizer, encoded = inputs
    with pytest.raises(De3Error, match="unknown strategy 'not_calibrated'"):
        measure_points(network, tokenizer, encoded, thresholds, ["de3", "not_calibrated"], batch_size=8, repeats=1)
    uncalibrated = thresholds | {"strategies": {k: v for k, v in thresholds["strategies"].items() if k != "entropy"}}
    with pytest.raises(De3Error, match="no calibrated point of entropy"):
        measure_points(network, tokenizer, encoded, uncalibrated, ["de3", "entropy"], batch_size=8, repeats=1)


def test_measure_speed_writes_every_batch_size(run, tmp_path):
    root, _ = run
    out = tmp_path / "speed" / "speed.json"
    rows = measure_speed(root / "model", root / "data", root / "thresholds.json", "test", [4, 16], ["static"],
                         repeats=1, out=out)
    assert [(r["batch_size"], r["target"]) for r in rows] == [(4, "1.5"), (4, "2"), (16, "1.5"), (16, "2")]
    # layer speed-ups do not depend on the batch size; written exactly as returned
    assert [r["layer_speedup"] for r in rows[:2]] == [r["layer_speedup"] for r in rows[2:]]
    assert json.loads(out.read_text()) == rows


def test_measure_speed_without_out_writes_nothing(run, tmp_path, monkeypatch):
    root, _ = run
    monkeypatch.chdir(tmp_path)
    rows = measure_speed(root / "model", root / "data", root / "thresholds.json", "test", [8], ["de3"], repeats=1,
                         max_samples=6)
    assert len(rows) == 2 and all(r["samples"] == 6 for r in rows)
    assert list(tmp_path.iterdir()) == []


# ---- known bugs: `de3pipe speed` times names that cannot run live, and ignores unknown ones ----

@pytest.fixture(scope="module")
def study_thresholds(run):
    """Thresholds that hold a study variant (control_entropy) and the analysis-only oracle."""
    root, _ = run
    cfg = CalibrationConfig(strategies=["de3", "entropy", "control_entropy", "oracle"], targets=[2.0], n_thresholds=20)
    thresholds, _ = calibrate(with_controls(random_signals(m=4)), cfg, 1e-8)
    path = root / "study_thresholds.json"
    write_thresholds(path, thresholds)
    return path


def speed(root, thresholds, strategies):
    return invoke("speed", "--model", root / "model", "--data", root / "data", "--thresholds", thresholds,
                  "--batch-sizes", "8", "--repeats", "1", "--strategies", strategies)


@pytest.mark.parametrize("name", ["control_entropy", "oracle"])
def test_speed_refuses_points_that_cannot_run_live(run, study_thresholds, name):
    root, _ = run
    result = speed(root, study_thresholds, name)
    assert result.exit_code == 2 and name in result.output, result.output


def test_speed_refuses_an_unknown_strategy(run):
    root, _ = run
    result = speed(root, root / "thresholds.json", "entorpy")
    assert result.exit_code == 2 and "entorpy" in result.output, result.output
