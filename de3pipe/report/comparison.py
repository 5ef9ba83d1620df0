"""Statistics of the strategy comparison (method.md, "Comparing strategies"); no rendering here.

- **Calibrated curves.** A strategy's test curve is its validation-frozen points over the
  dense target grid (calibration.py), each applied once to test, plus the full model at 1x.
  It is never an envelope of test points over knob settings.
- **Matched speed-ups.** Each curve is interpolated at common speed-ups linearly in the mean
  exit layer (1 / speed-up, ``curves.py``: a random mix of two calibrated points, so a cell is
  a deployable point); strategies are compared there, paired per seed. A cell between two
  calibrated points is marked interpolated, and flagged where they lie more than
  ``report.max_gap`` apart.
- **Area.** Mean metric over the fixed range ``report.area_range`` (declared before any run;
  trapezoids on a 201-point grid); a curve that stops short has no area there, only its reach.
- **Uncertainty.** A statistic is a mean over seeds. Its interval adds two independent parts:
  the test part, a bootstrap over the test examples with the seeds held fixed (the same draw
  for every strategy, and for every seed when the seeds share the test set), and the seed
  part, the seeds' standard error times Student-t draws on S - 1 degrees of freedom (a few
  seeds are a small sample: resampling them would understate their spread). Intervals are
  percentile intervals of the sum; a difference's p-value is the empirical two-sided
  (1 + #{|deviation| >= |estimate|}) / (B + 1), with a tolerance for floating-point zeros.
- **Families.** The primary family is declared in config (``report.primary``): the reference
  minus each named strategy at the named matched speed-ups and over the area, on the learned
  tasks; Holm (by default) runs over it alone. Every other difference is exploratory and is
  corrected within its own family (exploratory, guarantee, lambda, wall-clock).
- **Wall-clock.** Each point's wall-clock speed-up charges every layer a sample passes with the
  layer's time plus its strategy's exit check (classifier and signal), as ``evaluation.overhead``
  times them per seed (medians of repeated runs), so de3's distance signal pays its cost.
- **Trivial-baseline gate.** The full model against the best constant prediction on the same
  test examples (majority-class accuracy, all-positive F1, MCC 0): a task whose difference's
  interval does not lie above 0 is "not learned" and is left out of tests and findings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from de3pipe.config import ReportConfig
from de3pipe.errors import De3Error
from de3pipe.method.curves import area_grid, bracket, interpolate, mean_curve, mean_over_grid
from de3pipe.method.guarantee import losses
from de3pipe.method.operating_points import Guaranteed, speedup_key
from de3pipe.method.strategies import compared_names, lookup, registry
from de3pipe.report.per_class import per_class


# ---- weighted metrics: every bootstrap replicate is a column of example weights ----

def weighted_sum(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``values`` (…, N) summed under each weight column (N, B), in float32 (the weights are counts:
    exact, as are sums of counts times layers), returned in float64."""
    return (np.asarray(values).astype(np.float32) @ weights).astype(np.float64)


