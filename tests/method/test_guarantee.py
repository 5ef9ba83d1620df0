import math

import numpy as np
import pytest
from scipy import stats

from de3pipe.config import CalibrationConfig, GuaranteeConfig, load_config
from de3pipe.errors import De3Error
from de3pipe.method.calibration import calibrate
from de3pipe.method.guarantee import (
    certify,
    fixed_sequence,
    guaranteed_points,
    losses,
    naive,
    p_value,
    replay_settings,
    smallest_certifiable,
    upper_bound,
)
from de3pipe.method.operating_points import Guaranteed, certified_points, point_key, servable_point
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import lookup, strategy_names
from tests.method.test_calibration import random_signals


def binomial_tail_by_hand(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("k", "n", "epsilon"), [(0, 50, 0.05), (1, 20, 0.1), (3, 200, 0.02), (12, 300, 0.05)])
def test_binomial_p_value_is_the_exact_lower_tail(k, n, epsilon):
    assert p_value(k, n, epsilon, "ltt-binomial") == pytest.approx(binomial_tail_by_hand(k, n, epsilon), rel=1e-9)


def test_hoeffding_bentkus_is_valid_and_never_below_the_exact_tail():
    for k, n, epsilon in [(0, 100, 0.05), (2, 100, 0.05), (10, 500, 0.03), (30, 500, 0.05)]:
        exact = p_value(k, n, epsilon, "ltt-binomial")
        hb = p_value(k, n, epsilon, "ltt-hb")
        assert exact <= hb <= 1.0
    assert p_value(60, 500, 0.05, "ltt-hb") == pytest.approx(1.0)  # observed risk above epsilon: no evidence
    # by hand: no loss at all gives Hoeffding's exp(-n kl(0, eps)) = (1 - eps)^n, below Bentkus' e (1 - eps)^n
    assert p_value(0, 200, 0.02, "ltt-hb") == pytest.approx(0.98**200, rel=1e-9)
    observed, eps, n = 4 / 200, 0.05, 200
    kl = observed * math.log(observed / eps) + (1 - observed) * math.log((1 - observed) / (1 - eps))
    by_hand = min(math.exp(-n * kl), math.e * binomial_tail_by_hand(4, n, eps))
    assert p_value(4, n, eps, "ltt-hb") == pytest.approx(by_hand, rel=1e-9)


def test_the_upper_bound_is_the_clopper_pearson_limit():
    for k, n, level in [(0, 500, 0.1), (4, 500, 0.1), (10, 200, 0.05)]:
        assert upper_bound(k, n, level, "ltt-binomial") == pytest.approx(stats.beta.ppf(1 - level, k + 1, n - k), abs=1e-9)
    assert smallest_certifiable(500, 0.1, "ltt-binomial") == pytest.approx(1 - 0.1 ** (1 / 500), abs=1e-9)


def test_losses_of_both_risks():
    labels = np.array([0, 1, 1, 0])
    full = np.array([0, 1, 0, 1])  # right, right, wrong, wrong
    exited = np.array([1, 1, 1, 1])
    assert losses("disagreement", exited, full, None).tolist() == [True, False, True, False]
    assert losses("accuracy_drop", exited, full, labels).tolist() == [True, False, False, False]
    with pytest.raises(De3Error, match="accuracy_drop risk needs labels"):
        losses("accuracy_drop", exited, full, np.full(4, -1))


def test_fixed_sequence_stops_at_the_first_failure():
    pvalues = np.array([0.01, 0.02, 0.5, 0.01])
    assert fixed_sequence(np.arange(4), pvalues, 0.1).tolist() == [0, 1]
    assert fixed_sequence(np.arange(4), np.full(4, 0.2), 0.1).tolist() == []


def _simulated_risk_curve(rng, n: int, risks: np.ndarray) -> np.ndarray:
    """Loss counts of nested settings on n examples: example i is lost at setting j when u_i < risks[j]."""
    u = rng.random(n)
    return (u[None, :] < risks[:, None]).sum(1)


