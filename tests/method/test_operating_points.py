"""Frozen operating points (de3pipe/method/operating_points.py): target keys, the eps that travels
with the points, and the points read back from a real calibration's thresholds."""

import math

import pytest

from de3pipe.config import CalibrationConfig
from de3pipe.errors import De3Error
from de3pipe.method.calibration import calibrate
from de3pipe.method.operating_points import (
    ANY, Target, curve_points, frozen_eps, operating_points, read_thresholds, sensitivity_points, servable_point,
    speedup_key, write_thresholds,
)
from de3pipe.method.strategies import lookup
from tests.method.test_calibration import random_signals, with_controls

EPS = 1e-8


@pytest.fixture(scope="module")
def thresholds() -> dict:
    thresholds, _ = calibrate(random_signals(), CalibrationConfig(targets=[1.5, 2.0], n_thresholds=20), EPS)
    return thresholds


@pytest.fixture(scope="module")
def study_thresholds() -> dict:
    """With a study variant, and de3's lambda sensitivity points."""
    cfg = CalibrationConfig(strategies=["de3", "entropy", "control_entropy", "oracle"], targets=[2.0], n_thresholds=20,
                            grids={"de3": {"lam": [0.5, 2.0]}}, per_lambda=True)
    thresholds, _ = calibrate(with_controls(random_signals()), cfg, EPS)
    return thresholds


# ---- targets ----

@pytest.mark.parametrize(("given", "key", "value"), [
    ("2", "2", 2.0), (2, "2", 2.0), (2.0, "2", 2.0), ("2.0", "2", 2.0), ("1.5", "1.5", 1.5), (1.25, "1.25", 1.25),
])
def test_target_round_trips_through_its_key(given, key, value):
    target = Target.parse(given)
    assert target.key == key and str(target) == key
    assert target.value == value and target.speedup == value
    assert Target.parse(target.key) == target
    assert Target.parse(target) is target


def test_any_is_a_target_without_speedup():
    target = Target.parse("any")
    assert target.speedup is None and target.key == ANY == "any" and str(target) == "any"
    assert math.isnan(target.value)
    assert Target.parse(target.key) == target


@pytest.mark.parametrize("bad", ["fast", "", "2x", None, [2]])
def test_a_target_that_is_no_number(bad):
    with pytest.raises(De3Error) as exc:
        Target.parse(bad)
    message = str(exc.value)
    assert "\n" not in message and repr(bad) in message and "'any'" in message


@pytest.mark.parametrize("bad", ["0", -1, "-2.5", "inf", "nan", float("inf")])
def test_a_target_that_is_not_a_positive_speedup(bad):
    with pytest.raises(De3Error, match="is not a positive speed-up") as exc:
        Target.parse(bad)
    assert "\n" not in str(exc.value)


def test_speedup_key():
    assert speedup_key(2.0) == "2"
    assert speedup_key(3) == "3"
    assert speedup_key(1.5) == "1.5"
    assert speedup_key(1.05) == "1.05"
    assert speedup_key(1.1 + 1e-12) == "1.1"  # grid arithmetic noise does not make a new key


# ---- eps ----

def test_frozen_eps_reads_the_calibrated_eps(thresholds):
    assert frozen_eps(thresholds) == EPS
    assert frozen_eps({"eps": 1}) == 1.0 and isinstance(frozen_eps({"eps": 1}), float)


@pytest.mark.parametrize("eps", [None, 0, -1e-8, "1e-8", float("nan"), [1e-8]])
def test_frozen_eps_refuses_a_missing_or_invalid_eps(eps):
    thresholds = {} if eps is None else {"eps": eps}
    with pytest.raises(De3Error) as exc:
        frozen_eps(thresholds)
    assert str(exc.value) == "the thresholds file records no valid eps; re-run `de3pipe calibrate`"


# ---- points of a calibration ----

def test_operating_points_are_every_named_target_and_the_oracle(thresholds):
    points = operating_points(thresholds)
    keys = {(p.name, p.target.key) for p in points}
    named = [n for n in thresholds["strategies"] if not lookup(n).analysis_only]
    assert keys == {(n, t) for n in named for t in ("1.5", "2")} | {("oracle", "any")}
    assert len(points) == len(keys)
    for point in points:
        entry = thresholds["strategies"][point.name][point.target.key]
        assert point.entry is entry
        assert point.strategy.name == lookup(point.name).rule.name
        assert point.strategy.knobs() == entry["knobs"]
    de3 = next(p for p in points if p.name == "de3")
    assert de3.strategy.eps == EPS  # the eps travels with the points


