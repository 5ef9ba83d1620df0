"""Classify raw texts with a trained, calibrated model using batched early exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from de3pipe.batching import collate, encode_texts
from de3pipe.engine import EarlyExitEngine
from de3pipe.errors import De3Error
from de3pipe.evaluation import frozen_eps, operating_points
from de3pipe.io import read_json
from de3pipe.strategies import lookup
from de3pipe.modeling import load_checkpoint
from de3pipe.tasks import get_task


def read_texts(texts: list[str], file: Path | None) -> list[str]:
    lines = list(texts)
    if file is not None:
        if not file.is_file():
            raise De3Error(f"input file {file} does not exist")
        lines += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise De3Error("no texts given: pass them as arguments or with --file")
    return lines


def predict_texts(
    model_dir: Path, thresholds_path: Path, lines: list[str], strategy_name: str, target: str, batch_size: int
) -> list[dict]:
    model, tokenizer = load_checkpoint(model_dir, require_stage="prototyped")
    frozen = read_json(thresholds_path, what="thresholds file")
    if frozen.get("task") != model.config.task:
        raise De3Error(f"{thresholds_path} was calibrated for {frozen.get('task')}, the model is {model.config.task}")
    points = {(p.name, p.target): p.strategy for p in operating_points(frozen)}
    key = (strategy_name, f"{float(target):g}" if target != "any" else target)
    if key not in points:
        available = ", ".join(f"{n}@{t}" for n, t in points if lookup(n).servable)
        raise De3Error(f"no calibrated point {strategy_name}@{target}x in {thresholds_path}; available: {available}")
    entry = lookup(strategy_name)
    if entry.is_variant:
        raise De3Error(f"{strategy_name} is a study analysis replayed on stored signals; classify with de3 or entropy")
    if entry.analysis_only:
        raise De3Error(f"the {strategy_name} strategy needs gold labels and cannot classify new texts")
    strategy = points[key]
    pair = get_task(model.config.task).is_pair
    text_a, text_b = [], []
    for line in lines:
        parts = line.split("\t")
        if pair and len(parts) != 2:
            raise De3Error(f"{model.config.task} classifies sentence pairs: give 'first<TAB>second', got {line!r}")
        text_a.append(parts[0] if pair else line)
        text_b.append(parts[1] if pair else None)
    features = encode_texts(tokenizer, text_a, text_b if pair else None, model.config.max_length)
    engine = EarlyExitEngine(model, frozen_eps(frozen))
    rows = []
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        result, _ = engine.run(collate(tokenizer, chunk), strategy)
        for i in range(len(chunk)):
            rows.append(
                {
                    "text": lines[start + i],
                    "label": model.config.label_names[int(result.prediction[i])],
                    "exit_layer": int(result.exit_layer[i]),
                    "confidence": float(np.float32(result.confidence[i])),
                }
            )
    return rows
