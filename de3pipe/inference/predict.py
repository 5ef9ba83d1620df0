"""Classify raw texts with a trained, calibrated model using batched early exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from de3pipe.modeling.batching import collate, encode_texts
from de3pipe.inference.engine import EarlyExitEngine
from de3pipe.errors import De3Error
from de3pipe.data.tasks import get_task
from de3pipe.method.operating_points import frozen_eps, read_thresholds, servable_point
from de3pipe.modeling import load_checkpoint


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
        self.is_pair = get_task(self.model.config.task).is_pair

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
