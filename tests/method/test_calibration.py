import numpy as np
import pytest

from de3pipe.method.calibration import calibrate, choose_operating_point, curve_targets
from de3pipe.config import CalibrationConfig
from de3pipe.errors import De3Error
from de3pipe.method.evaluation import curve_points, evaluate, write_submissions
from de3pipe.method.metrics import layer_speedup
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import make_strategy, replay, replay_named, threshold_grid


def random_signals(n=200, m=6, seed=0, labeled=True) -> Signals:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # deeper layers are more often right and more confident
    correct = rng.random((n, m)) < np.linspace(0.6, 0.95, m)
    pred = np.where(correct, labels[:, None], 1 - labels[:, None])
    conf = np.clip(rng.random((n, m)) * 0.5 + np.linspace(0.5, 0.9, m) * correct, 0.5, 0.999)
    log_probs = np.stack([np.log(np.where(pred == k, conf, 1 - conf)) for k in range(2)], -1).astype(np.float32)
    entropy = -(np.exp(log_probs) * log_probs).sum(-1) / np.log(2)
    dr = np.clip(rng.random((n, m - 1)) * 0.6 + 0.4 * ~correct[:, :-1], 0, 1).astype(np.float32)
    return Signals(
        log_probs=log_probs,
        pred=pred,
        entropy=entropy.astype(np.float32),
        r1=dr,
        r2=1 - dr,
        dr=dr,
        labels=labels if labeled else np.full(n, -1),
        idx=np.arange(n),
        meta={"task": "sst2", "split": "validation" if labeled else "submit"},
    )


def test_threshold_grid_sits_between_values():
    grid = threshold_grid(np.array([0.1, 0.2, 0.2, 0.4]), 10)
    assert grid[0] < 0.1 and grid[-1] > 0.4
    assert not set(grid) & {0.1, 0.2, 0.4}


def test_calibration_reaches_every_target_or_says_why(caplog):
    cfg = CalibrationConfig(targets=[1.5, 2.0, 3.0, 5.0], n_thresholds=50)
    thresholds, curves = calibrate(random_signals(), cfg, 1e-8)
    assert set(thresholds["strategies"]) == {"de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle"}
    for name in ("de3", "entropy", "maxprob", "distance"):
        for target in ("1.5", "2", "3"):
            entry = thresholds["strategies"][name][target]
            assert entry["status"] == "ok" and entry["validation_speedup"] >= float(target)
    patience = thresholds["strategies"]["patience"]["5"]
    assert patience["status"] == "unreachable"
    fastest = max(row for row in curves[curves["strategy"] == "patience"]["speedup"])
    assert patience["message"].startswith("patience cannot reach 5x on the validation split")
    assert f"reachable range is 1.00x-{fastest:.2f}x" in patience["message"]
    assert patience["validation_speedup"] == pytest.approx(fastest)
    assert patience["knobs"] == {"t": 1}  # the nearest (fastest) point
    assert "patience cannot reach 5x" in caplog.text
    assert set(curves.columns) >= {"strategy", "tau", "lam", "t", "k", "speedup", "accuracy"}
    assert thresholds["strategies"]["static"]["2"]["knobs"] == {"k": 3}


def test_nearest_selection_matches_speedups():
    import pandas as pd

    curve = pd.DataFrame({"tau": [0.1, 0.2, 0.3], "speedup": [1.2, 2.1, 2.9], "accuracy": [0.9, 0.8, 0.85]})
    assert choose_operating_point(curve, 2.0, "accuracy", "entropy", "nearest")["knobs"] == {"tau": 0.2}
    assert choose_operating_point(curve, 2.0, "accuracy", "entropy", "best")["knobs"] == {"tau": 0.3}


def test_targets_beyond_the_layer_count_are_rejected():
    with pytest.raises(De3Error, match=r"exceed the model's 6 layers"):
        calibrate(random_signals(), CalibrationConfig(targets=[2.0, 7.0]), 1e-8)


