"""The comparison statistics (de3pipe/report/comparison.py): weighted metrics, matched-speed-up
interpolation, the bootstrap, the baseline gate, the correction, and the envelope bias that
calibrated curves remove."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from de3pipe.method import strategies
from de3pipe.method.calibration import calibrate
from de3pipe.report.comparison import (
    Design, RunPoints, adjust, compare_task, correct_differences, interpolate, mean_over_grid, trivial_metric,
    weighted_metric, weighted_speedup,
)
from de3pipe.config import CalibrationConfig, ReportConfig
from de3pipe.method.evaluation import evaluate
from tests.method.test_calibration import random_signals

synthetic_signals = random_signals  # noqa: F401 - the strategy-registration test builds on it


def test_weighted_metrics_equal_sklearn_with_unit_weights_and_count_repeats():
    rng = np.random.default_rng(0)
    for k in (2, 3):
        labels = rng.integers(0, k, 300)
        predictions = np.where(rng.random((4, 300)) < 0.7, labels, rng.integers(0, k, (4, 300)))
        ones = np.ones((300, 1))
        for name, reference in (("accuracy", accuracy_score), ("matthews", matthews_corrcoef)) + (
                (("f1", f1_score),) if k == 2 else ()):
            got = weighted_metric(name, labels, predictions, ones)[:, 0]
            assert got == pytest.approx([reference(labels, p) for p in predictions], abs=1e-12), name
            # integer weights are repeats: the metric of the repeated sample
            weights = rng.integers(0, 3, 300)
            repeated = np.repeat(np.arange(300), weights)
            got = weighted_metric(name, labels, predictions, weights[:, None].astype(float))[:, 0]
            assert got == pytest.approx([reference(labels[repeated], p[repeated]) for p in predictions], abs=1e-12)
    exits = np.array([[1, 2, 3, 6], [6, 6, 6, 6]])
    assert weighted_speedup(exits, 6, np.ones((4, 1)))[:, 0] == pytest.approx([24 / 12, 1.0])


def test_trivial_predictors():
    labels = np.array([1] * 70 + [0] * 30)
    ones = np.ones((100, 1))
    assert trivial_metric("accuracy", labels, ones)[0] == pytest.approx(0.7)
    assert trivial_metric("f1", labels, ones)[0] == pytest.approx(f1_score(labels, np.ones(100, int)))
    assert trivial_metric("matthews", labels, ones)[0] == 0


def test_matched_speedup_interpolation_by_hand():
    # points given out of order; sorted by speed-up: (1, .9), (1.5, .8), (2.5, .6), (4, .3)
    speedups = np.array([[2.5], [1.0], [4.0], [1.5]])
    metrics = np.array([[0.6], [0.9], [0.3], [0.8]])
    at = np.array([1.25, 2.0, 3.0, 4.0])
    assert interpolate(speedups, metrics, at)[:, 0] == pytest.approx([0.85, 0.7, 0.5, 0.3])
    # the mean over [1, 2] of the line 0.9 -> 0.8 -> 0.7 (kink at 1.5): 0.8
    grid = np.linspace(1, 2, 201)
    assert mean_over_grid(interpolate(speedups, metrics, grid))[0] == pytest.approx(0.8)


def _points(labels, full, strategies_curves, seed=1, num_layers=4) -> RunPoints:
    """RunPoints with per-strategy curve points given as (exit_layer, prediction) rows."""
    names, exits, preds = [], [], []
    for name, rows in strategies_curves.items():
        for exit_layer, prediction in rows:
            names.append(name)
            exits.append(exit_layer)
            preds.append(prediction)
    table = pd.DataFrame({"strategy": names, "kind": "curve", "target": np.arange(len(names)) + 1.1, "knob_value": np.nan})
    table["row"] = np.arange(len(table))
    return RunPoints(seed, labels, np.arange(len(labels)), full, num_layers, table, np.array(exits), np.array(preds))


def test_matched_speedups_and_area_of_a_hand_made_task():
    labels = np.array([0, 1] * 50)
    full = labels.copy()  # the full model is always right: 1.0 at 1x
    wrong = 1 - labels
    half = np.where(np.arange(100) < 50, labels, wrong)  # right on the first half: 0.5
    # de3: one point at layer 2 (speed-up 2) with accuracy 0.5; entropy: one point at layer 1 (4x), accuracy 0.5
    runs = [_points(labels, full, {"de3": [(np.full(100, 2), half)], "entropy": [(np.full(100, 1), half)]})]
    cfg = ReportConfig(matched_speedups=[1.5, 2.0, 3.0], comparisons=["entropy"], bootstrap_samples=200)
    result = compare_task("sst2", "accuracy", runs, cfg)
    assert result.matched["de3"]["1.5"].value == pytest.approx(0.75)  # halfway from (1, 1.0) to (2, 0.5)
    assert result.matched["de3"]["3"] is None  # de3's curve stops at 2x
    assert result.matched["entropy"]["2"].value == pytest.approx(1 - 0.5 / 3)  # from (1, 1) to (4, .5)
    assert result.differences["entropy"]["1.5"].value == pytest.approx(0.75 - (1 - 0.5 / 6))
    assert result.area["range"] == [1.0, 2.0]
    assert result.area["strategies"]["de3"].value == pytest.approx(0.75)
    assert result.gate["learned"]


def test_the_baseline_gate():
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.7).astype(int)
    cfg = ReportConfig(bootstrap_samples=300)
    majority = _points(labels, np.ones(400, int), {})
    assert not compare_task("rte", "accuracy", [majority], cfg).learned
    good = _points(labels, np.where(rng.random(400) < 0.9, labels, 1 - labels), {})
    gate = compare_task("rte", "accuracy", [good], cfg).gate
    assert gate["learned"] and gate["trivial"]["value"] == pytest.approx(labels.mean())
    assert not compare_task("mrpc", "f1", [majority], cfg).learned  # all-positive F1 is the baseline
    noise = _points(labels, rng.integers(0, 2, 400), {})
    assert not compare_task("cola", "matthews", [noise], cfg).learned
    assert compare_task("cola", "matthews", [good], cfg).learned


def test_holm_and_bonferroni():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "none") == p


def test_bootstrap_covers_a_known_difference():
    """Seeded simulation: two classifiers with true accuracies 0.80 and 0.75 on correlated
    examples; the paired bootstrap's 95% interval covers 0.05 in about 95% of datasets."""
    rng = np.random.default_rng(7)
    n, datasets, covered = 400, 300, 0
    cfg = ReportConfig(bootstrap_samples=400)
    for d in range(datasets):
        labels = rng.integers(0, 2, n)
        shared = rng.random(n)
        right_a = shared < 0.80
        right_b = np.where(rng.random(n) < 0.5, shared < 0.75, rng.random(n) < 0.75)
        preds = np.stack([np.where(right_a, labels, 1 - labels), np.where(right_b, labels, 1 - labels)])
        run = _points(labels, labels, {})
        design = Design.for_runs([run], cfg.model_copy(update={"bootstrap_seed": d}))
        values = weighted_metric("accuracy", labels, preds, np.ones((n, 1)))[:, 0]
        reps = weighted_metric("accuracy", labels, preds, design.weights[0])
        estimate = design.combine(values[None, 0] - values[None, 1], (reps[0] - reps[1])[None], paired=True)
        covered += estimate.low <= 0.05 <= estimate.high
    assert 0.91 <= covered / datasets <= 0.985