def test_guarantee_holds_within_monte_carlo_error_and_the_naive_rule_does_not():
    rng = np.random.default_rng(0)
    n, epsilon, delta, trials = 400, 0.05, 0.1, 2000
    risks = np.linspace(0.0, 0.12, 61)  # the true risk of each setting, growing with its speed-up
    speedup = 1 + np.arange(len(risks)) * 0.05
    sequence = np.zeros(len(risks))
    violations = naive_violations = 0
    for _ in range(trials):
        hits = _simulated_risk_curve(rng, n, risks)
        chosen = certify(sequence, speedup, hits, n, epsilon, delta, "ltt-binomial")
        violations += risks[chosen] > epsilon
        naive_violations += risks[naive(speedup, hits, n, epsilon)] > epsilon
    monte_carlo = 3 * math.sqrt(delta * (1 - delta) / trials)
    assert violations / trials <= delta + monte_carlo
    assert naive_violations / trials > delta + monte_carlo  # about half the splits


def test_two_knob_strategy_tests_each_sequence_at_delta_over_their_number():
    n, epsilon, delta = 200, 0.05, 0.1
    # sequence 0 fails at once (its conservative end already loses), sequence 1 is safe up to its third setting
    sequence = np.array([0, 0, 1, 1, 1, 1])
    speedup = np.array([1.0, 2.5, 1.0, 1.5, 2.0, 3.0])
    hits = np.array([30, 40, 0, 1, 3, 20])
    chosen = certify(sequence, speedup, hits, n, epsilon, delta, "ltt-binomial")
    assert chosen == 4  # the fastest certified setting, from sequence 1
    # p(3 of 200 at 5%) is about 0.010: certified at delta / 2 = 0.05; at a level just under it, not
    p_three = float(p_value(3, n, epsilon, "ltt-binomial"))
    assert certify(sequence, speedup, hits, n, epsilon, 2 * p_three * 1.01, "ltt-binomial") == 4
    assert certify(sequence, speedup, hits, n, epsilon, 2 * p_three * 0.99, "ltt-binomial") == 3


@pytest.mark.parametrize("name", [n for n in strategy_names(variants=False) if not lookup(n).analysis_only])
def test_every_strategy_exits_no_later_as_its_sequence_speeds_up(name):
    """The guarantee's order within a sequence is the threshold's own, fixed before the data,
    only because each rule's exits move earlier monotonically along it."""
    signals = random_signals(n=120, seed=3)
    settings = replay_settings(name, signals, lookup(name).rule.grid(CalibrationConfig()), 1e-8)
    speedup = settings.exit_layer.sum(1)
    for group in np.unique(settings.sequence):
        members = np.flatnonzero(settings.sequence == group)
        ordered = settings.exit_layer[members[np.argsort(-speedup[members], kind="stable")]]
        assert (np.diff(ordered, axis=0) <= 0).all()
        assert ordered[0].tolist() == [signals.num_layers] * signals.num_samples  # the full model comes first


def test_guaranteed_points_keep_their_bound():
    signals = random_signals(n=600, seed=1)
    cfg = CalibrationConfig(n_thresholds=40, guarantee=GuaranteeConfig(epsilon=[0.02, 0.05, 0.2]))
    thresholds, _ = calibrate(signals, cfg, 1e-8)
    guaranteed = thresholds["guaranteed"]
    assert guaranteed["n"] == 600 and guaranteed["risk"] == "accuracy_drop" and guaranteed["splits"] == ["validation"]
    assert "oracle" not in guaranteed["strategies"]
    for name, points in guaranteed["strategies"].items():
        speedups = [points[Guaranteed("accuracy_drop", e).key]["calibration_speedup"] for e in (0.02, 0.05, 0.2)]
        assert speedups == sorted(speedups)  # a looser guarantee is never slower
        for point in points.values():
            assert point["calibration_risk"] <= point["calibration_upper_bound"] <= point["epsilon"]
    assert guaranteed["strategies"]["de3"]["accuracy_drop-0.02"]["sequences"] == 6
    faster = [p for points in guaranteed["strategies"].values() for p in points.values()
              if p["status"] == "ok" and p["calibration_speedup"] > 1.2]
    assert len(faster) >= 5  # certified points that actually exit early, not only full-model fallbacks
    points = certified_points(thresholds)
    assert {(p.name, p.target.key) for p in points} >= {("de3", "accuracy_drop-0.05"), ("entropy", "accuracy_drop-0.2")}
    point = servable_point(thresholds, "t.json", "entropy", "accuracy_drop-0.05")
    assert point.strategy.knobs() == guaranteed["strategies"]["entropy"]["accuracy_drop-0.05"]["knobs"]
    with pytest.raises(De3Error, match=r"no calibrated point entropy@accuracy_drop-0.03 in t.json; available: .*de3@accuracy_drop-0.02"):
        servable_point(thresholds, "t.json", "entropy", "accuracy_drop-0.03")


