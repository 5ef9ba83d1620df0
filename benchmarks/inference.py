"""Inference speed of the batched early-exit engine against the full model (issue: benchmarks §2).

For every finished pipeline run under <results>/<task>/seed<seed>/ (prototyped checkpoint +
calibration; `make bench` takes the study's, results/study), runs `de3pipe speed` on the test split at batch sizes 1, 8, 32, 128 for the de3 and
entropy operating points (1.5x, 2x, 3x targets), and writes benchmarks/results/inference.json:
layer-count speed-up, wall-clock speed-up, their ratio, samples/s, and batch-1 latency per sample
(how DeeBERT/PABEE report speed). Prints one line per measurement.

    python benchmarks/inference.py [--results results/study] [--seeds 1] [--runs DIR ...] [--max-samples 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe_machine

RESULTS = Path(__file__).parent / "results"


def finished_runs(results: Path, seeds: list[int] | None) -> list[Path]:
    from de3pipe.infra.layout import RunLayout

    runs = sorted(folder for folder in results.glob("*/seed*")
                  if RunLayout(folder).calibration.thresholds.is_file() and RunLayout(folder).prototyped.is_dir())
    return [r for r in runs if seeds is None or int(r.name.removeprefix("seed")) in seeds]


def measure(run: Path, batch_sizes: str, strategies: str, repeats: int, max_samples: int | None) -> list[dict]:
    from de3pipe.infra.layout import RunLayout

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speed.json"
        command = [
            sys.executable, "-m", "de3pipe", "speed",
            "--model", str(RunLayout(run).prototyped), "--data", str(RunLayout(run).prepared.folder),
            "--thresholds", str(RunLayout(run).calibration.thresholds),
            "--batch-sizes", batch_sizes, "--strategies", strategies, "--repeats", str(repeats),
            "--out", str(out),
        ] + (["--max-samples", str(max_samples)] if max_samples else [])
        subprocess.run(command, check=True)
        rows = json.loads(out.read_text())
    task, seed = run.parent.name, run.name.removeprefix("seed")
    for row in rows:
        row |= {
            "task": task,
            "seed": int(seed),
            "latency_ms": 1000 * row["early_exit_seconds"] / row["samples"],
            "full_latency_ms": 1000 * row["full_seconds"] / row["samples"],
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("data"), help="results folder of a pipeline config")
    parser.add_argument("--seeds", type=int, nargs="*", help="only these seeds' runs (default: all)")
    parser.add_argument("--runs", nargs="*", type=Path, help="run folders (default: every finished one in --results)")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--strategies", default="de3,entropy")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-samples", type=int, default=None, help="time a seeded subset of the test split")
    args = parser.parse_args()
    runs = args.runs or finished_runs(args.results, args.seeds)
    if not runs:
        sys.exit(f"no finished runs under {args.results}/: run the pipeline first (README, 'Reproduction study')")
    rows = [row for run in runs for row in measure(run, args.batch_sizes, args.strategies, args.repeats, args.max_samples)]
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": describe_machine(), "results": str(args.results), "max_samples": args.max_samples, "repeats": args.repeats, "rows": rows}
    (RESULTS / "inference.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'inference.json'} ({len(rows)} measurements)")


if __name__ == "__main__":
    main()
