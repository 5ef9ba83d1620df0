"""How long one request to the served model takes, by its number of texts and of characters:
the measurement behind the served model's request limits (``serving.max_texts``,
``serving.max_characters``; ``de3pipe/inference/predict.py`` ``RequestLimits``).

Runs in process what ``mlflow models serve`` runs per request (the input checks, tokenisation,
batched early exit at de3's 2x point, batch 32) on a finished run's checkpoint: requests of
typical test texts of growing count, and requests of long texts (each 10,000 characters, cut to
the model's max length by the tokenizer) of growing total size. Median of 3 timed repeats after
a warm-up. Writes benchmarks/results/serving.json and prints one line per request size.

    python benchmarks/serving.py [--run data/sst2/seed42]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from machine import describe_machine

RESULTS = Path(__file__).parent / "results"
COUNTS = (256, 1024, 2048, 4096)
CHARACTERS = (250_000, 1_000_000, 2_000_000, 4_000_000)
LONG_TEXT = 10_000


def _seconds(predictor, texts: list[str], repeats: int = 3) -> float:
    from de3pipe.inference.predict import check_texts

    def once() -> float:
        start = time.perf_counter()
        predictor.classify(*check_texts(texts, predictor.is_pair))
        return time.perf_counter() - start

    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("data/sst2/seed42"))
    args = parser.parse_args()

    from de3pipe.data.prepare import PreparedData
    from de3pipe.inference.predict import Predictor
    from de3pipe.infra.layout import RunLayout

    run = RunLayout(args.run)
    predictor = Predictor(run.prototyped, run.calibration.thresholds, "de3", "2")
    test = PreparedData.open(run.prepared.folder).split("test")["text_a"].tolist()
    rows = []
    for count in COUNTS:
        texts = (test * (count // len(test) + 1))[:count]
        seconds = _seconds(predictor, texts)
        rows.append({"kind": "texts", "texts": count, "characters": sum(map(len, texts)), "seconds": seconds})
    for characters in CHARACTERS:
        texts = ["a gripping film " * (LONG_TEXT // 16)] * (characters // LONG_TEXT)
        seconds = _seconds(predictor, texts)
        rows.append({"kind": "characters", "texts": len(texts), "characters": sum(map(len, texts)), "seconds": seconds})
    for row in rows:
        print(f"{row['kind']:10s} {row['texts']:5d} texts, {row['characters']:>9,} characters: {row['seconds']:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "serving.json"
    out.write_text(json.dumps({"machine": describe_machine(), "run": str(args.run), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
