"""Classifying raw texts (de3pipe/inference/predict.py): reading the texts, and the Predictor on a
tiny prototyped checkpoint with thresholds calibrated on synthetic signals of the same depth."""

import re

import numpy as np
import pytest
import torch

from de3pipe.config import CalibrationConfig, ModelConfig
from de3pipe.errors import De3Error
from de3pipe.inference.predict import Predictor, predict_texts, read_texts
from de3pipe.method.calibration import calibrate
from de3pipe.method.operating_points import write_thresholds
from de3pipe.modeling import MultiExitModel
from de3pipe.modeling.batching import collate, encode_texts
from tests.helpers import TEXTS, prototyped_tiny_model
from tests.method.test_calibration import random_signals

NUM_LAYERS = 4  # the tiny model's depth


def calibrated(task: str) -> dict:
    signals = random_signals(m=NUM_LAYERS)
    signals.meta["task"] = task
    thresholds, _ = calibrate(signals, CalibrationConfig(targets=[1.5, 2.0], n_thresholds=20), 1e-8)
    return thresholds


def checkpoint(tiny_model_dir, folder, task: str):
    """A saved prototyped checkpoint of ``task`` and its thresholds.json."""
    model, tokenizer = prototyped_tiny_model(tiny_model_dir, task=task)
    model.save_pretrained(folder / "model", tokenizer)
    write_thresholds(folder / "thresholds.json", calibrated(task))
    return folder / "model", folder / "thresholds.json"


@pytest.fixture(scope="module")
def sst2(tiny_model_dir, tmp_path_factory):
    return checkpoint(tiny_model_dir, tmp_path_factory.mktemp("sst2"), "sst2")


# ---- read_texts ----

def test_read_texts_from_arguments():
    assert read_texts(["a good film", "bad"], None) == ["a good film", "bad"]


def test_read_texts_from_a_file_after_the_arguments(tmp_path):
    file = tmp_path / "in.txt"
    file.write_text("first line\n\n   \nsecond\tpart\nthird\n", encoding="utf-8")
    assert read_texts([], file) == ["first line", "second\tpart", "third"]
    assert read_texts(("given",), file) == ["given", "first line", "second\tpart", "third"]


def test_read_texts_missing_file(tmp_path):
    with pytest.raises(De3Error, match=r"^input file .*absent\.txt does not exist$"):
        read_texts(["a"], tmp_path / "absent.txt")


def test_read_texts_nothing_given(tmp_path):
    with pytest.raises(De3Error, match="no texts given: pass them as arguments or with --file"):
        read_texts([], None)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(De3Error, match="no texts given"):
        read_texts([], blank)


# ---- the predictor ----

def test_labels_exit_layers_and_confidences(sst2):
    predictor = Predictor(*sst2, "de3", "2")
    rows = predictor.classify(TEXTS)
    assert len(rows) == len(TEXTS)
    assert {row["label"] for row in rows} <= {"negative", "positive"}
    assert all(1 <= row["exit_layer"] <= NUM_LAYERS for row in rows)
    assert all(0.5 <= row["confidence"] <= 1.0 for row in rows)  # the top probability of two classes
    assert all(isinstance(row["exit_layer"], int) and isinstance(row["confidence"], float) for row in rows)


def test_static_point_exits_where_it_was_frozen_with_that_layers_prediction(sst2):
    """static@2x on a 4-layer model is k = 2: every text leaves at layer 2 with layer 2's argmax."""
    predictor = Predictor(*sst2, "static", "2")
    assert predictor.strategy.knobs() == {"k": 2}
    rows = predictor.classify(TEXTS)
    assert [row["exit_layer"] for row in rows] == [2] * len(TEXTS)
    model, tokenizer = predictor.model, predictor.tokenizer
    batch = collate(tokenizer, encode_texts(tokenizer, TEXTS, None, model.config.max_length))
    with torch.no_grad():
        logits, _ = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    probs = torch.softmax(logits[1].float(), -1).numpy()
    assert [row["label"] for row in rows] == [("negative", "positive")[k] for k in probs.argmax(-1)]
    assert [row["confidence"] for row in rows] == pytest.approx(probs.max(-1).tolist(), abs=1e-5)


def test_batch_size_does_not_change_the_answers(sst2):
    predictor = Predictor(*sst2, "entropy", "1.5")
    whole = predictor.classify(TEXTS, batch_size=32)
    pieces = predictor.classify(TEXTS, batch_size=5)
    assert [(r["label"], r["exit_layer"]) for r in whole] == [(r["label"], r["exit_layer"]) for r in pieces]
    assert [r["confidence"] for r in whole] == pytest.approx([r["confidence"] for r in pieces], abs=1e-5)


def test_predict_texts_keeps_each_text_with_its_row(sst2):
    rows = predict_texts(*sst2, TEXTS[:3], "de3", "2", batch_size=2)
    assert [row["text"] for row in rows] == TEXTS[:3]
    assert list(rows[0]) == ["text", "label", "exit_layer", "confidence"]


def test_thresholds_of_another_task_are_refused(sst2, tmp_path):
    model_dir, _ = sst2
    other = tmp_path / "rte.json"
    write_thresholds(other, calibrated("rte"))
    with pytest.raises(De3Error, match=f"^{other} was calibrated for rte, the model is sst2$"):
        Predictor(model_dir, other)


