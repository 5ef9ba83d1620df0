"""Threshold calibration on the validation split.

Each strategy's knob (and lambda for de3) is swept over a grid to trace its whole
metric/speed-up curve. For every target speed-up the operating point is the point with the
best validation metric among those reaching the target; the thresholds are then frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from de3pipe.config import CalibrationConfig
from de3pipe.metrics import layer_speedup, primary_metric, task_metrics
from de3pipe.errors import De3Error
from de3pipe.signals import Signals, edr
from de3pipe.strategies import Strategy, base_and_view, make_strategy, replay
from de3pipe.tasks import GlueTask, get_task

log = logging.getLogger(__name__)


def threshold_grid(values: np.ndarray, n: int) -> np.ndarray:
    """Thresholds between consecutive quantiles of ``values`` plus both ends: each one sits
    between observed values, so tiny float differences never flip a decision."""
    quantiles = np.unique(np.quantile(values.astype(np.float64), np.linspace(0, 1, n)))
    span = max(float(quantiles[-1] - quantiles[0]), 1e-6)
    middles = (quantiles[:-1] + quantiles[1:]) / 2
    return np.concatenate([[quantiles[0] - span], middles, [quantiles[-1] + span]])


def candidate_strategies(name: str, signals: Signals, cfg: CalibrationConfig, eps: float) -> Iterator[Strategy]:
    """Every knob setting to try for strategy ``name``."""
    inner = slice(0, signals.num_layers - 1)  # exit decisions happen at layers 1..M-1
    n = cfg.n_thresholds
    if name == "de3":
        for lam in cfg.lambdas:
            values = edr(signals.entropy[:, inner], signals.dr, lam, eps)
            for tau in threshold_grid(values, n):
                yield make_strategy("de3", tau=float(tau), lam=float(lam), eps=eps)
    elif name in ("entropy", "distance"):
        values = signals.entropy[:, inner] if name == "entropy" else signals.dr
        for tau in threshold_grid(values, n):
            yield make_strategy(name, tau=float(tau))
    elif name == "maxprob":
        for tau in threshold_grid(np.exp(signals.log_probs[:, inner].max(-1)), n):
            yield make_strategy(name, tau=float(tau))
    elif name == "pcee":
        for t in cfg.pcee_patience:
            for tau in threshold_grid(signals.entropy[:, inner], n):
                yield make_strategy(name, tau=float(tau), t=t)
    elif name == "patience":
        for t in range(1, signals.num_layers):
            yield make_strategy(name, t=t)
    elif name == "static":
        for k in range(1, signals.num_layers + 1):
            yield make_strategy(name, k=k)
    elif name == "oracle":
        yield make_strategy(name)


def evaluate_strategy(strategy: Strategy, signals: Signals, task: GlueTask, name: str | None = None) -> dict:
    """One point of a curve; ``name`` labels it when the strategy runs as a study variant."""
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
    task = get_task(signals.meta["task"])
    rows = []
    for name in cfg.strategies:
        base, view = base_and_view(name)
        viewed = signals.view(view)
        rows += [evaluate_strategy(s, viewed, task, name) for s in candidate_strategies(base, viewed, cfg, eps)]
    return pd.DataFrame(rows).drop(columns=["eps"], errors="ignore")


KNOB_COLUMNS = ("tau", "lam", "t", "k")


def _knobs_of(row: pd.Series) -> dict:
    knobs = {}
    for key in KNOB_COLUMNS:
        if key in row and pd.notna(row[key]):
            knobs[key] = int(row[key]) if key in ("t", "k") else float(row[key])
    return knobs


SECONDARY_KNOBS = {"de3": "lam", "pcee": "t"}  # strategies with a knob besides the threshold


def choose_operating_point(curve: pd.DataFrame, target: float, metric: str, strategy: str, selection: str) -> dict:
    """The frozen point for ``target``.

    ``nearest`` (default): the slowest point that still reaches the target, so strategies are
    compared at matched speed-ups; for de3 (lambda) and pcee (t) that is taken per secondary knob
    and the one with the best validation metric wins. ``best``: the best metric among all points
    reaching the target. If no point reaches it, the fastest point is used and flagged.
    """
    reaching = curve[curve["speedup"] >= target - 1e-9]
    if len(reaching):
        if selection == "nearest":
            group = SECONDARY_KNOBS.get(base_and_view(strategy)[0])
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
        log.warning(message)
    return {
        "knobs": _knobs_of(best),
        "validation_speedup": float(best["speedup"]),
        f"validation_{metric}": float(best[metric]),
        "status": status,
        "message": message,
    }


def calibrate(signals: Signals, cfg: CalibrationConfig, eps: float) -> tuple[dict, pd.DataFrame]:
    """Frozen operating points (strategy -> target -> knobs) and the validation curves."""
    task = get_task(signals.meta["task"])
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
    for name in cfg.strategies:
        curve = curves[curves["strategy"] == name]
        if name == "oracle":  # no knob: one point, reported as is
            thresholds[name] = {"any": choose_operating_point(curve, 1.0, metric, name, "best")}
            continue
        thresholds[name] = {
            f"{target:g}": choose_operating_point(curve, target, metric, name, cfg.selection) for target in cfg.targets
        }
    per_lambda = {}
    if cfg.per_lambda:  # lambda sensitivity: each lambda's own threshold per target, chosen the same way
        for name in (n for n in cfg.strategies if base_and_view(n)[0] == "de3"):
            curve = curves[curves["strategy"] == name]
            per_lambda[name] = {
                f"{lam:g}": {
                    f"{target:g}": choose_operating_point(curve[curve["lam"] == lam], target, metric, name, cfg.selection)
                    for target in cfg.targets
                }
                for lam in cfg.lambdas
            }
    result = {
        "task": task.name,
        "metric": metric,
        "num_layers": signals.num_layers,
        "eps": eps,
        "targets": cfg.targets,
        "selection": cfg.selection,
        "validation_samples": signals.num_samples,
        "strategies": thresholds,
    }
    if per_lambda:
        result["per_lambda"] = per_lambda
    return result, curves
