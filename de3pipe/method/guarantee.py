"""Operating points with a guarantee: "at most epsilon risk, with probability at least 1 - delta"
(Learn-then-Test, Angelopoulos et al. 2021, applied to exit thresholds as in Jazbec et al. 2024).

**Risks**, one loss per example in {0, 1}, so the risk of a setting is the share of examples it
hits:
- ``disagreement``: the exited prediction differs from the full model's. Needs no labels.
- ``accuracy_drop``: the full model is right and the exited prediction is wrong. Its mean bounds
  the accuracy lost: accuracy(full) - accuracy(exit) <= drop rate (an exit that turns a wrong
  prediction right only helps).

For F1 and MCC, which are not means over examples, the guarantee bounds the share of examples
whose prediction changed (or turned wrong), not the metric: a few changed predictions in a rare
class can move F1 or MCC by more than epsilon.

**The rule.** A strategy's knob settings are replayed on the calibration examples. For a
strategy without a secondary knob they form one sequence, ordered from the most conservative
setting (the full model) to the fastest; a strategy with one (de3's lambda, PCEE's t) has one
sequence per configured value of it. Within a sequence the order is the threshold's own: every
registered rule exits no later when its threshold loosens (``tests/method/test_guarantee.py``
checks each), so the order is fixed before the data, and the thresholds tried sit in every gap
between observed signal values (``threshold_grid(values, None)``), so the sequence holds every
decision a threshold can make. Each setting gets a valid p-value for "risk > epsilon" (an
exact binomial tail, or Hoeffding-Bentkus); fixed-sequence testing at level delta / G, G the
number of sequences (Bonferroni over the secondary knob's values, which config fixes before
the data), certifies each sequence's settings up to its first p-value above the level. All
certified settings hold together with probability >= 1 - delta, so the fastest of them is
frozen. Bonferroni over G <= 6 values keeps every calibration example for testing; Pareto
testing would spend part of a few hundred examples on ordering.

The expected-risk variant (conformal risk control) is not offered: it needs a loss that is
monotone in the knob per example, and an exit that moves earlier can turn a right prediction
wrong and a wrong one right.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from de3pipe.errors import De3Error
from de3pipe.method.metrics import layer_speedup
from de3pipe.method.operating_points import Guaranteed
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import lookup, make_strategy, replay

RISKS = {
    "accuracy_drop": "the full model is right and the exited prediction wrong",
    "disagreement": "the exited prediction differs from the full model's",
}
LABELED_RISKS = ("accuracy_drop",)
log = logging.getLogger(__name__)
METHODS = {
    "ltt-binomial": "exact binomial tail (the tightest valid p-value for losses in {0, 1})",
    "ltt-hb": "Hoeffding-Bentkus (valid for any loss in [0, 1])",
}


# ---- losses and p-values ----

def losses(risk: str, prediction: np.ndarray, full_prediction: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Per-example loss in {0, 1} of exited predictions (N,) or (Q, N) against the full model's."""
    if risk == "disagreement":
        return prediction != full_prediction
    if risk == "accuracy_drop":
        if labels is None or (labels < 0).any():
            raise De3Error("the accuracy_drop risk needs labels; calibrate it on the labeled validation split "
                           "(or guarantee the disagreement risk, which needs none)")
        return (full_prediction == labels) & (prediction != labels)
    raise De3Error(f"unknown risk {risk!r}; use one of: {', '.join(RISKS)}")


def p_value(hits: np.ndarray | int, n: int, epsilon: float, method: str) -> np.ndarray:
    """A valid p-value of "risk > epsilon" after ``hits`` losses among ``n`` examples: small when
    the observed risk is far below epsilon."""
    hits = np.asarray(hits, dtype=np.float64)
    if method == "ltt-binomial":
        return stats.binom.cdf(hits, n, epsilon)
    if method == "ltt-hb":
        observed = np.minimum(hits / n, epsilon)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(observed > 0, observed * np.log(observed / epsilon), 0.0) + (1 - observed) * np.log(
                (1 - observed) / (1 - epsilon))
        hoeffding = np.exp(-n * kl)
        bentkus = math.e * stats.binom.cdf(np.ceil(hits), n, epsilon)
        return np.minimum(np.minimum(hoeffding, bentkus), 1.0)
    raise De3Error(f"unknown guarantee method {method!r}; use one of: {', '.join(METHODS)}")