def test_identical_strategies_say_so_and_intervals_are_never_empty():
    labels = np.array([0, 1] * 60)
    pred = np.where(np.arange(120) % 3 == 0, 1 - labels, labels)
    runs = [_points(labels, labels, {"de3": [(np.full(120, 2), pred)], "distance": [(np.full(120, 2), pred)],
                                     "entropy": [(np.full(120, 2), labels)]}, seed=s) for s in (1, 2, 3)]
    result = compare_task("sst2", "accuracy", runs, ReportConfig(comparisons=["distance", "entropy"],
                                                                 matched_speedups=[1.5], bootstrap_samples=200))
    same = result.differences["distance"]["1.5"]
    assert same.identical and same.value == 0
    differs = result.differences["entropy"]["1.5"]  # the same in every seed: still an interval from the examples
    assert not differs.identical and differs.high - differs.low > 0.01
    assert correct_differences([result], ReportConfig()) == 4  # 2 comparisons x (1.5x, area)


@dataclass(frozen=True)
class _NoisyConfidence(strategies.Strategy):
    """Exit when entropy plus noise channel c is below tau: every channel has the same expected curve."""

    tau: float
    c: int = 0
    name: ClassVar[str] = "noisy_one"
    channels: ClassVar[int] = 1

    def init_state(self, n):
        return {"noise": np.random.default_rng(1000 + self.c).normal(0, 0.15, (n, 16))}

    def exits(self, layer, signals, state, labels):
        return signals.entropy + state["noise"][: len(signals.entropy), layer] < self.tau

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for c in range(cls.channels):
            for tau in np.linspace(-0.3, 1.3, 40):
                yield {"tau": float(tau), "c": c}