def test_static_points_exit_at_the_layer_the_target_needs(thresholds):
    points = {(p.name, p.target.key): p for p in operating_points(thresholds)}
    assert points[("static", "2")].strategy.knobs() == {"k": 3}  # 6 layers / 3 = 2x
    assert points[("static", "1.5")].strategy.knobs() == {"k": 4}  # 6 / 4 = 1.5x


def test_operating_points_need_strategies(thresholds):
    with pytest.raises(De3Error, match="has no 'strategies'"):
        operating_points({k: v for k, v in thresholds.items() if k != "strategies"})
    with pytest.raises(De3Error, match="records no valid eps"):
        operating_points({k: v for k, v in thresholds.items() if k != "eps"})


def test_curve_points_follow_the_dense_grid(thresholds):
    points = curve_points(thresholds)
    assert len(points) == sum(len(v) for v in thresholds["curves"].values())
    assert {p.name for p in points} == set(thresholds["curves"])
    assert "oracle" not in thresholds["curves"]
    for name, frozen in thresholds["curves"].items():
        mine = [p for p in points if p.name == name]
        assert [p.target.key for p in mine] == [speedup_key(f["target"]) for f in frozen]
        assert [p.strategy.knobs() for p in mine] == [f["knobs"] for f in frozen]
        assert all(p.target.speedup > 1 for p in mine)


def test_curve_points_refuse_missing_or_malformed_curves(thresholds):
    with pytest.raises(De3Error, match="no calibrated curves"):
        curve_points({k: v for k, v in thresholds.items() if k != "curves"})
    broken = thresholds | {"curves": {"de3": [{"knobs": {"tau": 0.1, "lam": 0.0}}]}}  # no target
    with pytest.raises(De3Error, match="curves are malformed"):
        curve_points(broken)


def test_sensitivity_points_fix_the_secondary_knob(study_thresholds):
    points = sensitivity_points(study_thresholds)
    assert sorted({value for value, _ in points}) == [0.5, 2.0]
    for value, point in points:
        assert point.name == "de3" and point.strategy.lam == value
    for lam in (0.5, 2.0):  # each value's whole calibrated curve, one point per target of the dense grid
        targets = [point.target.value for value, point in points if value == lam]
        assert len(targets) > 1 and len(set(targets)) == len(targets)
    assert sensitivity_points({"eps": EPS}) == []


# ---- the point that serves new texts ----

def test_servable_point(thresholds, tmp_path):
    for target in ("2", 2, 2.0, Target(2.0)):
        point = servable_point(thresholds, tmp_path / "t.json", "de3", target)
        assert point.name == "de3" and point.target == Target(2.0)
        assert point.strategy.knobs() == thresholds["strategies"]["de3"]["2"]["knobs"]
    assert servable_point(thresholds, tmp_path, "entropy", "1.5").target.key == "1.5"


@pytest.mark.parametrize(("name", "target"), [("de3", "3"), ("nope", "2")])
def test_servable_point_lists_what_is_available(thresholds, tmp_path, name, target):
    source = tmp_path / "thresholds.json"
    with pytest.raises(De3Error) as exc:
        servable_point(thresholds, source, name, target)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"no calibrated point {name}@{target}x in {source}; available: ")
    available = message.split("available: ")[1].split(", ")
    assert "de3@2" in available and "entropy@1.5" in available and "static@2" in available
    assert not any(a.startswith("oracle@") for a in available)  # analysis-only: not servable


def test_study_variants_and_the_oracle_are_not_served(study_thresholds, tmp_path):
    with pytest.raises(De3Error, match="control_entropy is a study analysis replayed on stored signals"):
        servable_point(study_thresholds, tmp_path, "control_entropy", "2")
    with pytest.raises(De3Error, match="the oracle strategy needs gold labels"):
        servable_point(study_thresholds, tmp_path, "oracle", "any")
    with pytest.raises(De3Error) as exc:
        servable_point(study_thresholds, tmp_path, "control_entropy", "1.5")
    assert exc.value.args[0].endswith("available: de3@2, entropy@2")


def test_thresholds_file_round_trip(thresholds, tmp_path):
    path = tmp_path / "calibration" / "thresholds.json"
    write_thresholds(path, thresholds)
    loaded = read_thresholds(path)
    assert loaded["eps"] == EPS and loaded["task"] == "sst2"
    assert [(p.name, p.target, p.strategy) for p in operating_points(loaded)] == [
        (p.name, p.target, p.strategy) for p in operating_points(thresholds)]
    path.write_text("[]")
    with pytest.raises(De3Error, match=r"^thresholds file .* holds a JSON list"):
        read_thresholds(path)
