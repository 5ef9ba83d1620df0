"""Coverage of the report's interval for a mean over seeds (issue 21): simulated studies of a paired
accuracy difference with a seed effect and one shared test set (``tests/helpers.paired_seed_study``:
true difference 0.02, 400 test examples), each analysed three ways:

- **report**: the report's interval (``Design.combine``): the test bootstrap with the seeds held fixed
  plus the seeds' standard error times Student-t draws on S - 1 degrees of freedom;
- **beyond-test**: the same, with the seed variance reduced by the per-seed test noise it already
  holds (the bootstrap's across-seed variance), so that noise is not counted twice;
- **old**: the previous protocol, the seeds resampled with replacement along with the examples.

Prints and writes benchmarks/results/seed_coverage.json: coverage of the true difference (nominal
0.95) and the mean interval width, per number of seeds and seed effect.

    python benchmarks/seed_coverage.py [--studies 400] [--replicates 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the simulator lives with the tests that check the same property

from de3pipe.config import ReportConfig  # noqa: E402
from de3pipe.report.comparison import Design, RunPoints, weighted_metric  # noqa: E402
from tests.helpers import paired_seed_study  # noqa: E402

TRUE_DIFFERENCE = 0.02
RESULTS = Path(__file__).parent / "results"


def _run(labels: np.ndarray, seed: int) -> RunPoints:
    import pandas as pd

    table = pd.DataFrame({"strategy": [], "kind": [], "target": [], "knob_value": [], "row": []})
    return RunPoints(seed, labels, np.arange(len(labels)), labels, 6, table, np.zeros((0, len(labels))),
                     np.zeros((0, len(labels))))


def intervals(labels, preds, design: Design) -> dict[str, tuple[float, float]]:
    per_seed = [weighted_metric("accuracy", labels, p, design.columns(s)) for s, p in enumerate(preds)]
    differences = np.stack([m[0] - m[1] for m in per_seed])
    values, replicates = differences[:, 0], differences[:, 1:]
    report = design.combine(values, replicates, paired=True)
    n_seeds, value = len(values), float(values.mean())
    test = replicates.mean(0) - value
    noise = (replicates - values[:, None]).var(0, ddof=1).mean() if n_seeds > 1 else 0.0
    beyond = max(0.0, float(values.var(ddof=1)) - noise) if n_seeds > 1 else 0.0
    low, high = value + np.quantile(test + np.sqrt(beyond / n_seeds) * design.seed_t, [0.025, 0.975])
    draws = np.random.default_rng(len(labels)).integers(0, n_seeds, (replicates.shape[1], n_seeds))
    old = replicates[draws, np.arange(replicates.shape[1])[:, None]].mean(1)
    return {"report": (report.low, report.high), "beyond-test": (float(low), float(high)),
            "old": tuple(float(x) for x in np.quantile(old, [0.025, 0.975]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for n_seeds in (3, 5, 10):
        for seed_sd in (0.0, 0.015, 0.04):
            rng = np.random.default_rng(1000 * n_seeds + int(seed_sd * 1000))
            cfg = ReportConfig(bootstrap_samples=args.replicates)
            hits: dict[str, list[bool]] = {}
            widths: dict[str, list[float]] = {}
            for study in range(args.studies):
                labels, preds = paired_seed_study(rng, n_seeds, seed_sd)
                design = Design.for_runs([_run(labels, s) for s in range(n_seeds)],
                                         cfg.model_copy(update={"bootstrap_seed": study}))
                for method, (low, high) in intervals(labels, preds, design).items():
                    hits.setdefault(method, []).append(low <= TRUE_DIFFERENCE <= high)
                    widths.setdefault(method, []).append(high - low)
            row = {"seeds": n_seeds, "seed_sd": seed_sd,
                   **{f"coverage.{m}": float(np.mean(h)) for m, h in hits.items()},
                   **{f"width.{m}": float(np.mean(w)) for m, w in widths.items()}}
            rows.append(row)
            print(f"S={n_seeds:2d} seed sd {seed_sd:.3f}: " + ", ".join(
                f"{m} {row[f'coverage.{m}']:.3f} (width {row[f'width.{m}'] * 100:.1f} pts)" for m in hits), flush=True)
    out = {"studies": args.studies, "replicates": args.replicates, "true_difference": TRUE_DIFFERENCE,
           "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "seed_coverage.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
