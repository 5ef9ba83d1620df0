"""Where batched early exit spends its time (issue 24): each part of the engine's work per batch,
timed by wrapping the calls the engine makes (the engine itself is not changed), at each batch size,
for the full model (``run_full``: every layer, the last head) and for de3 and entropy at their points
calibrated for one target.

Parts: tokenisation (encode + collate, timed on its own), embedding, the transformer layers, the exit
heads (pooler + classifier), de3's prototype map and distances, the signals (softmax, entropy, DR and
their copy to numpy), the exit rule, the per-layer attention context (rebuilt after each compaction),
and the rest of the engine's loop (row compaction, padding trimming, Python), which is the total minus
the parts. Shares are of the early-exit run's total; "per layer" divides by the layers run.

    python benchmarks/profile_inference.py [--run data/sst2/seed42] [--target 2] [--batch-sizes 1,8,32,128]
        [--max-samples 256] [--repeats 3] [--out benchmarks/results/profile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from machine import describe_machine

PARTS = ("embed", "layers", "exit_heads", "de3_signal", "signals", "exit_rule", "layer_context")


class Clock:
    """Seconds accumulated per part while ``active``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner, name: str, part: str):
        """Replace ``owner.name`` by a timed call; returns how to put it back."""
        original = getattr(owner, name)
        own = name in vars(owner)  # else a method the owner finds on its class

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start
                self.calls[part] += 1

        setattr(owner, name, timed)
        return (lambda: setattr(owner, name, original)) if own else (lambda: delattr(owner, name))


@contextmanager
def instrumented(model, strategy, clock: Clock):
    """Wrap the model's and the strategy's calls the engine makes; restore them afterwards."""
    import de3pipe.inference.engine as engine_module

    wrapped = [(model, "embed", "embed"), (model, "run_layer", "layers"), (model, "exit_head", "exit_heads"),
               (model, "embed_prototype_space", "de3_signal"), (model, "distances", "de3_signal"),
               (model, "layer_context", "layer_context"), (engine_module, "layer_signals", "signals")]
    if strategy is not None:  # a frozen dataclass: its class's rule is timed (only this strategy runs meanwhile)
        wrapped.append((type(strategy), "exits", "exit_rule"))
    restores = [clock.wrap(owner, name, part) for owner, name, part in wrapped]
    try:
        yield
    finally:
        for restore in reversed(restores):
            restore()


def profile(run: Path, target: str, batch_size: int, max_samples: int | None, repeats: int) -> list[dict]:
    from de3pipe.data.prepare import PreparedData
    from de3pipe.inference.engine import EarlyExitEngine
    from de3pipe.inference.wallclock import timing_inputs
    from de3pipe.infra.layout import RunLayout
    from de3pipe.method.operating_points import frozen_eps, operating_points, read_thresholds
    from de3pipe.modeling.batching import collate, encode_split, length_sorted_batches

    layout = RunLayout(run)
    thresholds = read_thresholds(layout.calibration.thresholds)
    network, tokenizer, encoded = timing_inputs(layout.prototyped, layout.prepared.folder, "test", max_samples)
    engine = EarlyExitEngine(network, frozen_eps(thresholds))
    points = {p.name: p for p in operating_points(thresholds) if p.target.key == target and p.name in ("de3", "entropy")}
    batch_rows = list(length_sorted_batches(encoded, batch_size))

    # Tokenisation as a request pays it: the same texts encoded again, then padded into the batches.
    frame = PreparedData.open(layout.prepared.folder).split("test")
    frame = frame[frame["idx"].isin(set(encoded.idx.tolist()))]
    start = time.perf_counter()
    again = encode_split(frame, tokenizer, network.config.max_length)
    batches = [collate(tokenizer, [again.features[i] for i in rows]) for rows in batch_rows]
    tokenise_seconds = time.perf_counter() - start

    rows = []
    for name, strategy in [("full model", None), *((n, p.strategy) for n, p in points.items())]:
        best = None
        for attempt in range(repeats + 1):  # the first is a warm-up
            clock = Clock()
            layers_run = 0
            with instrumented(network, strategy, clock):
                start = time.perf_counter()
                for batch in batches:
                    if strategy is None:  # the ordinary model: every layer, the last head only
                        engine.run_full(batch)
                        layers_run += network.num_layers * len(batch["input_ids"])
                    else:
                        result, _ = engine.run(batch, strategy)
                        layers_run += int(result.exit_layer.sum())
                total = time.perf_counter() - start
            if attempt and (best is None or total < best[0]):
                best = (total, dict(clock.seconds), dict(clock.calls), layers_run)
        total, seconds, calls, layers_run = best
        seconds["loop_rest"] = total - sum(seconds.values())
        steps = calls["layers"]  # one batch through one layer
        rows.append({
            "strategy": name, "target": target if strategy is not None else None, "batch_size": batch_size,
            "samples": len(encoded), "total_seconds": total, "layer_steps": steps,
            "layer_speedup": network.num_layers * len(encoded) / layers_run, "tokenise_seconds": tokenise_seconds,
            "seconds": seconds, "share": {k: v / total for k, v in seconds.items()},
            "per_step_ms": {k: 1000 * v / steps for k, v in seconds.items()},
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("data/sst2/seed42"))
    parser.add_argument("--target", default="2")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--max-samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile.json")
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        for row in profile(args.run, args.target, size, args.max_samples, args.repeats):
            results.append(row)
            parts = ", ".join(f"{k} {v * 100:.0f}%" for k, v in sorted(row["share"].items(), key=lambda kv: -kv[1]))
            print(f"batch {size:>3} {row['strategy']:<10} {row['layer_speedup']:.2f}x layers "
                  f"{row['total_seconds'] * 1000:8.1f} ms (tokenise {row['tokenise_seconds'] * 1000:.0f} ms): {parts}")
    run = os.path.relpath(args.run.resolve(), Path(__file__).resolve().parent.parent)  # as the repository names it
    args.out.write_text(json.dumps({"machine": describe_machine(), "run": run, "target": args.target,
                                    "max_samples": args.max_samples, "rows": results}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