def test_study_variants_get_guaranteed_points_on_their_own_view():
    """The study's variants (the control heads, de3 without DAR) are certified on the signals view they
    exit on, and evaluation replays them on that view: the calibration risk it reports is the risk
    of exactly that setting on the calibration examples."""
    from de3pipe.method.evaluation import evaluate
    from de3pipe.method.strategies import make_strategy, replay_named
    from tests.method.test_calibration import with_controls

    names = ["de3", "entropy", "de3_nodar", "control_entropy", "control_maxprob"]
    signals = with_controls(random_signals(n=600, seed=3))
    cfg = CalibrationConfig(strategies=names, n_thresholds=30, grids={"de3": {"lam": [0.0, 1.0]}},
                            guarantee=GuaranteeConfig(risk="disagreement", epsilon=[0.05, 0.2]))
    thresholds, _ = calibrate(signals, cfg, 1e-8)
    certified = thresholds["guaranteed"]["strategies"]
    assert set(certified) == set(names)
    full = signals.pred[:, -1]
    for name in ("de3_nodar", "control_entropy", "control_maxprob"):
        for key, point in certified[name].items():
            _, prediction = replay_named(name, make_strategy(name, 1e-8, **point["knobs"]), signals)
            assert np.mean(prediction != full) == pytest.approx(point["calibration_risk"])
            assert point["calibration_risk"] <= point["calibration_upper_bound"] <= point["epsilon"]
    # the control heads exit on other predictions than the internal classifiers: their points differ
    assert certified["control_entropy"]["disagreement-0.2"]["knobs"] != certified["entropy"]["disagreement-0.2"]["knobs"]
    test = with_controls(random_signals(n=400, seed=4))
    results, _, _, _ = evaluate(test, thresholds)
    for name in ("de3_nodar", "control_entropy"):
        point = results["guaranteed"][name]["disagreement-0.2"]
        _, prediction = replay_named(name, make_strategy(name, 1e-8, **point["knobs"]), test)
        assert point["risk"] == pytest.approx(np.mean(prediction != test.pred[:, -1]))


def test_point_keys_parse_both_kinds():
    assert point_key("2").speedup == 2.0
    assert point_key("any").speedup is None
    assert point_key("disagreement-0.01") == Guaranteed("disagreement", 0.01)
    with pytest.raises(De3Error):
        point_key("fast")


def test_unlabeled_text_joins_the_disagreement_calibration():
    validation, submit = random_signals(n=300, seed=2), random_signals(n=900, seed=4, labeled=False)
    cfg = CalibrationConfig(n_thresholds=40, strategies=["entropy"],
                            guarantee=GuaranteeConfig(risk="disagreement", epsilon=[0.05], unlabeled=True))
    with_text, _ = calibrate(validation, cfg, 1e-8, [submit])
    alone, _ = calibrate(validation, cfg.model_copy(update={"guarantee": cfg.guarantee.model_copy(
        update={"unlabeled": False})}), 1e-8)
    assert with_text["guaranteed"]["n"] == 1200 and with_text["guaranteed"]["splits"] == ["validation", "submit"]
    bound_with = with_text["guaranteed"]["strategies"]["entropy"]["disagreement-0.05"]
    bound_alone = alone["guaranteed"]["strategies"]["entropy"]["disagreement-0.05"]
    assert bound_with["n"] == 1200 and bound_alone["n"] == 300
    margin = {k: b["calibration_upper_bound"] - b["calibration_risk"] for k, b in (("with", bound_with), ("alone", bound_alone))}
    assert margin["with"] < margin["alone"] / 1.5  # four times the examples: a much tighter bound
    with pytest.raises(De3Error, match="no unlabeled split"):
        calibrate(validation, cfg, 1e-8, [])