def weighted_metric(metric: str, labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``metric`` of each row of ``predictions`` (Q, N) under each column of ``weights`` (N, B):
    (Q, B). With weights of ones it equals the unweighted metric (sklearn's definitions)."""
    predictions = np.atleast_2d(predictions)
    total = weights.sum(0, dtype=np.float64)  # (B,)
    correct = weighted_sum(predictions == labels, weights)
    if metric == "accuracy":
        return correct / total
    classes = range(int(max(labels.max(), predictions.max())) + 1)
    if metric == "f1":  # binary, positive class 1
        return _class_f1(labels, predictions, weights, 1)[0]
    if metric == "macro_f1":  # the mean F1 over the classes present in the labels or the predictions
        per_class, present = zip(*(_class_f1(labels, predictions, weights, k) for k in classes), strict=True)
        return np.sum(per_class, axis=0) / np.maximum(np.sum(present, axis=0), 1)
    if metric == "matthews":  # the multi-class form (Gorodkin), as sklearn computes it
        true_counts = np.stack([weighted_sum(labels == k, weights) for k in classes])  # (K, B)
        pred_counts = np.stack([weighted_sum(predictions == k, weights) for k in classes])  # (K, Q, B)
        cov_pred_true = correct * total - np.einsum("kqb,kb->qb", pred_counts, true_counts)
        cov_pred = total**2 - (pred_counts**2).sum(0)
        cov_true = total**2 - (true_counts**2).sum(0)
        denominator = np.sqrt(cov_pred * cov_true)
        return np.divide(cov_pred_true, denominator, out=np.zeros_like(cov_pred_true), where=denominator > 0)
    raise De3Error(f"no weighted form of the metric {metric!r}")


def _class_f1(labels, predictions, weights, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class ``k``'s F1 (Q, B) and whether the class occurs in the labels or the predictions."""
    tp = weighted_sum((predictions == k) & (labels == k), weights)
    denominator = weighted_sum(predictions == k, weights) + weighted_sum(labels == k, weights)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0), denominator > 0


def weighted_speedup(exit_layer: np.ndarray, num_layers: int, weights: np.ndarray) -> np.ndarray:
    """Layer speed-up M * N / sum of exit layers of each row (Q, N) under each weight column: (Q, B)."""
    return num_layers * weights.sum(0, dtype=np.float64) / weighted_sum(np.atleast_2d(exit_layer), weights)


def trivial_metric(metric: str, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The best constant predictor's metric under each weight column (B,): the majority class's
    accuracy, the all-positive F1, the best single class's macro-F1, an MCC of 0. The class is
    chosen once, on the data (the first column, unit weights), and that constant is scored under
    every replicate: choosing it again per replicate would take a maximum of noisy scores, biased
    upwards, and put the interval above the value."""
    if metric == "matthews":
        return np.zeros(weights.shape[1])
    if metric == "f1":
        return weighted_metric("f1", labels, np.ones((1, len(labels)), dtype=labels.dtype), weights)[0]
    classes = np.unique(labels)
    counts = np.stack([weighted_sum(labels == k, weights) for k in classes])  # (K, B)
    total = weights.sum(0, dtype=np.float64)
    if metric == "macro_f1":  # always class k: F1 2 n_k / (N + n_k) for k, 0 for every other class present
        scores = 2 * counts / (total + counts) / np.maximum((counts > 0).sum(0), 1)
    else:
        scores = counts / total
    return scores[int(np.argmax(scores[:, 0]))]


# ---- p-values and corrections ----

TOLERANCE = 1e-12  # differences this small are floating-point zeros


def empirical_p(estimate: float, deviations: np.ndarray) -> float:
    """Two-sided p-value of 'no difference': the share of replicate deviations from the estimate
    at least as large as the estimate itself, (1 + #) / (B + 1), which is never 0."""
    if abs(estimate) <= TOLERANCE:
        return 1.0
    extreme = np.count_nonzero(np.abs(deviations) >= abs(estimate) - TOLERANCE)
    return float((1 + extreme) / (len(deviations) + 1))


def adjust(pvalues: list[float], method: str) -> list[float]:
    """Family-wise adjusted p-values: Holm's step-down, Bonferroni, or none."""
    m = len(pvalues)
    if method == "none" or m == 0:
        return list(pvalues)
    if method == "bonferroni":
        return [min(1.0, p * m) for p in pvalues]
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


# ---- one evaluation's per-example arrays ----

@dataclass
class RunPoints:
    """points.npz of one evaluation: every frozen point's per-example exits and predictions."""

    seed: int | None
    labels: np.ndarray
    idx: np.ndarray
    full_prediction: np.ndarray
    num_layers: int
    table: pd.DataFrame  # strategy, kind, target, knob_value, row
    exit_layer: np.ndarray  # (Q, N)
    prediction: np.ndarray  # (Q, N)
    check_share: dict[str, float] | None = None  # exit check piece -> its time / one layer's (evaluation.overhead)

    TABLE_COLUMNS = ("strategy", "kind", "target", "knob_value", "guarantee")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], seed: int | None, overhead: dict | None = None) -> RunPoints:
        """From the arrays evaluation stores (``points.npz``; one without guaranteed points lacks
        ``guarantee``) and, where measured, the run's overhead timings (metrics.json)."""
        arrays = {"guarantee": np.full(len(arrays["strategy"]), "")} | dict(arrays)
        table = pd.DataFrame({k: arrays[k] for k in cls.TABLE_COLUMNS})
        table["row"] = np.arange(len(table))
        shares = None
        if overhead and "seconds" in overhead:
            seconds = overhead["seconds"]
            shares = {piece: seconds[piece] / seconds["layer"] for piece in ("classifier", "entropy_signal", "de3_signal")}
        return cls(seed, arrays["labels"], arrays["idx"], arrays["full_prediction"], int(arrays["num_layers"]),
                   table, arrays["exit_layer"], arrays["prediction"], shares)

    def rows(self, strategy: str, kind: str, target: float | None = None, knob_value: float | None = None,
             guarantee: str | None = None) -> np.ndarray:
        t = self.table
        mask = (t["strategy"] == strategy) & (t["kind"] == kind)
        if guarantee is not None:
            mask &= t["guarantee"] == guarantee
        if target is not None:
            mask &= np.isclose(t["target"], target)
        if knob_value is not None:
            mask &= np.isclose(t["knob_value"], knob_value)
        return t.loc[mask, "row"].to_numpy()

    def strategies(self, kind: str) -> list[str]:
        return list(dict.fromkeys(self.table.loc[self.table["kind"] == kind, "strategy"]))

    def layer_costs(self, name: str) -> np.ndarray | None:
        """Time of a sample leaving at layer 1..M under ``name``'s exit rule, in layers: the layers
        it ran, an exit check (classifier and signal) at each layer before M, the final classifier
        at M (a fixed exit runs only the classifier where it leaves). None without timings."""
        if self.check_share is None:
            return None
        layers = np.arange(1, self.num_layers + 1, dtype=np.float64)
        classifier = self.check_share["classifier"]
        piece = lookup(name).exit_check
        if piece is None:
            return layers + classifier
        checks = np.minimum(layers, self.num_layers - 1) * (classifier + self.check_share[piece])
        return layers + checks + np.where(layers == self.num_layers, classifier, 0.0)

    @property
    def full_cost(self) -> float | None:
        return None if self.check_share is None else self.num_layers + self.check_share["classifier"]


# ---- estimates over seeds and bootstrap replicates ----

@dataclass
class Estimate:
    """A statistic: its value on the data, its interval and parts, and (differences) p-values."""

    value: float
    low: float
    high: float
    seed_part: float | None = None  # half-width of the seed part alone (t on S - 1 df); 0 with one seed
    test_part: float | None = None  # half-width of the test-sampling part alone (bootstrap)
    p: float | None = None
    p_adjusted: float | None = None
    significant: bool | None = None
    family: str | None = None  # primary, exploratory, guarantee, lambda, wallclock
    exact: bool = False  # every replicate gives the value: no test-sampling or seed spread at all
    identical: bool = False  # a difference that is exactly 0 in every replicate: the two sides never differ
    interpolated: bool = False  # a matched cell between two calibrated points (in some seed)
    gap: float | None = None  # the widest speed-up gap between those two points over the seeds
    wide_gap: bool = False  # that gap exceeds report.max_gap

    FLAGS = ("exact", "identical", "interpolated", "wide_gap")  # stated only where true

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None and not (k in self.FLAGS and not v)}


@dataclass
class Design:
    """The uncertainty of one task: example weights per seed (the test part) and Student-t draws
    (the seed part), shared by every statistic so that differences are paired."""

    columns_per_seed: list[np.ndarray]  # per seed: (N, 1 + B), unit weights (the data) first
    seed_t: np.ndarray  # (B,): standard t draws on S - 1 degrees of freedom; zeros with one seed
    confidence: float

    @classmethod
    def for_runs(cls, runs: list[RunPoints], cfg: ReportConfig) -> Design:
        rng = np.random.default_rng(cfg.bootstrap_seed)
        n_rep = cfg.bootstrap_samples
        shared = all(np.array_equal(r.idx, runs[0].idx) for r in runs)

        def draw(n: int) -> np.ndarray:  # counts fit float32 exactly, and so do their sums over examples
            counts = rng.multinomial(n, np.full(n, 1 / n), size=n_rep).T.astype(np.float32)
            return np.hstack([np.ones((n, 1), np.float32), counts])

        columns = [draw(len(runs[0].idx))] * len(runs) if shared else [draw(len(r.idx)) for r in runs]
        seed_t = rng.standard_t(len(runs) - 1, size=n_rep) if len(runs) > 1 else np.zeros(n_rep)
        return cls(columns, seed_t, cfg.confidence)

    def columns(self, seed: int) -> np.ndarray:
        """Seed ``seed``'s weight columns: the data itself (unit weights) first, then every replicate."""
        return self.columns_per_seed[seed]

    def combine(self, values: np.ndarray, replicates: np.ndarray, paired: bool = False) -> Estimate:
        """Mean over seeds of per-seed ``values`` (S,), with per-seed test-bootstrap ``replicates`` (S, B)."""
        values = np.asarray(values, dtype=np.float64)
        n_seeds, value = len(values), float(np.mean(values))
        test = np.asarray(replicates, dtype=np.float64).mean(0) - value  # test sampling, the seeds held fixed
        seed_se = float(np.std(values, ddof=1)) / math.sqrt(n_seeds) if n_seeds > 1 else 0.0
        deviations = test + seed_se * self.seed_t
        tail = (1 - self.confidence) / 2
        low, high = (value + float(x) for x in np.quantile(deviations, [tail, 1 - tail]))
        test_low, test_high = np.quantile(test, [tail, 1 - tail])
        exact = bool(np.all(np.abs(deviations) <= TOLERANCE))
        estimate = Estimate(value, low, high, seed_part=_t_quantile(1 - tail, n_seeds - 1) * seed_se,
                            test_part=float(test_high - test_low) / 2, exact=exact)
        if paired:
            estimate.identical = exact and abs(value) <= TOLERANCE
            estimate.p = empirical_p(value, deviations)
        return estimate


def _t_quantile(q: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df)) if df >= 1 else 0.0


