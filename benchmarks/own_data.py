"""A dataset of your own, measured (issue 23): STS-B's similarity scores binned into three classes
(dissimilar below 2, related below 3.5, similar from 3.5), written as CSV files shaped as the
README's "Your own data" describes, and run through the default recipe with the whole workflow.

Writes ``<out>/train.csv`` (STS-B train), ``<out>/test.csv`` (STS-B dev, the labeled split GLUE
releases) and ``<out>/config.yaml``; runs ``snakemake all`` on it (results in ``<out>/results``);
prints the gate (the full model against the best constant prediction) and de3 against entropy at
matched speed-ups from the report, and writes them to benchmarks/results/own_data.json.

    GLUE_DIR=../shared/glue_data python benchmarks/own_data.py --out /tmp/stsb_classes [--cores 2]

The data stay outside the repository (GLUE's terms); only the figures are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TASK = "sts_classes"
CLASSES = ["dissimilar", "related", "similar"]
EDGES = (2.0, 3.5)  # about a third of STS-B train in each class


def similarity_class(score: float) -> str:
    return CLASSES[sum(score >= edge for edge in EDGES)]


def write_split(source: Path, target: Path) -> dict[str, int]:
    """STS-B's TSV (read without quote handling: some lines hold stray quotes) as a CSV of the two
    sentences and their class; returns the class counts."""
    counts = dict.fromkeys(CLASSES, 0)
    with open(source, encoding="utf-8", newline="") as handle, open(target, "w", encoding="utf-8", newline="") as out:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        writer = csv.writer(out)
        writer.writerow(["sentence1", "sentence2", "similarity"])
        for row in rows:
            label = similarity_class(float(row["score"]))
            counts[label] += 1
            writer.writerow([row["sentence1"], row["sentence2"], label])
    return counts


def write_dataset(glue_dir: Path, out: Path) -> tuple[Path, dict]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {split: write_split(glue_dir / "STS-B" / f"{source}.tsv", out / f"{split}.csv")
              for split, source in (("train", "train"), ("test", "dev"))}
    config = {
        "tasks": [TASK],
        "results": str(out / "results"),
        "tracking": {"enabled": False},
        "datasets": {TASK: {
            "train": str(out / "train.csv"), "test": str(out / "test.csv"), "text": ["sentence1", "sentence2"],
            "label": "similarity", "labels": CLASSES, "metric": "macro_f1",
        }},
    }
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, counts


def figures(summary: dict) -> dict:
    """The gate and the reference's differences against each compared strategy at matched speed-ups."""
    entry = summary["tasks"][TASK]

    def kept(e: dict) -> dict:
        return {f: e[f] for f in ("value", "low", "high", "p", "p_adjusted", "family") if f in e}

    def by_speedup(section: dict, names: tuple[str, ...]) -> dict:
        return {name: {at: kept(e) for at, e in by_at.items() if e} for name, by_at in section.items() if name in names}

    return {
        "metric": entry["metric"],
        "gate": {k: v if isinstance(v, str | bool) else kept(v) for k, v in entry["gate"].items()},
        "matched": by_speedup(entry["matched"], ("de3", "entropy")),
        "de3_minus": by_speedup(entry["differences"], ("entropy", "control_entropy")),
        "per_class": entry.get("per_class"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV files, config and results")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    glue_dir = Path(os.environ.get("GLUE_DIR", ROOT.parent / "shared" / "glue_data"))
    if not (glue_dir / "STS-B" / "train.tsv").is_file():
        print(f"error: no STS-B in {glue_dir}; set GLUE_DIR to the GLUE folder", file=sys.stderr)
        return 2
    out = args.out.resolve()
    config, counts = write_dataset(glue_dir, out)
    print(f"{TASK}: classes {CLASSES} (edges {EDGES}); train {counts['train']}, test {counts['test']}")
    started = time.perf_counter()
    subprocess.run(["snakemake", "all", "--cores", str(args.cores), "--configfile", str(config)], cwd=ROOT, check=True)
    seconds = time.perf_counter() - started
    summary = json.loads((out / "results" / "report" / "summary.json").read_text(encoding="utf-8"))
    result = {"task": TASK, "classes": CLASSES, "edges": EDGES, "counts": counts, "workflow_seconds": round(seconds),
              "cores": args.cores, **figures(summary)}
    path = ROOT / "benchmarks" / "results" / "own_data.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    gate = result["gate"]
    print(f"full model {gate['full_model']['value'] * 100:.1f} against {gate['trivial_predictor']} "
          f"{gate['trivial']['value'] * 100:.1f} ({result['metric']}); learned: {gate['learned']}")
    for name, by_at in result["de3_minus"].items():
        for at, e in by_at.items():
            print(f"de3 - {name} at {at}: {e['value'] * 100:+.1f} [{e['low'] * 100:+.1f}, {e['high'] * 100:+.1f}] "
                  f"p={e.get('p', float('nan')):.3f}")
    print(f"workflow: {seconds / 60:.1f} min on {args.cores} cores; wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
