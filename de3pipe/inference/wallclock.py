"""Wall-clock timing of batched early exit at frozen operating points (evaluate and speed)."""

from __future__ import annotations

from pathlib import Path

from de3pipe.errors import De3Error
from de3pipe.infra.io import write_json
from de3pipe.method.operating_points import frozen_eps, operating_points, read_thresholds
from de3pipe.method.strategies import lookup


def timing_inputs(model: Path, data: Path, split: str, max_samples: int | None = None):
    """The checkpoint, its tokenizer and the encoded split (or a seeded subset) that timings run on."""
    from de3pipe.modeling.batching import encode_split
    from de3pipe.data.prepare import PreparedData
    from de3pipe.modeling import load_checkpoint

    network, tokenizer = load_checkpoint(model, require_stage="prototyped")
    frame = PreparedData.open(data).split(split)
    if max_samples is not None and max_samples < len(frame):
        frame = frame.sample(max_samples, random_state=0).sort_index()
    return network, tokenizer, encode_split(frame, tokenizer, network.config.max_length)


def measure_points(network, tokenizer, encoded, thresholds: dict, strategies, batch_size: int, repeats: int) -> list[dict]:
    """Layer and wall-clock speed-up of each named frozen point of ``strategies`` against the full
    model on the same batches; the early-exit engine uses the thresholds' own eps."""
    from de3pipe.inference.engine import EarlyExitEngine, measure_wallclock

    engine = EarlyExitEngine(network, frozen_eps(thresholds))
    points = [p for p in operating_points(thresholds) if p.name in set(strategies)]
    for name in strategies:
        if not lookup(name).servable:
            raise De3Error(f"{name} cannot run live (a study variant replayed on stored signals, or analysis-only); "
                           "time de3, entropy or another servable strategy")
        if not any(p.name == name for p in points):
            calibrated = sorted({p.name for p in operating_points(thresholds) if lookup(p.name).servable})
            raise De3Error(f"the thresholds file has no calibrated point of {name}; calibrated: {', '.join(calibrated)}")
    rows = measure_wallclock(engine, tokenizer, encoded, [p.strategy for p in points], batch_size, repeats)
    out = []
    for point, row in zip(points, rows, strict=True):
        row["ratio"] = row["wallclock_speedup"] / row["layer_speedup"]
        out.append({"strategy_name": point.name, "target": point.target.key, **row})
    return out


def measure_speed(model: Path, data: Path, thresholds: Path, split: str, batch_sizes: list[int], strategies: list[str],
                  repeats: int, max_samples: int | None = None, out: Path | None = None) -> list[dict]:
    """``de3pipe speed``: layer and wall-clock speed-ups of the named points of ``strategies`` at
    each batch size, against the full model on the same batches; written to ``out`` when given."""
    frozen = read_thresholds(thresholds)
    network, tokenizer, encoded = timing_inputs(model, data, split, max_samples)
    rows = [row for size in batch_sizes
            for row in measure_points(network, tokenizer, encoded, frozen, strategies, size, repeats)]
    if out is not None:
        write_json(out, rows)
    return rows