def upper_bound(hits: int, n: int, level: float, method: str) -> float:
    """The smallest epsilon whose p-value after ``hits`` of ``n`` is <= ``level`` (for the binomial,
    the one-sided Clopper-Pearson limit). Of a setting chosen on the same data it is descriptive:
    what LTT certifies is risk <= epsilon."""
    low, high = hits / n, 1.0
    if p_value(hits, n, 1.0 - 1e-12, method) > level:
        return 1.0
    for _ in range(60):  # bisection: p falls as epsilon grows
        middle = (low + high) / 2
        low, high = (middle, high) if p_value(hits, n, middle, method) > level else (low, middle)
    return high


def smallest_certifiable(n: int, level: float, method: str) -> float:
    """The smallest epsilon ``n`` examples can certify at ``level`` (no loss observed at all)."""
    return upper_bound(0, n, level, method)


# ---- settings and their fixed sequences ----

@dataclass
class Settings:
    """Every knob setting of one strategy on the calibration examples: knobs, sequence (the
    secondary knob's value; one sequence for strategies without one), exit layers and predictions."""

    name: str
    knobs: list[dict]
    sequence: np.ndarray  # (Q,)
    exit_layer: np.ndarray  # (Q, N)
    prediction: np.ndarray  # (Q, N)

    @property
    def sequences(self) -> int:
        return len(np.unique(self.sequence))


def replay_settings(name: str, signals: Signals, grid: dict[str, list], eps: float) -> Settings:
    """``name``'s settings at full threshold resolution on ``signals`` (labeled or not)."""
    entry = lookup(name)
    viewed = signals.view(entry.view)
    secondary = entry.secondary_knob
    kept: list[dict] = []
    exits: list[np.ndarray] = []
    predictions: list[np.ndarray] = []
    previous: dict = {}  # per sequence, the last kept exit layers
    direction: dict = {}  # per sequence, whether exits move earlier (-1) or later (+1) along the knob grid
    for knobs in entry.rule.knob_grid(viewed, grid, None, eps):
        exit_layer, prediction = replay(make_strategy(name, eps, **knobs), viewed)
        group = knobs[secondary] if secondary else 0
        # neighbouring thresholds that exit every example at the same layer are one setting: same losses, same p-value
        if group in previous and np.array_equal(previous[group], exit_layer):
            continue
        if group in previous:  # the order is the knob's own only for a rule monotone in it: check, never assume
            step = np.sign(exit_layer.astype(np.int64) - previous[group])
            moves = set(np.unique(step[step != 0]).tolist())  # not empty: the exits differ
            if moves != {direction.setdefault(group, min(moves))}:
                raise De3Error(f"{name} is not monotone in its threshold (an example exits later as others exit "
                               "earlier), so its settings have no order fixed before the data; the guarantee "
                               "cannot certify it: leave it out of calibration.strategies")
        previous[group] = exit_layer
        kept.append(knobs)
        exits.append(exit_layer.astype(np.int16))
        predictions.append(prediction.astype(np.int16))
    sequence = np.array([k[secondary] if secondary else 0 for k in kept], dtype=np.float64)
    return Settings(name, kept, sequence, np.stack(exits), np.stack(predictions))


def fixed_sequence(order: np.ndarray, pvalues: np.ndarray, level: float) -> np.ndarray:
    """The settings certified by testing ``order`` (indices, most conservative first) at ``level``:
    the prefix before the first p-value above it."""
    passed = pvalues[order] <= level
    stop = len(order) if passed.all() else int(np.argmin(passed))
    return order[:stop]