@pytest.mark.parametrize(("override", "message"), [
    ("calibration.guarantee.epsilon=[0.0]", r"every epsilon must lie in \(0, 1\)"),
    ("calibration.guarantee.epsilon=[1.5]", r"every epsilon must lie in \(0, 1\)"),
    ("calibration.guarantee.delta=1", r"delta must lie in \(0, 1\)"),
    ("calibration.guarantee.risk=accuracy", r"calibration.guarantee.risk: .*'accuracy_drop' or 'disagreement'"),
    ("calibration.guarantee.unlabeled=true", "unlabeled text cannot calibrate the accuracy_drop risk"),
])
def test_bad_guarantee_settings_get_one_line(override, message):
    with pytest.raises(De3Error, match=message) as error:
        load_config(None, [override])
    assert "\n" not in str(error.value)


def test_too_few_examples_name_the_smallest_certifiable_epsilon():
    signals = random_signals(n=40, seed=5)
    smallest = 1 - 0.1 ** (1 / 40)  # no loss at all, one sequence at delta
    with pytest.raises(De3Error, match=rf"epsilon 0.01: 40 calibration examples certify no epsilon below {smallest:.4f}"):
        guaranteed_points(signals, ["entropy"], {"entropy": {}}, 1e-8, "accuracy_drop", [0.01], 0.1, "ltt-binomial")


def test_a_strategy_whose_sequences_split_delta_too_thin_keeps_the_full_model(caplog):
    signals = random_signals(n=40, seed=5)
    # 0.06 is certifiable at delta 0.1 (one sequence) but not at delta / 6 (de3's six lambda values)
    points = guaranteed_points(signals, ["de3", "entropy"], {"de3": {"lam": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]},
                                                              "entropy": {}}, 1e-8, "accuracy_drop", [0.06], 0.1,
                               "ltt-binomial")
    de3 = points["de3"]["accuracy_drop-0.06"]
    assert de3["calibration_speedup"] == 1.0 and de3["calibration_upper_bound"] == 0.0
    assert de3["status"].startswith("full model: 40 examples certify no epsilon below")
    assert points["entropy"]["accuracy_drop-0.06"]["status"] == "ok"
    assert "de3 at epsilon 0.06: full model" in caplog.text


def test_pooled_signals_keep_every_example():
    a, b = random_signals(n=10, seed=6), random_signals(n=7, seed=7, labeled=False)
    pooled = Signals.pool([a, b])
    assert pooled.num_samples == 17 and pooled.meta["split"] == "validation+submit"
    assert (pooled.labels[10:] == -1).all() and np.array_equal(pooled.subset(np.arange(10)).pred, a.pred)


def test_neighbouring_float32_signals_are_two_settings():
    """A threshold between two adjacent float32 values must separate them (compared in float64)."""
    signals = random_signals(n=50, seed=8)
    low = np.float32(0.3)
    high = np.nextafter(low, np.float32(1))
    signals.entropy[:, 0] = 0.9
    signals.entropy[0, 0], signals.entropy[1, 0] = low, high
    settings = replay_settings("entropy", signals, {}, 1e-8)
    first_layer = settings.exit_layer[:, :2] == 1
    assert [True, False] in first_layer.tolist()  # example 0 leaves at layer 1, example 1 not yet


def test_a_strategy_that_is_not_monotone_in_its_threshold_is_refused(monkeypatch):
    from dataclasses import dataclass
    from typing import ClassVar

    from de3pipe.method import strategies

    @dataclass(frozen=True)
    class Band(strategies.Strategy):
        """Exits inside a band around tau: loosening tau lets some examples leave and holds others back."""

        tau: float
        name: ClassVar[str] = "band"

        def exits(self, layer, signals, state, labels):
            return np.abs(signals.entropy - self.tau) < 0.1

        @classmethod
        def knob_grid(cls, signals, grid, n_thresholds, eps):
            for tau in np.linspace(0, 1, 21):
                yield {"tau": float(tau)}

    monkeypatch.setitem(strategies._RULES, "band", Band)
    with pytest.raises(De3Error, match="band is not monotone in its threshold"):
        replay_settings("band", random_signals(n=100, seed=9), {}, 1e-8)
