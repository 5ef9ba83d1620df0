"""Collecting the runs a report covers: every file it reads, through the run layout.

Beside each evaluation's ``metrics.json`` the report reads the test curves and per-example
points; in the run the evaluation belongs to (``RunLayout.of_evaluation``) it reads, where they
are, the two training stages' records and the prototype-space projection. Every one of these is a declared
input of the report stage (``infra/workflow.py``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from de3pipe.errors import De3Error
from de3pipe.infra.io import read_json
from de3pipe.infra.layout import EvaluationFiles, RunLayout
from de3pipe.report.comparison import RunPoints

def collect(metrics_files: list[Path]) -> list[dict]:
    """One dict per run: its ``metrics.json`` with ``_curves`` (the calibrated test curves or
    None), ``_points`` (:class:`RunPoints`), ``_training`` (the training records or None) and
    ``_prototype_space`` (the projection's arrays or None) added."""
    runs = []
    for path in metrics_files:
        results = read_json(path, what="evaluation metrics")
        if not isinstance(results.get("task"), str) or not isinstance(results.get("full_model"), dict) or not isinstance(
                results.get("strategies"), dict):
            raise De3Error(f"evaluation metrics {path} lack task, full_model or strategies; re-run `de3pipe evaluate`")
        evaluation, run = EvaluationFiles(Path(path).parent), RunLayout.of_evaluation(path)
        results["_curves"] = _curves(evaluation.test_curves)
        results["_points"] = load_points(evaluation.points, results.get("seed"), results.get("overhead"))
        results["_training"] = _training(run)
        results["_prototype_space"] = _projection(run.signals.prototype_space)
        runs.append(results)
    if not runs:
        raise De3Error("the report needs at least one evaluation metrics.json")
    return runs


def load_points(path: Path, seed: int | None, overhead: dict | None = None) -> RunPoints:
    try:
        with np.load(path, allow_pickle=False) as data:
            return RunPoints.from_arrays({k: data[k] for k in data.files}, seed, overhead)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise De3Error(f"{path} is missing, corrupt or truncated ({exc}); re-run `de3pipe evaluate`") from None


def _curves(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.is_file() else None
    except pd.errors.EmptyDataError:  # no strategy had a calibrated curve point
        return None


def _training(run: RunLayout) -> dict | None:
    files = {"finetune": run.finetune_metrics, "prototypes": run.prototypes_metrics}
    if not all(f.is_file() for f in files.values()):
        return None
    return {stage: read_json(f, what="training metrics") for stage, f in files.items()}


def _projection(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise De3Error(f"{path} is corrupt or truncated ({exc}); re-run `de3pipe signals`") from None