@dataclass
class CurveSet:
    """One strategy's calibrated test curves (one per seed), on the data and per replicate."""

    speedups: list[np.ndarray]  # per seed: (P+1,) with the full model's (1, metric) first
    metrics: list[np.ndarray]
    speedup_reps: list[np.ndarray]  # per seed: (P+1, B)
    metric_reps: list[np.ndarray]

    def reach(self) -> float:
        """The speed-up every seed's curve reaches on test."""
        return min(float(s.max()) for s in self.speedups)

    def at(self, speedups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per seed, interpolated at ``speedups``: values (S, A) and replicates (S, A, B)."""
        values = np.stack([interpolate(s[:, None], m[:, None], speedups)[:, 0]
                           for s, m in zip(self.speedups, self.metrics, strict=True)])
        reps = np.stack([interpolate(s, m, speedups) for s, m in zip(self.speedup_reps, self.metric_reps, strict=True)])
        return values, reps

    def marks(self, speedups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per speed-up: whether some seed's cell lies between two calibrated points, and the widest
        gap between such neighbours over the seeds."""
        per_seed = [bracket(s, speedups) for s in self.speedups]
        return np.any([i for i, _ in per_seed], axis=0), np.max([g for _, g in per_seed], axis=0)


@dataclass
class TaskComparison:
    task: str
    metric: str
    seeds: list
    gate: dict
    matched: dict = field(default_factory=dict)  # strategy -> speed-up -> Estimate | None (not reached)
    area: dict = field(default_factory=dict)  # {"range", "strategies": {name: Estimate | None}, "reach": {name: x}}
    differences: dict = field(default_factory=dict)  # comparison -> key ("2" or "area") -> Estimate
    targets: dict = field(default_factory=dict)  # strategy -> target -> {"metric", "speedup", "off_target", ...}
    calibration_error: dict = field(default_factory=dict)  # strategy -> target -> Estimate (relative)
    mean_calibration_error: dict = field(default_factory=dict)  # strategy -> mean |relative error| over targets
    # lambda on its own axis: value -> speed-up -> Estimate (metric); and each value > 0 minus 0 there
    per_lambda: dict = field(default_factory=dict)
    lambda_differences: dict = field(default_factory=dict)
    lambda_chosen: dict = field(default_factory=dict)  # target -> per-seed lambda of the reference's frozen point
    # the matched wall-clock view: strategy -> speed-up -> Estimate | None; the reference minus each there
    wallclock: dict = field(default_factory=dict)
    wallclock_differences: dict = field(default_factory=dict)
    # the guaranteed view: strategy -> guarantee key -> {"speedup", "risk", "metric": Estimate, "epsilon"}
    guaranteed: dict = field(default_factory=dict)
    guarantee_differences: dict = field(default_factory=dict)  # comparison -> guarantee key -> Estimate (speed-up)

    @property
    def learned(self) -> bool:
        return self.gate["learned"]


def _per_seed(runs: list[RunPoints], design: Design, fn) -> tuple[np.ndarray, np.ndarray]:
    """fn(run, weight columns) over the seeds, in one pass: values on the data (S, ...) and
    replicates (S, ..., B)."""
    out = np.stack([fn(r, design.columns(s)) for s, r in enumerate(runs)])
    return out[..., 0], out[..., 1:]


def compare_task(task: str, metric: str, runs: list[RunPoints], cfg: ReportConfig) -> TaskComparison:
    """Every statistic of one task over its seeds."""
    design = Design.for_runs(runs, cfg)
    full_values, full_reps = _per_seed(runs, design, lambda r, w: weighted_metric(metric, r.labels, r.full_prediction, w)[0])
    trivial_values, trivial_reps = _per_seed(runs, design, lambda r, w: trivial_metric(metric, r.labels, w))
    difference = design.combine(full_values - trivial_values, full_reps - trivial_reps, paired=True)
    gate = {
        "full_model": design.combine(full_values, full_reps).as_dict(),
        "trivial": design.combine(trivial_values, trivial_reps).as_dict(),
        "difference": difference.as_dict(),
        "trivial_predictor": {"accuracy": "majority class", "f1": "all positive", "macro_f1": "best single class",
                              "matthews": "any constant"}[metric],
        "learned": difference.low > 0,
    }
    out = TaskComparison(task, metric, [r.seed for r in runs], gate)
    names = [n for n in runs[0].strategies("curve") if all(n in r.strategies("curve") for r in runs)]
    full = (full_values, full_reps)
    curves = {name: _curves(runs, design, metric, full, lambda r, n=name: r.rows(n, "curve")) for name in names}
    out.matched, at_matched = _matched(curves, design, cfg)
    out.area, areas = _area(curves, design, cfg)
    primary_keys = {_at_key(a) for a in cfg.primary.at}
    out.differences = _differences(
        out.matched, at_matched, areas, design, cfg, cfg.comparisons,
        lambda other, key: "primary" if other in cfg.primary.against and key in primary_keys else "exploratory",
    )
    if all(r.check_share is not None for r in runs):
        wall = {name: _wallclock_curves(runs, design, name, curves[name]) for name in names}
        out.wallclock, at_wall = _matched(wall, design, cfg)
        out.wallclock_differences = _differences(out.wallclock, at_wall, {}, design, cfg, cfg.primary.against,
                                                 family="wallclock")
    _lambda_view(out, runs, design, metric, full, cfg)
    _target_view(out, runs, design, metric, cfg)
    _guaranteed_view(out, runs, design, metric, cfg)
    return out


def _at_key(at: float | str) -> str:
    return "area" if at == "area" else speedup_key(float(at))


def _matched(curves: dict[str, CurveSet], design: Design, cfg: ReportConfig) -> tuple[dict, dict]:
    """Each curve at the matched speed-ups: {name: {key: Estimate | None}} (None: not reached in
    every seed), and the per-seed arrays for differences."""
    matched = np.array(cfg.matched_speedups)
    at_matched = {name: c.at(matched) for name, c in curves.items()}
    out = {}
    for name, curve in curves.items():
        values, reps = at_matched[name]
        interpolated, gaps = curve.marks(matched)
        out[name] = {}
        for i, s in enumerate(matched):
            if curve.reach() < s - 1e-9:
                out[name][speedup_key(s)] = None
                continue
            estimate = design.combine(values[:, i], reps[:, i])
            estimate.interpolated = bool(interpolated[i])
            estimate.gap = float(gaps[i]) if interpolated[i] else None
            estimate.wide_gap = bool(gaps[i] > cfg.max_gap + 1e-9)
            out[name][speedup_key(s)] = estimate
    return out, at_matched


def _area(curves: dict[str, CurveSet], design: Design, cfg: ReportConfig) -> tuple[dict, dict]:
    """Mean metric over the fixed range ``report.area_range``: an Estimate per strategy whose curve
    reaches its end in every seed, else None with the reach it has."""
    low, high = cfg.area_range
    grid = area_grid(low, high)
    summary: dict = {"range": [low, high], "strategies": {}, "reach": {}}
    areas = {}
    for name, curve in curves.items():
        summary["reach"][name] = curve.reach()
        if curve.reach() < high - 1e-9:
            summary["strategies"][name] = None
            continue
        values, reps = curve.at(grid)
        areas[name] = (mean_over_grid(values.T), np.stack([mean_over_grid(r) for r in reps]))
        summary["strategies"][name] = design.combine(*areas[name])
    return summary, areas


def _differences(matched: dict, at_matched: dict, areas: dict, design: Design, cfg: ReportConfig,
                 others: list[str], family: str | Callable[[str, str], str], reference: str | None = None) -> dict:
    """``reference`` (default: the report's) minus each of ``others`` at every matched speed-up both
    reach, and over the area where both have one: paired per seed and replicate. ``family`` names the
    correction family of each difference, or gives it from (other, key)."""
    reference = reference or cfg.reference
    family_of = family if callable(family) else lambda other, key: family
    out = {}
    if reference not in matched:
        return out
    for other in (o for o in others if o in matched and o != reference):
        entry = {}
        for i, s in enumerate(cfg.matched_speedups):
            key = speedup_key(s)
            if matched[reference][key] is not None and matched[other][key] is not None:
                (a, ar), (b, br) = at_matched[reference], at_matched[other]
                entry[key] = design.combine(a[:, i] - b[:, i], ar[:, i] - br[:, i], paired=True)
                entry[key].family = family_of(other, key)
        if other in areas and reference in areas:
            entry["area"] = design.combine(areas[reference][0] - areas[other][0],
                                           areas[reference][1] - areas[other][1], paired=True)
            entry["area"].family = family_of(other, "area")
        out[other] = entry
    return out


def _lambda_view(out: TaskComparison, runs, design, metric, full, cfg: ReportConfig) -> None:
    """The reference's secondary knob on its own axis: each value's calibrated curve at the matched
    speed-ups, each value > 0 minus the value 0 there (paired), and the value each seed's frozen
    point chose per target."""
    reference = cfg.reference
    table = runs[0].table
    rows = table[(table["kind"] == "sensitivity") & (table["strategy"] == reference)]
    values = sorted({float(v) for v in rows["knob_value"]})
    if not values or not all(reference in r.strategies("sensitivity") for r in runs):
        return
    curves = {f"{v:g}": _curves(runs, design, metric, full, lambda r, v=v: r.rows(reference, "sensitivity", knob_value=v))
              for v in values}
    out.per_lambda, at_matched = _matched(curves, design, cfg)
    if "0" in curves:
        out.lambda_differences = {
            value: _differences(out.per_lambda, at_matched, {}, design, cfg, ["0"], "lambda", reference=value)["0"]
            for value in curves if value != "0"
        }


def _curves(runs, design, metric, full, rows_of) -> CurveSet:
    """A curve per seed (the points ``rows_of(run)``), with the full model's point (1x) first: on
    the data and under every bootstrap replicate."""
    full_values, full_reps = full

    def curve(run, weights):
        rows = rows_of(run)
        return (weighted_speedup(run.exit_layer[rows], run.num_layers, weights),
                weighted_metric(metric, run.labels, run.prediction[rows], weights))

    per_seed = [curve(r, design.columns(s)) for s, r in enumerate(runs)]
    full_curves = [np.concatenate([[full_values[s]], full_reps[s]]) for s in range(len(runs))]
    speedups = [np.vstack([np.ones(len(f)), sp]) for f, (sp, _) in zip(full_curves, per_seed, strict=True)]
    metrics = [np.vstack([f, m]) for f, (_, m) in zip(full_curves, per_seed, strict=True)]
    return CurveSet([sp[:, 0] for sp in speedups], [m[:, 0] for m in metrics],
                    [sp[:, 1:] for sp in speedups], [m[:, 1:] for m in metrics])


def _wallclock_curves(runs, design, name: str, layer: CurveSet) -> CurveSet:
    """``name``'s calibrated curve ``layer`` with each point's speed-up charging every layer its exit
    check (``RunPoints.layer_costs``) instead of counting layers; the metrics are the curve's own."""
    speedups = []
    for s, run in enumerate(runs):
        weights = design.columns(s)
        costs = run.layer_costs(name)[run.exit_layer[run.rows(name, "curve")].astype(np.int64) - 1]  # (Q, N)
        charged = run.full_cost * weights.sum(0, dtype=np.float64) / weighted_sum(costs, weights)
        speedups.append(np.vstack([np.ones(weights.shape[1]), charged]))  # the full model (1x) first
    return CurveSet([sp[:, 0] for sp in speedups], layer.metrics, [sp[:, 1:] for sp in speedups], layer.metric_reps)


def weighted_risk(risk: str, run: RunPoints, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The rate of ``risk``'s losses of each point ``rows`` under each weight column: (Q, B)."""
    hits = losses(risk, run.prediction[rows], run.full_prediction, run.labels)
    return weighted_sum(hits, weights) / weights.sum(0, dtype=np.float64)


def _guaranteed_view(out: TaskComparison, runs, design, metric, cfg: ReportConfig) -> None:
    """Speed-up at a guaranteed loss: each guaranteed point's test speed-up, risk and metric, and
    the reference's speed-up minus each primary comparison's at the same guarantee."""
    table = runs[0].table
    rows = table[table["kind"] == "guarantee"]
    if rows.empty:
        return
    names = [n for n in dict.fromkeys(rows["strategy"]) if all(n in r.strategies("guarantee") for r in runs)]
    present = [set(r.table.loc[r.table["kind"] == "guarantee", "guarantee"]) for r in runs]
    keys = [k for k in dict.fromkeys(rows["guarantee"]) if all(k in keys_of_run for keys_of_run in present)]
    speedups = {}
    for name in names:
        for key in keys:
            guarantee = Guaranteed.parse(key)

            def three(r, w, name=name, key=key, guarantee=guarantee):
                row = r.rows(name, "guarantee", guarantee=key)
                return np.stack([weighted_speedup(r.exit_layer[row], r.num_layers, w)[0],
                                 weighted_risk(guarantee.risk, r, row, w)[0],
                                 weighted_metric(metric, r.labels, r.prediction[row], w)[0]])

            values, reps = _per_seed(runs, design, three)
            speedups[name, key] = (values[:, 0], reps[:, 0])
            out.guaranteed.setdefault(name, {})[key] = {
                "speedup": design.combine(values[:, 0], reps[:, 0]),
                "risk": design.combine(values[:, 1], reps[:, 1]),
                "metric": design.combine(values[:, 2], reps[:, 2]),
                "epsilon": guarantee.epsilon,
            }
    reference = cfg.reference
    for other in (c for c in cfg.primary.against if c in names and c != reference and reference in names):
        out.guarantee_differences[other] = {}
        for key in keys:
            estimate = design.combine(speedups[reference, key][0] - speedups[other, key][0],
                                      speedups[reference, key][1] - speedups[other, key][1], paired=True)
            estimate.family = "guarantee"
            out.guarantee_differences[other][key] = estimate


def _target_view(out: TaskComparison, runs, design, metric, cfg: ReportConfig) -> None:
    """The secondary view at the nominal targets, the calibration error, and the secondary knob's
    value each seed's reference point chose per target."""

    def point(name, kind, target, knob_value=None):
        """Metric and speed-up of one frozen point: ((values, replicates), (values, replicates))."""

        def both(r, w):
            row = r.rows(name, kind, target, knob_value)
            return np.stack([weighted_metric(metric, r.labels, r.prediction[row], w)[0],
                             weighted_speedup(r.exit_layer[row], r.num_layers, w)[0]])

        values, reps = _per_seed(runs, design, both)
        return (values[:, 0], reps[:, 0]), (values[:, 1], reps[:, 1])

    table = runs[0].table
    for name in runs[0].strategies("target"):
        rows = table[(table["strategy"] == name) & (table["kind"] == "target")]
        for target in rows["target"]:
            (mv, mr), (sv, sr) = point(name, "target", None if np.isnan(target) else target)
            key = "any" if np.isnan(target) else speedup_key(target)
            entry = {"metric": design.combine(mv, mr), "speedup": design.combine(sv, sr)}
            if key != "any":
                error = design.combine(sv / target - 1, sr / target - 1)
                entry["off_target"] = abs(error.value) > cfg.target_tolerance
                out.calibration_error.setdefault(name, {})[key] = error
            out.targets.setdefault(name, {})[key] = entry
    out.mean_calibration_error = {  # over the named targets, of the values on the data
        name: float(np.mean([abs(e.value) for e in errors.values()])) for name, errors in out.calibration_error.items()
    }


FAMILIES = {  # family -> (the comparison's table of differences, whether an estimate belongs to it)
    "primary": ("differences", lambda e: e.family == "primary"),
    "exploratory": ("differences", lambda e: e.family == "exploratory"),
    "guarantee": ("guarantee_differences", lambda e: True),
    "lambda": ("lambda_differences", lambda e: True),
    "wallclock": ("wallclock_differences", lambda e: True),
}


def correct_differences(comparisons: list[TaskComparison], cfg: ReportConfig, family: str = "primary") -> int:
    """Adjust the p-values of one family of differences (over the learned tasks) together and mark
    the significant ones; returns the family's size."""
    table, belongs = FAMILIES[family]
    members = [e for c in comparisons if c.learned for d in getattr(c, table).values() for e in d.values() if belongs(e)]
    for estimate, adjusted in zip(members, adjust([e.p for e in members], cfg.correction), strict=True):
        estimate.p_adjusted = adjusted
        estimate.significant = adjusted < cfg.alpha
    return len(members)


# ---- the study's measurements without test sampling (overhead, validation heads) ----

def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval over seeds, for quantities without test sampling
    (overhead, validation metrics); None with a single seed."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), None
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr))
    return float(arr.mean()), float(half)


