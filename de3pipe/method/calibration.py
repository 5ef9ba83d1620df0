"""Threshold calibration on the validation split.

Each strategy's knobs are swept over its registered grid (strategies.py) to trace its whole
validation metric/speed-up curve. One selection rule, the same for every strategy, then
freezes an operating point for each named target speed-up and for a dense grid of targets
(1 + step, 1 + 2 step, ... up to the fastest point the strategy reaches on validation). The
dense grid's points, applied once to test, are the strategy's calibrated test curve: every
knob (tau, lambda, t, k) is chosen on validation, never on test.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from de3pipe.config import CalibrationConfig
from de3pipe.errors import De3Error
from de3pipe.method.guarantee import guaranteed_points
from de3pipe.method.operating_points import speedup_key
from de3pipe.method.metrics import layer_speedup, primary_metric, task_metrics
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import Strategy, calibrated_names, check_calibration, lookup, make_strategy, replay
from de3pipe.data.tasks import GlueTask, get_task

log = logging.getLogger(__name__)


def evaluate_strategy(strategy: Strategy, signals: Signals, task: GlueTask, name: str | None = None) -> dict:
    """One point of a curve on ``signals`` (already the view ``name`` reads)."""
    exit_layer, prediction = replay(strategy, signals)
    return {
        "strategy": name or strategy.name,
        **strategy.knobs(),
        "speedup": layer_speedup(exit_layer, signals.num_layers),
        "mean_exit_layer": float(exit_layer.mean()),
        **task_metrics(task, signals.labels, prediction),
    }


def sweep(signals: Signals, cfg: CalibrationConfig, eps: float) -> pd.DataFrame:
    """The metric/speed-up curve of every configured strategy on ``signals`` (one row per knob setting)."""
    task = signals.task
    rows = []
    for name in calibrated_names(cfg):
        entry = lookup(name)
        viewed = signals.view(entry.view)
        rows += [
            evaluate_strategy(make_strategy(name, eps, **knobs), viewed, task, name)
            for knobs in entry.rule.knob_grid(viewed, entry.rule.grid(cfg), cfg.n_thresholds, eps)
        ]
    return pd.DataFrame(rows)


def _knobs_of(row: pd.Series, strategy: str) -> dict:
    """The knobs of ``strategy`` on a curve row (the curves table has a column per knob of any strategy)."""
    rule = lookup(strategy).rule
    return {key: int(row[key]) if key in rule.integer_knobs() else float(row[key]) for key in rule.knob_names()}


def choose_operating_point(curve: pd.DataFrame, target: float, metric: str, strategy: str, selection: str) -> dict:
    """The frozen point for ``target``, by the same rule for every strategy.

    ``nearest`` (default): per value of the strategy's secondary knob (lambda, t; one group for
    the others) the slowest point that still reaches the target, then the best validation metric
    among those. ``best``: the best metric among all points reaching the target. If no point
    reaches it, the fastest point is used and flagged ``unreachable``.
    """
    reaching = curve[curve["speedup"] >= target - 1e-9]
    if len(reaching):
        if selection == "nearest":
            group = lookup(strategy).secondary_knob
            groups = reaching.groupby(group, sort=True) if group else [(None, reaching)]
            reaching = pd.DataFrame([g.sort_values("speedup", kind="stable").iloc[0] for _, g in groups])
        best = reaching.sort_values([metric, "speedup"], ascending=[False, True], kind="stable").iloc[0]
        status, message = "ok", ""
    else:
        best = curve.sort_values(["speedup", metric], ascending=[False, False], kind="stable").iloc[0]
        low, high = curve["speedup"].min(), curve["speedup"].max()
        status = "unreachable"
        message = (
            f"{strategy} cannot reach {target:g}x on the validation split: its reachable range is "
            f"{low:.2f}x-{high:.2f}x; using the nearest point, {best['speedup']:.2f}x"
        )
    return {
        "knobs": _knobs_of(best, strategy),
        "validation_speedup": float(best["speedup"]),
        f"validation_{metric}": float(best[metric]),
        "status": status,
        "message": message,
    }


def curve_targets(fastest: float, step: float) -> list[float]:
    """The dense target grid: 1 + step, 1 + 2 step, ... up to ``fastest``."""
    count = int(np.floor((fastest - 1) / step + 1e-9))
    return [round(1 + step * i, 10) for i in range(1, count + 1)]


def calibrated_curve(curve: pd.DataFrame, metric: str, strategy: str, cfg: CalibrationConfig) -> list[dict]:
    """The strategy's frozen points over the dense target grid (repeats of one point kept once)."""
    points, seen = [], set()
    for target in curve_targets(float(curve["speedup"].max()), cfg.curve_step):
        point = choose_operating_point(curve, target, metric, strategy, cfg.selection)
        key = tuple(sorted(point["knobs"].items()))
        if key not in seen:
            seen.add(key)
            points.append({"target": target} | point)
    return points