@dataclass(frozen=True)
class _NoisyFive(_NoisyConfidence):
    name: ClassVar[str] = "noisy_five"
    secondary_knob: ClassVar[str | None] = "c"
    channels: ClassVar[int] = 5


def test_calibrated_curves_remove_the_envelope_bias(monkeypatch):
    """Same curve for each knob value, five times as many knob values: the calibrated areas do not
    differ significantly, while a test-set envelope would favour the five-knob strategy."""
    for cls in (_NoisyConfidence, _NoisyFive):
        monkeypatch.setitem(strategies._RULES, cls.name, cls)
    cfg = CalibrationConfig.model_construct(**(CalibrationConfig().model_dump() | {
        "strategies": ["noisy_one", "noisy_five"], "targets": [2.0], "curve_step": 0.1}))
    report = ReportConfig(comparisons=[], bootstrap_samples=100)
    calibrated, envelope = [], []
    for replicate in range(16):
        thresholds, _ = calibrate(random_signals(n=300, seed=100 + replicate), cfg, 1e-8)
        test = random_signals(n=300, seed=500 + replicate)
        _, _, curves, arrays = evaluate(test, thresholds)
        run = RunPoints.from_arrays(arrays, 1)
        areas = compare_task("sst2", "accuracy", [run], report.model_copy(update={"max_area_speedup": 2.5})).area
        calibrated.append(areas["strategies"]["noisy_five"].value - areas["strategies"]["noisy_one"].value)
        # the old way: every knob setting swept on test, best point at each speed-up
        swept = {}
        for name in ("noisy_one", "noisy_five"):
            rows = [(s, m) for s, m in _test_sweep(name, cfg, test)]
            swept[name] = _envelope_area(*map(np.array, zip(*rows, strict=True)), 2.5)
        envelope.append(swept["noisy_five"] - swept["noisy_one"])
    calibrated, envelope = np.array(calibrated), np.array(envelope)
    se = calibrated.std(ddof=1) / np.sqrt(len(calibrated))
    assert abs(calibrated.mean()) < 2.5 * se + 1e-3, (calibrated.mean(), se)
    assert envelope.mean() > 4 * envelope.std(ddof=1) / np.sqrt(len(envelope))  # the bias this protocol removes


def _test_sweep(name, cfg, test):
    from de3pipe.method.calibration import evaluate_strategy
    from de3pipe.data.tasks import get_task

    rule = strategies.lookup(name).rule
    for knobs in rule.knob_grid(test, rule.grid(cfg), cfg.n_thresholds, 1e-8):
        point = evaluate_strategy(strategies.make_strategy(name, **knobs), test, get_task("sst2"), name)
        yield point["speedup"], point["accuracy"]


def _envelope_area(speedup, metric, upper):
    grid = np.linspace(1.0, upper, 201)
    best = np.array([metric[speedup >= s - 1e-9].max() if (speedup >= s - 1e-9).any() else np.nan for s in grid])
    return float(np.nanmean((best[1:] + best[:-1]) / 2))


def test_the_guaranteed_view_bootstraps_speedup_and_risk_and_compares_at_equal_guarantee():
    from de3pipe.config import GuaranteeConfig

    cfg = CalibrationConfig(n_thresholds=40, strategies=["de3", "entropy", "static"],
                            guarantee=GuaranteeConfig(epsilon=[0.05, 0.1]))
    thresholds, _ = calibrate(random_signals(n=500, seed=11), cfg, 1e-8)
    results, _, _, arrays = evaluate(random_signals(n=400, seed=12), thresholds)
    run = RunPoints.from_arrays(arrays, 1)
    report = ReportConfig(bootstrap_samples=200, compare_against=["entropy", "static"])
    comparison = compare_task("sst2", "accuracy", [run], report)
    view = comparison.guaranteed
    assert set(view) == {"de3", "entropy", "static"} and set(view["de3"]) == {"accuracy_drop-0.05", "accuracy_drop-0.1"}
    for name, points in view.items():
        for key, entry in points.items():
            on_test = results["guaranteed"][name][key]
            assert entry["speedup"].value == pytest.approx(on_test["speedup"])
            assert entry["risk"].value == pytest.approx(on_test["risk"])
            assert entry["risk"].low <= entry["risk"].value <= entry["risk"].high
    difference = comparison.guarantee_differences["entropy"]["accuracy_drop-0.1"]
    assert difference.value == pytest.approx(view["de3"]["accuracy_drop-0.1"]["speedup"].value
                                             - view["entropy"]["accuracy_drop-0.1"]["speedup"].value)
    assert difference.p is not None and difference.low <= difference.value <= difference.high
    comparison.gate["learned"] = True
    assert correct_differences([comparison], report, "guarantee_differences") == 4