def study_sections(task_runs: list[dict], metric: str) -> dict:
    """Overhead and the per-layer head comparison, where the runs have them (over seeds). Each run
    carries its training records (``_training``: the two stages' train metrics, or None)."""
    out: dict = {}
    if all("overhead" in r for r in task_runs):
        overheads = [r["overhead"] for r in task_runs]
        out["overhead"] = {
            "extra_parameter_share": mean_ci([o["parameters"]["extra_share"] for o in overheads]),
            "extra_bytes": overheads[0]["parameters"]["extra_bytes"],
            "extra_parameters": overheads[0]["parameters"]["prototype_networks"]
            + overheads[0]["parameters"]["prototype_buffers"],
            "extra_flops_share_of_layer": mean_ci([o["extra_flops_share_of_layer"] for o in overheads]),
            "extra_flops_per_sample": overheads[0]["flops_per_sample"]["de3_signal"]
            - overheads[0]["flops_per_sample"]["entropy_signal"],
            **{f"percent_of_layer.{k}": mean_ci([o["percent_of_layer"][k] for o in overheads])
               for k in ("classifier", "entropy_signal", "de3_signal", "de3_extra")},
        }
    heads = [_validation_heads(r.get("_training"), metric) for r in task_runs]
    if all(h is not None for h in heads):
        out["validation_heads"] = {
            kind: [mean_ci([h[kind][m] for h in heads]) for m in range(len(heads[0][kind]))] for kind in heads[0]
        }
    return out