def calibrate(signals: Signals, cfg: CalibrationConfig, eps: float, unlabeled: list[Signals] | None = None
              ) -> tuple[dict, pd.DataFrame]:
    """Frozen operating points (named targets, the dense curve grid and, when configured, the
    guaranteed points) and the validation curves. ``unlabeled``: signals of the task's unlabeled
    text, for a disagreement guarantee with ``calibration.guarantee.unlabeled``."""
    task = signals.task
    check_calibration(cfg)
    if not signals.has_labels:
        raise De3Error("calibration needs a labeled split; give the signals of the validation split")
    too_fast = [t for t in cfg.targets if t > signals.num_layers]
    if too_fast:
        raise De3Error(
            f"target speed-up(s) {too_fast} exceed the model's {signals.num_layers} layers (the most any "
            f"strategy can reach is {signals.num_layers}x, every sample leaving at layer 1); lower calibration.targets"
        )
    metric = primary_metric(task)
    curves = sweep(signals, cfg, eps)
    thresholds: dict[str, dict] = {}
    dense: dict[str, list[dict]] = {}
    names = calibrated_names(cfg)
    for name in names:
        curve = curves[curves["strategy"] == name]
        if lookup(name).analysis_only:  # no knob worth calibrating: one point, reported as is
            thresholds[name] = {"any": choose_operating_point(curve, 1.0, metric, name, "best")}
            continue
        thresholds[name] = {}
        for target in cfg.targets:
            point = choose_operating_point(curve, target, metric, name, cfg.selection)
            if point["message"]:
                log.warning(point["message"])
            thresholds[name][speedup_key(target)] = point
        dense[name] = calibrated_curve(curve, metric, name, cfg)
    per_lambda = {}
    if cfg.per_lambda:  # lambda on its own axis: a calibrated curve per secondary-knob value, chosen the same way
        for name in (n for n in names if lookup(n).rule.sensitivity):
            rule, curve = lookup(name).rule, curves[curves["strategy"] == name]
            knob = rule.secondary_knob
            per_lambda[name] = {f"{value:g}": calibrated_curve(curve[curve[knob] == value], metric, name, cfg)
                                for value in rule.grid(cfg)[knob]}
    result = {
        "task": task.name,
        "metric": metric,
        "num_layers": signals.num_layers,
        "eps": eps,
        "targets": cfg.targets,
        "selection": cfg.selection,
        "curve_step": cfg.curve_step,
        "validation_samples": signals.num_samples,
        "strategies": thresholds,
        "curves": dense,
    }
    if per_lambda:
        result["per_lambda"] = per_lambda
    if cfg.guarantee is not None:
        result["guaranteed"] = _guaranteed(signals, unlabeled or [], cfg, eps)
    return result, curves


def _guaranteed(validation: Signals, unlabeled: list[Signals], cfg: CalibrationConfig, eps: float) -> dict:
    """Every servable and study strategy's fastest setting certified at each epsilon."""
    settings = cfg.guarantee
    parts = [validation]
    if settings.unlabeled:
        if not unlabeled:
            raise De3Error("calibration.guarantee.unlabeled: this task has no unlabeled split (GLUE's submit split) "
                           "in its signals; set unlabeled: false")
        parts += unlabeled
    pooled = Signals.pool(parts) if len(parts) > 1 else validation
    names = [n for n in calibrated_names(cfg) if not lookup(n).analysis_only]
    grids = {n: lookup(n).rule.grid(cfg) for n in names}
    return {
        "risk": settings.risk,
        "delta": settings.delta,
        "method": settings.method,
        "n": pooled.num_samples,
        "splits": [str(p.meta.get("split")) for p in parts],
        "strategies": guaranteed_points(pooled, names, grids, eps, settings.risk, settings.epsilon, settings.delta,
                                        settings.method),
    }
