"""Per-class figures for tasks of three or more classes: each class's test recall under the full
model and under every compared strategy at its operating point for one calibrated target speed-up
(a mean over seeds). Early exiting can keep the overall metric while a rare class pays for it;
these columns show which class does."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from de3pipe.report.comparison import RunPoints


def class_names(names: list[str], n_classes: int) -> list[str]:
    """The recorded class names, a class index beyond them shown by number."""
    return list(names) + [str(k) for k in range(len(names), n_classes)]


def class_recall(labels: np.ndarray, prediction: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) recall of each class; NaN for a class absent from ``labels``."""
    support = np.bincount(labels, minlength=n_classes).astype(np.float64)
    hits = np.bincount(labels[prediction == labels], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def per_class(runs: list[RunPoints], label_names: list[str], strategies: list[str], target: float) -> dict | None:
    """Every class's mean test support and recall (full model; each strategy at ``target``), or
    None for a binary task. A strategy without that point in every seed is left out."""
    n_classes = max(len(label_names), *(int(run.labels.max()) + 1 for run in runs))
    if n_classes < 3:
        return None
    names = class_names(label_names, n_classes)
    recall = {"full model": _over_seeds([class_recall(r.labels, r.full_prediction, n_classes) for r in runs])}
    for name in strategies:
        rows = [run.rows(name, "target", target) for run in runs]
        if all(len(row) == 1 for row in rows):
            recall[name] = _over_seeds([class_recall(run.labels, run.prediction[row[0]], n_classes)
                                        for run, row in zip(runs, rows, strict=True)])
    support = np.mean([np.bincount(r.labels, minlength=n_classes) for r in runs], axis=0)
    return {
        "target": target,
        "classes": names,
        "support": support.tolist(),
        "recall": {name: [None if np.isnan(v) else float(v) for v in values] for name, values in recall.items()},
    }


def _over_seeds(per_seed: list[np.ndarray]) -> np.ndarray:
    """The mean over the seeds whose test split has the class (NaN where none has)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class no seed's test split has
        return np.nanmean(per_seed, axis=0)
