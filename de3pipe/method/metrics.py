"""Task metrics and speed-up, each defined once."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from de3pipe.data.tasks import GlueTask

_METRICS = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "f1": lambda y, p: float(f1_score(y, p, zero_division=0.0)),
    # over the classes in the labels or the predictions (sklearn's default set)
    "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", zero_division=0.0)),
    "matthews": lambda y, p: float(matthews_corrcoef(y, p)),
}


def task_metrics(task: GlueTask, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics (the first is the task's primary metric)."""
    return {name: _METRICS[name](labels, predictions) for name in task.metrics}


def primary_metric(task: GlueTask) -> str:
    return task.metrics[0]


def layer_speedup(exit_layers: np.ndarray, num_layers: int) -> float:
    """Layer-count speed-up over N samples: M*N / sum of exit layers (1 = the full model)."""
    return float(num_layers * len(exit_layers) / exit_layers.sum())


def exit_histogram(exit_layers: np.ndarray, num_layers: int) -> list[int]:
    """How many samples left at each layer 1..M."""
    return np.bincount(exit_layers, minlength=num_layers + 1)[1:].tolist()