def _validation_heads(training: dict | None, metric: str) -> dict | None:
    """Per-layer validation metric of the internal classifier, the control head and the nearest
    prototype, from the two training stages' records (None where not recorded)."""
    if not training:
        return None
    stage1, stage2 = training["finetune"]["epochs"][-1], training["prototypes"]["epochs"][-1]
    if "validation_control" not in stage2:
        return None
    n_exits = len(stage2["validation_control"])
    return {
        "internal classifier": [m[metric] for m in stage1["validation"][:n_exits]],
        "control head": [m[metric] for m in stage2["validation_control"]],
        "nearest prototype": [m[metric] for m in stage2["validation_nearest"]],
    }


def plot_lines(task_runs: list[dict], names: list[str], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per strategy, the line a task's plot draws (×100) and how many seeds it stands for: each
    seed's calibrated test curve (``_curves``: test_curves.csv) from the full model at 1x, and with
    several seeds their mean on a common grid (``mean_curve``)."""
    lines = {}
    for name in names:
        curves = []
        for run in task_runs:
            table = run["_curves"]
            if table is None or "strategy" not in table:
                continue
            curve = table[table["strategy"] == name].sort_values("speedup", kind="stable")
            if len(curve):
                curves.append((np.concatenate([[1.0], curve["speedup"]]),
                               np.concatenate([[run["full_model"][metric] * 100], curve["metric"] * 100])))
        if curves:
            lines[name] = (*mean_curve(curves), len(curves))
    return lines


# ---- the summary of every task ----

def summarise(runs: list[dict], cfg: ReportConfig) -> tuple[dict, list[TaskComparison]]:
    """Every task's statistics over its seeds, corrected over the table of differences, as plain
    JSON (``summary.json``), from the collected runs (``collect.py``)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_task[run["task"]].append(run)
    comparisons = []
    for task, task_runs in sorted(by_task.items()):
        task_runs.sort(key=lambda r: r.get("seed") or 0)
        metric = next(iter(task_runs[0]["full_model"]))
        comparison = compare_task(task, metric, [r["_points"] for r in task_runs], cfg)
        for name, targets in comparison.targets.items():
            for target, entry in targets.items():
                entry["unreachable"] = any(r["strategies"][name][target]["calibration_status"] != "ok" for r in task_runs)
        for name, points in comparison.guaranteed.items():  # the full model kept where delta / sequences was too thin
            for key, entry in points.items():
                entry["full_model_fallback"] = any(r["guaranteed"][name][key]["status"] != "ok" for r in task_runs)
                entry["exceeds_epsilon"] = sum(r["guaranteed"][name][key]["exceeds_epsilon"] for r in task_runs)
        comparisons.append(comparison)
        reference = cfg.reference  # the secondary knob each seed's reference point chose per named target
        knob = lookup(reference).secondary_knob if reference in registry() else None
        if knob:
            comparison.lambda_chosen = {
                target: [r["strategies"][reference][target]["knobs"].get(knob) for r in task_runs]
                for target in task_runs[0]["strategies"].get(reference, {}) if target != "any"
                if all(target in r["strategies"].get(reference, {}) for r in task_runs)
            }
    families = {family: correct_differences(comparisons, cfg, family) for family in FAMILIES}
    summary: dict = {
        "seeds": sorted({run.get("seed") for run in runs}),
        "seeds_per_task": {task: [r.get("seed") for r in task_runs] for task, task_runs in sorted(by_task.items())},
        "protocol": {
            "bootstrap_samples": cfg.bootstrap_samples,
            "confidence": cfg.confidence,
            "correction": cfg.correction,
            "alpha": cfg.alpha,
            "families": families,
            "primary": {"reference": cfg.reference, "against": cfg.primary.against,
                        "at": [_at_key(a) for a in cfg.primary.at]},
            "matched_speedups": cfg.matched_speedups,
            "area_range": cfg.area_range,
            "max_gap": cfg.max_gap,
            "reference": cfg.reference,
        },
        "tasks": {},
    }
    settings = [(task, point) for task, task_runs in by_task.items() for run in task_runs
                for points in run.get("guaranteed", {}).values() for point in points.values()]
    if settings:
        first = settings[0][1]
        summary["guarantee"] = {"risk": first["risk_name"], "delta": first["delta"], "method": first["method"],
                                "n": {task: point["n"] for task, point in settings}}
    for comparison in comparisons:
        task_runs = by_task[comparison.task]
        entry = _as_dict(comparison)
        entry |= study_sections(task_runs, comparison.metric)
        classes = per_class([r["_points"] for r in task_runs], task_runs[0].get("label_names") or [],
                            compared_names(), _per_class_target(cfg))
        if classes:
            entry["per_class"] = classes
        summary["tasks"][comparison.task] = entry
    return summary, comparisons


def _per_class_target(cfg: ReportConfig) -> float:
    """The calibrated target the per-class figures are read at: the primary family's first speed-up."""
    return next((float(a) for a in cfg.primary.at if a != "area"), cfg.matched_speedups[0])


def _as_dict(value):
    """The comparison as plain JSON (Estimates as dicts)."""
    if isinstance(value, Estimate):
        return value.as_dict()
    if isinstance(value, TaskComparison):
        return {k: _as_dict(v) for k, v in value.__dict__.items()}
    if isinstance(value, dict):
        return {k: _as_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_dict(v) for v in value]
    return value
