"""Evaluation on the test split with frozen operating points, and GLUE submission files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from de3pipe.errors import De3Error
from de3pipe.io import atomic_file
from de3pipe.metrics import exit_histogram, layer_speedup, task_metrics
from de3pipe.signals import Signals
from de3pipe.strategies import Strategy, base_and_view, make_strategy, replay
from de3pipe.tasks import GlueTask, get_task


def operating_points(thresholds: dict) -> list[tuple[str, str, Strategy, dict]]:
    """(strategy name, target, strategy object, calibration entry) for every frozen point."""
    return _points(thresholds["strategies"], thresholds.get("eps", 1e-8))


def _points(strategies: dict, eps: float) -> list[tuple[str, str, Strategy, dict]]:
    points = []
    for name, targets in strategies.items():
        base = base_and_view(name)[0]
        for target, entry in targets.items():
            knobs = dict(entry["knobs"]) | ({"eps": eps} if base == "de3" else {})
            points.append((name, target, make_strategy(base, **knobs), entry))
    return points


def _replay(name: str, strategy: Strategy, signals: Signals) -> tuple[np.ndarray, np.ndarray]:
    """Replay ``strategy`` on the signals view its name asks for (study variants)."""
    return replay(strategy, signals.view(base_and_view(name)[1]))


def check_compatible(signals: Signals, thresholds: dict) -> GlueTask:
    if signals.meta.get("task") != thresholds.get("task"):
        raise De3Error(
            f"the signals are for task {signals.meta.get('task')!r} but the thresholds for {thresholds.get('task')!r}"
        )
    if signals.num_layers != thresholds.get("num_layers"):
        raise De3Error("the signals and the thresholds come from models with different layer counts")
    return get_task(signals.meta["task"])


def evaluate(signals: Signals, thresholds: dict) -> tuple[dict, pd.DataFrame]:
    """Metrics of every strategy x target on a labeled split, and every sample's exit."""
    task = check_compatible(signals, thresholds)
    if not signals.has_labels:
        raise De3Error("evaluation needs a labeled split (the test split); submission files use `submit`")
    n_layers = signals.num_layers
    per_layer = [task_metrics(task, signals.labels, signals.pred[:, m]) for m in range(n_layers)]
    results = {
        "task": task.name,
        "samples": signals.num_samples,
        "num_layers": n_layers,
        "full_model": per_layer[-1],
        "per_layer": per_layer,
        "mean_entropy_per_layer": signals.entropy.mean(0).tolist(),
        "strategies": {},
    }
    exits = []
    for name, target, strategy, entry in operating_points(thresholds):
        exit_layer, prediction = _replay(name, strategy, signals)
        results["strategies"].setdefault(name, {})[target] = {
            "knobs": entry["knobs"],
            "calibration_status": entry["status"],
            "validation_speedup": entry["validation_speedup"],
            "speedup": layer_speedup(exit_layer, n_layers),
            "exit_histogram": exit_histogram(exit_layer, n_layers),
            **task_metrics(task, signals.labels, prediction),
        }
        exits.append(
            pd.DataFrame(
                {
                    "idx": signals.idx,
                    "strategy": name,
                    "target": target,
                    "exit_layer": exit_layer,
                    "prediction": prediction,
                    "label": signals.labels,
                }
            )
        )
    if "per_lambda" in thresholds:
        results["per_lambda"] = _per_lambda(signals, thresholds, task)
    return results, pd.concat(exits, ignore_index=True)


def _per_lambda(signals: Signals, thresholds: dict, task: GlueTask) -> dict:
    """Test metric and speed-up of each lambda's own frozen point (lambda sensitivity)."""
    out: dict = {}
    for name, lambdas in thresholds["per_lambda"].items():
        for lam, targets in lambdas.items():
            for _, target, strategy, entry in _points({name: targets}, thresholds.get("eps", 1e-8)):
                exit_layer, prediction = _replay(name, strategy, signals)
                out.setdefault(name, {}).setdefault(lam, {})[target] = {
                    "knobs": entry["knobs"],
                    "calibration_status": entry["status"],
                    "speedup": layer_speedup(exit_layer, signals.num_layers),
                    **task_metrics(task, signals.labels, prediction),
                }
    return out


def write_submissions(signals: Signals, thresholds: dict, file_name: str, out_dir: Path) -> list[Path]:
    """GLUE submission TSVs (``index<TAB>prediction``) for every strategy x target."""
    task = check_compatible(signals, thresholds)
    written = []
    for name, target, strategy, _ in operating_points(thresholds):
        if strategy.needs_labels:
            continue  # the oracle needs labels the official test set does not have
        _, prediction = _replay(name, strategy, signals)
        path = out_dir / f"{name}_{target}" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            handle.write("index\tprediction\n")
            for idx, label in zip(signals.idx, np.asarray(task.raw_labels)[prediction], strict=True):
                handle.write(f"{idx}\t{label}\n")
        written.append(path)
    return written