def certify(sequence: np.ndarray, speedup: np.ndarray, hits: np.ndarray, n: int, epsilon: float, delta: float,
            method: str) -> int | None:
    """Index of the fastest certified setting (None when not even the most conservative one is).

    ``sequence`` (Q,) names each setting's sequence, ``speedup`` (Q,) orders settings within it
    (the threshold's order, see the module's docstring) and ``hits`` (Q,) counts its losses."""
    groups = np.unique(sequence)
    level = delta / len(groups)
    pvalues = p_value(hits, n, epsilon, method)
    certified = []
    for group in groups:
        members = np.flatnonzero(sequence == group)
        order = members[np.argsort(speedup[members], kind="stable")]
        certified.extend(fixed_sequence(order, pvalues, level))
    if not certified:
        return None
    certified = np.asarray(certified)
    return int(certified[np.argmax(speedup[certified])])


def naive(speedup: np.ndarray, hits: np.ndarray, n: int, epsilon: float) -> int:
    """The fastest setting whose observed risk is <= epsilon (no guarantee; the benchmark's foil)."""
    allowed = np.flatnonzero(hits <= epsilon * n + 1e-9)
    return int(allowed[np.argmax(speedup[allowed])])


# ---- the calibration stage's entry point ----

def check_certifiable(n: int, epsilons: list[float], delta: float, method: str) -> None:
    """One line when ``n`` examples cannot certify an asked epsilon for any strategy, naming the
    smallest epsilon they could (no loss observed, one sequence at level delta)."""
    smallest = smallest_certifiable(n, delta, method)
    too_small = [e for e in epsilons if e < smallest]
    if too_small:
        raise De3Error(
            f"calibration.guarantee.epsilon {too_small[0]:g}: {n} calibration examples certify no epsilon below "
            f"{smallest:.4f} at delta {delta:g} ({method}); raise epsilon or delta, or calibrate on more examples "
            "(calibration.guarantee.unlabeled adds unlabeled text for the disagreement risk)"
        )


def guaranteed_points(signals: Signals, names: list[str], grids: dict[str, dict], eps: float, risk: str,
                      epsilons: list[float], delta: float, method: str) -> dict[str, dict]:
    """``{name: {guarantee key: entry}}``: per strategy and epsilon the fastest certified setting,
    with its knobs, n, its calibration speed-up and risk, and an upper confidence bound on its risk
    (descriptive: the certified statement is risk <= epsilon)."""
    n = signals.num_samples
    check_certifiable(n, epsilons, delta, method)
    labels = signals.labels if risk in LABELED_RISKS else None
    full = signals.pred[:, -1]
    out: dict[str, dict] = {}
    for name in names:
        settings = replay_settings(name, signals, grids[name], eps)
        hits = losses(risk, settings.prediction, full, labels).sum(1)
        speedup = signals.num_layers * n / settings.exit_layer.sum(1, dtype=np.float64)
        level = delta / settings.sequences
        out[name] = {}
        for epsilon in epsilons:
            chosen = certify(settings.sequence, speedup, hits, n, epsilon, delta, method)
            status = "ok"
            if chosen is None:  # even the first setting fails at delta / sequences: only the full model is safe
                chosen = int(np.argmin(speedup))  # it exits every example at the last layer: zero loss by definition
                smallest = smallest_certifiable(n, level, method)
                status = (f"full model: {n} examples certify no epsilon below {smallest:.4f} at delta {delta:g} over "
                          f"{name}'s {settings.sequences} sequences")
                log.warning("%s at epsilon %g: %s", name, epsilon, status)
            out[name][Guaranteed(risk, epsilon).key] = {
                "knobs": settings.knobs[chosen],
                "risk": risk,
                "epsilon": epsilon,
                "delta": delta,
                "method": method,
                "n": n,
                "sequences": settings.sequences,
                "calibration_speedup": layer_speedup(settings.exit_layer[chosen], signals.num_layers),
                "calibration_risk": float(hits[chosen]) / n,
                # descriptive (the setting was chosen on these examples); the full model's risk is 0 by definition
                "calibration_upper_bound": 0.0 if speedup[chosen] == 1.0 else upper_bound(int(hits[chosen]), n, level,
                                                                                            method),
                "status": status,
            }
    return out