def test_evaluation_and_submission_files(tmp_path):
    thresholds, _ = calibrate(random_signals(), CalibrationConfig(n_thresholds=30), 1e-8)
    results, exits, _, _ = evaluate(random_signals(seed=1), thresholds)
    assert set(results["full_model"]) == {"accuracy"}
    entry = results["strategies"]["de3"]["2"]
    assert sum(entry["exit_histogram"]) == 200 and entry["speedup"] > 1
    assert len(exits) == 200 * (7 * 3 + 1)
    written = write_submissions(random_signals(seed=2, labeled=False), thresholds, "SST-2.tsv", tmp_path)
    assert len(written) == 7 * 3  # no oracle file: it needs labels
    lines = (tmp_path / "de3_2" / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 201
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_mismatched_signals_and_thresholds():
    thresholds, _ = calibrate(random_signals(), CalibrationConfig(n_thresholds=10), 1e-8)
    other = random_signals()
    other.meta["task"] = "rte"
    with pytest.raises(De3Error, match="signals are for task 'rte' but the thresholds for 'sst2'"):
        evaluate(other, thresholds)


def with_controls(signals: Signals, seed=5) -> Signals:
    """``signals`` plus control-head and no-DAR arrays, distinct from the stored ones."""
    rng = np.random.default_rng(seed)
    n, m = signals.num_samples, signals.num_layers
    probs = rng.dirichlet([1.0, 1.0], size=(n, m - 1))
    signals.control_log_probs = np.log(probs).astype(np.float32)
    nodar = rng.random((n, m - 1)).astype(np.float32)
    signals.nodar_r1, signals.nodar_r2, signals.nodar_dr = nodar, 1 - nodar, nodar
    return signals


def test_study_variants_read_their_own_signals():
    signals = with_controls(random_signals())
    control = signals.view("control")
    inner = slice(0, signals.num_layers - 1)
    assert np.array_equal(control.pred[:, inner], signals.control_log_probs.argmax(-1))
    assert np.array_equal(control.pred[:, -1], signals.pred[:, -1])  # the last layer keeps its classifier
    probs = np.exp(signals.control_log_probs)
    assert control.entropy[:, inner] == pytest.approx(-(probs * np.log(probs)).sum(-1) / np.log(2), abs=1e-5)
    assert signals.view(None) is signals
    assert np.array_equal(signals.view("nodar").dr, signals.nodar_dr)
    assert np.array_equal(signals.view("nodar").pred, signals.pred)

    cfg = CalibrationConfig(strategies=["de3", "de3_nodar", "control_entropy", "control_maxprob"], n_thresholds=30,
                            grids={"de3": {"lam": [0.5, 2.0]}}, per_lambda=True)
    thresholds, curves = calibrate(signals, cfg, 1e-8)
    assert set(curves["strategy"]) == {"de3", "de3_nodar", "control_entropy", "control_maxprob"}
    assert set(thresholds["per_lambda"]) == {"de3", "de3_nodar"}
    for lam in ("0.5", "2"):  # a calibrated curve per lambda: the dense target grid, lambda fixed
        curve = thresholds["per_lambda"]["de3"][lam]
        assert len(curve) > 3 and all(point["knobs"]["lam"] == float(lam) for point in curve)
        assert [point["target"] for point in curve] == sorted(point["target"] for point in curve)
    # The variant's frozen point, replayed on its view, reproduces its validation curve point.
    test = with_controls(random_signals(seed=1))
    results, _, _, _ = evaluate(test, thresholds)

    point = results["strategies"]["control_entropy"]["2"]
    exit_layer, _ = replay(make_strategy("entropy", **point["knobs"]), test.view("control"))
    assert point["speedup"] == pytest.approx(layer_speedup(exit_layer, 6))
    assert set(results["per_lambda"]["de3"]) == {"0.5", "2"}
    assert set(thresholds["curves"]) == {"de3", "de3_nodar", "control_entropy", "control_maxprob"}
    lam_curve = results["per_lambda"]["de3"]["2"]
    assert len(lam_curve) == len(thresholds["per_lambda"]["de3"]["2"]) and all(p["speedup"] >= 1 for p in lam_curve)
    assert max(p["speedup"] for p in lam_curve) > 1.5


def test_study_variants_without_controls_say_how_to_get_them():
    cfg = CalibrationConfig(strategies=["de3", "control_entropy"], n_thresholds=10)
    with pytest.raises(De3Error, match=r"set prototypes.controls: true .* re-run `de3pipe prototypes`"):
        calibrate(random_signals(), cfg, 1e-8)


def test_signals_with_controls_survive_a_save(tmp_path):
    signals = with_controls(random_signals())
    signals.save(tmp_path / "s.npz")
    loaded = Signals.load(tmp_path / "s.npz")
    assert np.array_equal(loaded.control_log_probs, signals.control_log_probs)
    assert np.array_equal(loaded.nodar_dr, signals.nodar_dr)
    random_signals().save(tmp_path / "plain.npz")
    assert not Signals.load(tmp_path / "plain.npz").has_controls


def test_the_dense_target_grid():
    assert curve_targets(1.26, 0.05) == [1.05, 1.1, 1.15, 1.2, 1.25]
    assert curve_targets(1.0, 0.05) == []


def test_calibrated_curves_are_chosen_on_validation_and_applied_once_to_test():
    cfg = CalibrationConfig(n_thresholds=40, grids={"de3": {"lam": [0.0, 1.0, 4.0]}}, curve_step=0.1)
    validation, test = random_signals(seed=3), random_signals(seed=4)
    thresholds, curves = calibrate(validation, cfg, 1e-8)
    assert "oracle" not in thresholds["curves"]  # analysis only
    for name, points in thresholds["curves"].items():
        fastest = curves.loc[curves["strategy"] == name, "speedup"].max()
        targets = [p["target"] for p in points]
        assert targets == sorted(targets) and targets[0] == pytest.approx(1.1) and targets[-1] <= fastest
        for point in points:  # the same rule as the named targets, at each grid target
            chosen = choose_operating_point(curves[curves["strategy"] == name], point["target"], "accuracy", name, "nearest")
            assert chosen["knobs"] == point["knobs"] and point["validation_speedup"] >= point["target"]
        assert len({tuple(sorted(p["knobs"].items())) for p in points}) == len(points)  # repeats kept once
    # lambda 0 (entropy alone) is one of de3's choices
    assert {p["knobs"]["lam"] for p in thresholds["curves"]["de3"]} <= {0.0, 1.0, 4.0}
    _, _, test_curves, arrays = evaluate(test, thresholds)
    de3 = test_curves[test_curves["strategy"] == "de3"]
    assert len(de3) == len(thresholds["curves"]["de3"])  # one test point per frozen point: no envelope
    for point, (_, row) in zip(curve_points(thresholds), test_curves.iterrows(), strict=False):
        exit_layer, prediction = replay_named(point.name, point.strategy, test)
        assert row["strategy"] == point.name and row["speedup"] == pytest.approx(layer_speedup(exit_layer, 6))
        assert row["accuracy"] == pytest.approx((prediction == test.labels).mean())
    curve_rows = arrays["kind"] == "curve"
    assert curve_rows.sum() == len(test_curves) and arrays["exit_layer"].shape == (len(arrays["kind"]), 200)


def test_thresholds_without_eps_or_curves_are_refused():
    thresholds, _ = calibrate(random_signals(), CalibrationConfig(n_thresholds=10), 1e-8)
    with pytest.raises(De3Error, match="no calibrated curves"):
        evaluate(random_signals(seed=1), {k: v for k, v in thresholds.items() if k != "curves"})
    with pytest.raises(De3Error, match="records no valid eps"):
        evaluate(random_signals(seed=1), {k: v for k, v in thresholds.items() if k != "eps"})
    broken = thresholds | {"strategies": {"de3": {"2": {"knobs": "tau"}}}}
    with pytest.raises(De3Error, match="thresholds file is malformed"):
        evaluate(random_signals(seed=1), broken)