def test_an_uncalibrated_point_is_refused(sst2):
    with pytest.raises(De3Error, match=r"no calibrated point de3@3x .*available: de3@1.5, de3@2"):
        Predictor(*sst2, "de3", "3")
    with pytest.raises(De3Error, match="needs gold labels"):
        Predictor(*sst2, "oracle", "any")


def test_a_finetuned_checkpoint_is_refused(tiny_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    model.config.stage = "finetuned"
    model.save_pretrained(tmp_path / "model", tokenizer)
    write_thresholds(tmp_path / "t.json", calibrated("sst2"))
    with pytest.raises(De3Error, match="stage-1 .*run `de3pipe prototypes`"):
        Predictor(tmp_path / "model", tmp_path / "t.json")


def test_sentence_pair_tasks_split_on_a_tab(tiny_model_dir, tmp_path):
    predictor = Predictor(*checkpoint(tiny_model_dir, tmp_path, "rte"), "de3", "2")
    first, second = predictor.split_pairs(["a man sleeps\tsomeone rests", "it rains\tthe sun shines"])
    assert first == ["a man sleeps", "it rains"] and second == ["someone rests", "the sun shines"]
    rows = predictor.classify(first, second)
    assert {row["label"] for row in rows} <= {"entailment", "not_entailment"}
    with pytest.raises(De3Error, match="rte classifies sentence pairs: give 'first<TAB>second', got 'no tab here'"):
        predictor.split_pairs(["a\tb", "no tab here"])
    with pytest.raises(De3Error, match="give a second text for each"):
        predictor.classify(["only one"])


def test_single_sentence_tasks_keep_tabs_in_the_text(sst2):
    predictor = Predictor(*sst2)
    assert predictor.split_pairs(["a\tb", "c"]) == (["a\tb", "c"], None)
    rows = predictor.classify(["a\tb"])
    assert len(rows) == 1 and np.isfinite(rows[0]["confidence"])


# ---- the input rules shared with the served model (check_texts) ----

def test_only_strings_are_texts_and_the_first_offender_is_named(sst2):
    predictor = Predictor(*sst2, "de3", "2")
    for texts, message in (([None], "input 0: expected a string, got null"),
                           (["fine", 123], "input 1: expected a string, got a number (123)"),
                           (["fine", "also fine", True], "input 2: expected a string, got a boolean (true)"),
                           (["fine", {"text": "x"}], "input 1: expected a string, got an object")):
        with pytest.raises(De3Error, match=re.escape(message)):
            predictor.classify(texts)


def test_empty_requests_and_blank_texts(sst2):
    predictor = Predictor(*sst2, "de3", "2")
    assert predictor.classify([]) == []
    rows = predictor.classify(["", "   ", "a gripping film"])
    assert len(rows) == 3 and all(row["label"] in ("negative", "positive") for row in rows)


def test_request_limits():
    from de3pipe.inference.predict import RequestLimits, check_texts

    limits = RequestLimits(max_texts=2, max_characters=10)
    assert check_texts(["abc", "defg"], False, limits) == (["abc", "defg"], None)
    with pytest.raises(De3Error, match="holds 3 texts, more than the limit of 2"):
        check_texts(["a", "b", "c"], False, limits)
    with pytest.raises(De3Error, match="holds 11 characters, more than the limit of 10"):
        check_texts(["abcdef", "ghijk"], False, limits)
    assert check_texts([["ab", "cd"]], True, limits) == (["ab"], ["cd"])
    with pytest.raises(De3Error, match=re.escape("input 0: expected a pair of two strings [first, second], got a list of 3")):
        check_texts([["a", "b", "c"]], True, limits)
    with pytest.raises(De3Error, match="the input must be a list of texts"):
        check_texts("one text", False, limits)


def test_a_dataset_of_your_own_predicts_its_label_names_without_its_config(tiny_model_dir, tmp_path):
    """The served or command-line model of a dataset of your own runs where no config declares the
    dataset: the checkpoint itself says it takes pairs and names its five classes."""
    from de3pipe.config import DatasetConfig
    from de3pipe.data.tasks import own_task, register_datasets

    names = ["anger", "fear", "joy", "love", "sadness"]
    dataset = DatasetConfig(train="x.csv", text=["context", "reply"], labels=names)
    register_datasets({"moods": dataset})
    try:
        model, tokenizer = MultiExitModel.from_base(str(tiny_model_dir), own_task("moods", dataset), ModelConfig())
        model.config.stage = "prototyped"
        model.save_pretrained(tmp_path / "model", tokenizer)
        write_thresholds(tmp_path / "thresholds.json", calibrated("moods"))
    finally:
        register_datasets({})
    predictor = Predictor(tmp_path / "model", tmp_path / "thresholds.json", "de3", "2")
    rows = predictor.classify(*predictor.split_pairs(["i lost my keys\toh no", "sunny day\tlovely"]))
    assert len(rows) == 2 and {row["label"] for row in rows} <= set(names)
    with pytest.raises(De3Error, match="moods classifies sentence pairs"):
        predictor.split_pairs(["no tab"])
