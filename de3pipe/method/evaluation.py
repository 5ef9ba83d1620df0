"""Evaluation on the test split with frozen operating points, and GLUE submission files.

Every frozen point (the named targets, each strategy's dense curve grid, the per-lambda points)
is applied once to test. Besides the metrics, every point's per-example exits and predictions
are kept (``points.npz``), so the report can bootstrap over test examples (de3pipe/report/comparison.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from de3pipe.data.tasks import GlueTask, get_task
from de3pipe.errors import De3Error
from de3pipe.infra.io import atomic_file
from de3pipe.infra.layout import EvaluationFiles
from de3pipe.method.curves import full_model_curve, interpolate
from de3pipe.method.metrics import exit_histogram, layer_speedup, primary_metric, task_metrics
from de3pipe.method.guarantee import losses
from de3pipe.method.operating_points import (Guaranteed, Target, certified_points, curve_points, operating_points,
                                             sensitivity_points)
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import lookup, replay_named

def check_compatible(signals: Signals, thresholds: dict) -> GlueTask:
    if signals.meta.get("task") != thresholds.get("task"):
        raise De3Error(
            f"the signals are for task {signals.meta.get('task')!r} but the thresholds for {thresholds.get('task')!r}"
        )
    if signals.num_layers != thresholds.get("num_layers"):
        raise De3Error("the signals and the thresholds come from models with different layer counts")
    return signals.task


class _PointStore:
    """Per-example exits and predictions of every evaluated point, for the bootstrap."""

    def __init__(self):
        self.rows: list[tuple[str, str, float, float, str, np.ndarray, np.ndarray]] = []

    def add(self, name: str, kind: str, target: Target | Guaranteed, knob_value: float, exit_layer: np.ndarray,
            prediction: np.ndarray):
        guarantee = target.key if isinstance(target, Guaranteed) else ""
        self.rows.append((name, kind, target.value, knob_value, guarantee, exit_layer, prediction))

    def arrays(self, signals: Signals) -> dict[str, np.ndarray]:
        names, kinds, targets, knob_values, guarantees, exits, predictions = zip(*self.rows, strict=True)
        return {
            "strategy": np.array(names),
            "kind": np.array(kinds),
            "target": np.array(targets, dtype=np.float64),
            # the secondary knob's value at a sensitivity point ("lambda" rows), else NaN
            "knob_value": np.array(knob_values, dtype=np.float64),
            "guarantee": np.array(guarantees),  # a guaranteed point's key ("accuracy_drop-0.02"), else ""
            "exit_layer": np.stack(exits).astype(np.int16),
            "prediction": np.stack(predictions).astype(np.int16),
            "labels": signals.labels.astype(np.int64),
            "idx": signals.idx.astype(np.int64),
            "full_prediction": signals.pred[:, -1].astype(np.int16),
            "num_layers": np.array(signals.num_layers),
        }


def evaluate(signals: Signals, thresholds: dict) -> tuple[dict, pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """On a labeled split: metrics of every named point (metrics.json), every sample's exit at
    those points, the calibrated test curves and the per-example arrays of every point."""
    task = check_compatible(signals, thresholds)
    if not signals.has_labels:
        raise De3Error("evaluation needs a labeled split (the test split); submission files use `submit`")
    n_layers, metric = signals.num_layers, primary_metric(task)
    per_layer = [task_metrics(task, signals.labels, signals.pred[:, m]) for m in range(n_layers)]
    results = {
        "task": task.name,
        "label_names": list(task.label_names),
        "samples": signals.num_samples,
        "num_layers": n_layers,
        "full_model": per_layer[-1],
        "per_layer": per_layer,
        "mean_entropy_per_layer": signals.entropy.mean(0).tolist(),
        "strategies": {},
    }
    store, exits = _PointStore(), []
    for point in operating_points(thresholds):
        exit_layer, prediction = replay_named(point.name, point.strategy, signals)
        results["strategies"].setdefault(point.name, {})[point.target.key] = {
            "knobs": point.entry["knobs"],
            "calibration_status": point.entry["status"],
            "validation_speedup": point.entry["validation_speedup"],
            "speedup": layer_speedup(exit_layer, n_layers),
            "exit_histogram": exit_histogram(exit_layer, n_layers),
            **task_metrics(task, signals.labels, prediction),
        }
        store.add(point.name, "target", point.target, float("nan"), exit_layer, prediction)
        exits.append(pd.DataFrame({"idx": signals.idx, "strategy": point.name, "target": point.target.key,
                                   "exit_layer": exit_layer, "prediction": prediction, "label": signals.labels}))
    guaranteed = _guaranteed(signals, thresholds, task, store, exits)
    if guaranteed:
        results["guaranteed"] = guaranteed
    curve_rows = []
    for point in curve_points(thresholds):
        exit_layer, prediction = replay_named(point.name, point.strategy, signals)
        store.add(point.name, "curve", point.target, float("nan"), exit_layer, prediction)
        curve_rows.append({
            "strategy": point.name,
            "target": point.target.value,
            **point.entry["knobs"],
            "validation_speedup": point.entry["validation_speedup"],
            "speedup": layer_speedup(exit_layer, n_layers),
            **task_metrics(task, signals.labels, prediction),
        })
    curves = pd.DataFrame(curve_rows)
    if len(curves):
        curves["metric"] = curves[metric]
    if "per_lambda" in thresholds:
        results["per_lambda"] = _sensitivity(signals, thresholds, task, store)
    return results, pd.concat(exits, ignore_index=True), curves, store.arrays(signals)


def headline(results: dict, curves: pd.DataFrame) -> dict[str, dict]:
    """The compact per-run figures DVC declares as metrics, one small file per row so that
    `dvc metrics show` stays narrow: ``full`` (the full model's primary metric) and one record per
    strategy and named target, ``<strategy>@<target>x``: the test metric and achieved speed-up of
    the point frozen for the target, and ``matched``, the metric of the strategy's calibrated test
    curve at exactly that speed-up (the comparison protocol's figure for one run: the curve, with
    the full model at 1x, sorted by speed-up and linearly interpolated; absent where the curve does
    not reach it). Each guaranteed point adds ``<strategy>@<risk>-<epsilon>``: its test metric,
    speed-up and risk. The full detail stays in metrics.json."""
    metric = primary_metric(get_task(results["task"]))
    full = results["full_model"][metric]
    records: dict[str, dict] = {"full": {"metric": round(full, 4)}}
    for name, points in results["strategies"].items():
        rows = curves[curves["strategy"] == name] if len(curves) else pd.DataFrame(columns=["speedup", "metric"])
        speedups, metrics = full_model_curve(rows["speedup"].to_numpy(float), rows["metric"].to_numpy(float), full)
        for key, point in points.items():
            target = Target.parse(key)
            if target.speedup is None:  # the oracle's single point has no target
                continue
            record = {"metric": round(point[metric], 4), "speedup": round(point["speedup"], 3)}
            if speedups.max() >= target.speedup:  # targets exceed 1x, so the full model alone never reaches one
                matched = interpolate(speedups[:, None], metrics[:, None], np.array([target.speedup]))
                record["matched"] = round(float(matched[0, 0]), 4)
            records[f"{name}@{target}x"] = record
    for name, points in results.get("guaranteed", {}).items():
        for key, point in points.items():  # the risk is on the 0-1 scale, as the metric
            records[f"{name}@{key}"] = {"metric": round(point[metric], 4), "speedup": round(point["speedup"], 3),
                                        "risk": round(point["risk"], 4)}
    return records


def _guaranteed(signals: Signals, thresholds: dict, task: GlueTask, store: _PointStore, exits: list) -> dict:
    """Each guaranteed point on test: its speed-up, its risk (the rate its guarantee bounds) and
    whether that rate exceeds epsilon, beside the task's metrics."""
    out: dict = {}
    full = signals.pred[:, -1]
    for point in certified_points(thresholds):
        exit_layer, prediction = replay_named(point.name, point.strategy, signals)
        risk = float(losses(point.target.risk, prediction, full, signals.labels).mean())
        entry = point.entry
        out.setdefault(point.name, {})[point.target.key] = {
            "knobs": entry["knobs"],
            "risk_name": entry["risk"],
            **{k: entry[k] for k in ("epsilon", "delta", "method", "n", "sequences", "status", "calibration_speedup",
                                     "calibration_risk", "calibration_upper_bound")},
            "risk": risk,  # on test
            "exceeds_epsilon": risk > entry["epsilon"],
            "speedup": layer_speedup(exit_layer, signals.num_layers),
            "exit_histogram": exit_histogram(exit_layer, signals.num_layers),
            **task_metrics(task, signals.labels, prediction),
        }
        store.add(point.name, "guarantee", point.target, float("nan"), exit_layer, prediction)
        exits.append(pd.DataFrame({"idx": signals.idx, "strategy": point.name, "target": point.target.key,
                                   "exit_layer": exit_layer, "prediction": prediction, "label": signals.labels}))
    return out


def _sensitivity(signals: Signals, thresholds: dict, task: GlueTask, store: _PointStore) -> dict:
    """Each secondary-knob value's calibrated test curve: per value, its points' targets, test
    speed-ups and metric (the report compares the values at matched speed-ups)."""
    metric = primary_metric(task)
    out: dict = {}
    for value, point in sensitivity_points(thresholds):
        exit_layer, prediction = replay_named(point.name, point.strategy, signals)
        store.add(point.name, "sensitivity", point.target, value, exit_layer, prediction)
        out.setdefault(point.name, {}).setdefault(f"{value:g}", []).append({
            "target": point.target.value,
            "knobs": point.entry["knobs"],
            "speedup": layer_speedup(exit_layer, signals.num_layers),
            "metric": task_metrics(task, signals.labels, prediction)[metric],
        })
    return out


def write_submissions(signals: Signals, thresholds: dict, file_name: str, out_dir: Path) -> list[Path]:
    """GLUE submission TSVs (``index<TAB>prediction``) for every strategy x target, in the
    submission folder ``out_dir``."""
    task = check_compatible(signals, thresholds)
    written = []
    for point in operating_points(thresholds):
        if lookup(point.name).analysis_only:
            continue  # analysis-only (the oracle): needs labels the official test set does not have
        _, prediction = replay_named(point.name, point.strategy, signals)
        path = EvaluationFiles.submission_in(out_dir, f"{point.name}_{point.target}", file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            handle.write("index\tprediction\n")
            for idx, label in zip(signals.idx, np.asarray(task.raw_labels)[prediction], strict=True):
                handle.write(f"{idx}\t{label}\n")
        written.append(path)
    return written
