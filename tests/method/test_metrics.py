"""Task metrics and speed-up (de3pipe/method/metrics.py) against values computed by hand."""

import numpy as np
import pytest

from de3pipe.data.tasks import get_task
from de3pipe.method.metrics import exit_histogram, layer_speedup, primary_metric, task_metrics

# tp = 2 (rows 0, 4), fn = 1 (row 1), tn = 1 (row 2), fp = 1 (row 3)
LABELS = np.array([1, 1, 0, 0, 1])
PREDICTIONS = np.array([1, 0, 0, 1, 1])


def test_accuracy_task():
    assert task_metrics(get_task("sst2"), LABELS, PREDICTIONS) == {"accuracy": pytest.approx(3 / 5)}


def test_f1_task_lists_f1_first():
    metrics = task_metrics(get_task("mrpc"), LABELS, PREDICTIONS)
    assert list(metrics) == ["f1", "accuracy"]
    # precision 2/3, recall 2/3: F1 = 2 tp / (2 tp + fp + fn) = 4/6
    assert metrics["f1"] == pytest.approx(4 / 6)
    assert metrics["accuracy"] == pytest.approx(0.6)


def test_matthews_task_lists_mcc_first():
    metrics = task_metrics(get_task("cola"), LABELS, PREDICTIONS)
    assert list(metrics) == ["matthews", "accuracy"]
    # (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3 * 3 * 2 * 2)
    assert metrics["matthews"] == pytest.approx(1 / 6)


def test_three_class_accuracy():
    labels, predictions = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 2, 1, 1])
    assert task_metrics(get_task("mnli"), labels, predictions)["accuracy"] == pytest.approx(4 / 6)


def test_degenerate_predictions_give_zero_not_nan():
    labels = np.array([0, 1, 0, 1])
    constant = np.zeros(4, int)
    assert task_metrics(get_task("mrpc"), labels, constant)["f1"] == 0.0  # no positive prediction
    assert task_metrics(get_task("cola"), labels, constant)["matthews"] == 0.0
    assert task_metrics(get_task("mrpc"), np.zeros(4, int), constant)["f1"] == 0.0  # no positive at all
    perfect = task_metrics(get_task("cola"), labels, labels)
    assert perfect == {"matthews": 1.0, "accuracy": 1.0}
    assert all(isinstance(v, float) for v in perfect.values())


def test_primary_metric_is_the_first():
    assert primary_metric(get_task("sst2")) == "accuracy"
    assert primary_metric(get_task("mrpc")) == "f1"
    assert primary_metric(get_task("qqp")) == "f1"
    assert primary_metric(get_task("cola")) == "matthews"


def test_layer_speedup():
    assert layer_speedup(np.array([1, 2, 3, 6]), 6) == pytest.approx(6 * 4 / 12)
    assert layer_speedup(np.full(10, 6), 6) == 1.0  # everyone through the full model
    assert layer_speedup(np.ones(5, int), 4) == 4.0  # everyone at the first exit
    assert layer_speedup(np.array([2, 4]), 4) == pytest.approx(4 / 3)
    assert isinstance(layer_speedup(np.array([1, 2]), 2), float)


def test_exit_histogram_counts_layers_one_to_m():
    assert exit_histogram(np.array([1, 1, 2, 4]), 4) == [2, 1, 0, 1]
    assert exit_histogram(np.array([3, 3]), 6) == [0, 0, 2, 0, 0, 0]  # trailing empty layers kept
    histogram = exit_histogram(np.random.default_rng(0).integers(1, 7, 50), 6)
    assert len(histogram) == 6 and sum(histogram) == 50
    assert all(isinstance(c, int) for c in histogram)
