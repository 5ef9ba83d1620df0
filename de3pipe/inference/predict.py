"""Classify raw texts with a trained, calibrated model using batched early exit.

One set of input rules serves ``de3pipe predict``, the Python API and the MLflow model
(``serving.py``): only strings are texts (a sentence pair is two strings), an empty or
whitespace-only string is a text like any other, an empty request gets an empty answer, and a
request may hold at most :class:`RequestLimits` texts and characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from de3pipe.data.tasks import get_task
from de3pipe.errors import De3Error
from de3pipe.inference.engine import EarlyExitEngine
from de3pipe.method.operating_points import frozen_eps, read_thresholds, servable_point
from de3pipe.modeling import load_checkpoint
from de3pipe.modeling.batching import collate, encode_texts


@dataclass(frozen=True)
class RequestLimits:
    """The most one request may ask: beyond, it is refused at once instead of running for minutes
    (the config's ``serving`` section; defaults measured on 2 cores: BENCHMARKS.md, "Serving limits")."""

    max_texts: int
    max_characters: int


def _json_kind(value: Any) -> str:
    """What a client sent, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_texts(inputs: Any, is_pair: bool, limits: RequestLimits | None = None) -> tuple[list[str], list[str] | None]:
    """The texts of a request (first texts, second texts for pairs), or one line naming the
    first offending position and what was expected; nothing is dropped silently."""
    expected = "a pair of two strings [first, second]" if is_pair else "a string"
    if not isinstance(inputs, list | tuple):
        raise De3Error(f"the input must be a list of texts, each {expected}; got {_json_kind(inputs)}")
    for position, item in enumerate(inputs):
        good = (isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)
                if is_pair else isinstance(item, str))
        if not good:
            raise De3Error(f"input {position}: expected {expected}, got {_json_kind(item)}; the request was not "
                           "classified (send only strings)")
    if limits is not None:
        if len(inputs) > limits.max_texts:
            raise De3Error(f"the request holds {len(inputs)} texts, more than the limit of {limits.max_texts}; "
                           "split it into smaller requests")
        characters = sum(len(x) for item in inputs for x in (item if is_pair else [item]))
        if characters > limits.max_characters:
            raise De3Error(f"the request holds {characters:,} characters, more than the limit of "
                           f"{limits.max_characters:,}; split it into smaller requests")
    if is_pair:
        return [a for a, _ in inputs], [b for _, b in inputs]
    return list(inputs), None


def read_texts(texts: list[str], file: Path | None) -> list[str]:
    lines = list(texts)
    if file is not None:
        if not file.is_file():
            raise De3Error(f"input file {file} does not exist")
        lines += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise De3Error("no texts given: pass them as arguments or with --file")
    return lines


class Predictor:
    """A calibrated model at one operating point, loaded once, classifying texts with batched early
    exit (the CLI's `predict` and the MLflow model both use it)."""

    def __init__(self, model_dir: Path, thresholds_path: Path, strategy_name: str = "de3", target: str = "2"):
        self.model, self.tokenizer = load_checkpoint(model_dir, require_stage="prototyped")
        frozen = read_thresholds(thresholds_path)
        if frozen.get("task") != self.model.config.task:
            raise De3Error(f"{thresholds_path} was calibrated for {frozen.get('task')}, the model is {self.model.config.task}")
        self.strategy = servable_point(frozen, thresholds_path, strategy_name, target).strategy
        self.engine = EarlyExitEngine(self.model, frozen_eps(frozen))
        pair = self.model.config.pair
        self.is_pair = pair if pair is not None else get_task(self.model.config.task).is_pair

    def split_pairs(self, lines: list[str]) -> tuple[list[str], list[str] | None]:
        """Texts as given on the command line: 'first<TAB>second' for sentence-pair tasks."""
        if not self.is_pair:
            return list(lines), None
        pairs = [line.split("\t") for line in lines]
        for line, parts in zip(lines, pairs, strict=True):
            if len(parts) != 2:
                raise De3Error(f"{self.model.config.task} classifies sentence pairs: give 'first<TAB>second', got {line!r}")
        return [a for a, _ in pairs], [b for _, b in pairs]

    def classify(self, text_a: list[str], text_b: list[str] | None = None, batch_size: int = 32) -> list[dict]:
        """Label, exit layer and confidence of each text (or pair)."""
        if self.is_pair and text_b is None:
            raise De3Error(f"{self.model.config.task} classifies sentence pairs: give a second text for each")
        if self.is_pair:
            if len(text_b) != len(text_a):
                raise De3Error(f"{len(text_a)} first texts but {len(text_b)} second texts; give one pair each")
            check_texts([list(pair) for pair in zip(text_a, text_b, strict=True)], True)
        else:
            check_texts(text_a, False)
        if not text_a:
            return []
        features = encode_texts(self.tokenizer, text_a, text_b if self.is_pair else None, self.model.config.max_length)
        rows = []
        for start in range(0, len(features), batch_size):
            chunk = features[start : start + batch_size]
            result, _ = self.engine.run(collate(self.tokenizer, chunk), self.strategy)
            rows += [
                {
                    "label": self.model.config.label_names[int(result.prediction[i])],
                    "exit_layer": int(result.exit_layer[i]),
                    "confidence": float(np.float32(result.confidence[i])),
                }
                for i in range(len(chunk))
            ]
        return rows


def predict_texts(
    model_dir: Path, thresholds_path: Path, lines: list[str], strategy_name: str, target: str, batch_size: int
) -> list[dict]:
    predictor = Predictor(model_dir, thresholds_path, strategy_name, target)
    rows = predictor.classify(*predictor.split_pairs(lines), batch_size=batch_size)
    return [{"text": line} | row for line, row in zip(lines, rows, strict=True)]
