"""Per-class figures (de3pipe/report/per_class.py): each class's recall, by hand and against
sklearn, over seeds; binary tasks get none."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import recall_score

from de3pipe.report.comparison import RunPoints
from de3pipe.report.per_class import class_recall, per_class
from de3pipe.report.tables import _per_class_markdown


def _run(seed, labels, full, de3_prediction, target=2.0) -> RunPoints:
    table = pd.DataFrame({"strategy": ["de3"], "kind": ["target"], "target": [target], "knob_value": [np.nan],
                          "guarantee": [""], "row": [0]})
    exits = np.full((1, len(labels)), 2)
    return RunPoints(seed, np.array(labels), np.arange(len(labels)), np.array(full), 4, table, exits,
                     np.array([de3_prediction]))


def test_class_recall_equals_sklearn_and_an_absent_class_is_nan():
    rng = np.random.default_rng(0)
    labels, prediction = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert class_recall(labels, prediction, 4) == pytest.approx(recall_score(labels, prediction, average=None))
    assert np.isnan(class_recall(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)[2])


def test_per_class_recall_over_seeds_by_hand():
    names = ["low", "mid", "high"]
    runs = [
        _run(1, [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2]),  # de3: 1/2, 2/2, 1/2
        _run(2, [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 2], [0, 0, 1, 0, 2, 2]),  # de3: 2/2, 1/2, 2/2; full 1/2 for class 0
    ]
    classes = per_class(runs, names, ["de3", "entropy"], 2.0)
    assert classes["classes"] == names and classes["support"] == [2, 2, 2] and classes["target"] == 2.0
    assert classes["recall"]["full model"] == pytest.approx([0.75, 1.0, 1.0])
    assert classes["recall"]["de3"] == pytest.approx([0.75, 0.75, 0.75])
    assert "entropy" not in classes["recall"]  # no point at 2x in these runs: left out, not guessed
    table = "\n".join(_per_class_markdown(["grades"], [{"per_class": classes}]))
    assert "| class | n | full model | de3 2× |" in table and "| low | 2 | 75.0 | 75.0 |" in table
    assert _per_class_markdown(["sst2"], [{}]) == []


def test_binary_tasks_have_no_per_class_section_and_unnamed_classes_get_numbers():
    binary = [_run(1, [0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 0, 0])]
    assert per_class(binary, ["no", "yes"], ["de3"], 2.0) is None
    three = [_run(1, [0, 1, 2, 2], [0, 1, 2, 1], [0, 1, 2, 2])]
    assert per_class(three, ["a", "b"], ["de3"], 2.0)["classes"] == ["a", "b", "2"]
    declared = per_class([_run(1, [0, 1, 0, 1], [0, 1, 0, 0], [0, 1, 1, 1])], ["a", "b", "c"], ["de3"], 2.0)
    assert declared["recall"]["de3"] == [0.5, 1.0, None]  # a declared class the test split lacks
