"""Which settings make results machine-dependent? The tiny config (config/test.yaml) run from
scratch in fp32 and in bf16 autocast, each with 1 and 2 threads, on this machine; every run's
headline metrics compared with every other's, and with tests/reference/tiny_headline.json (the
exact-mode figures CI checks, committed from another session's machine). With --default, the
default run in data/ against the headline metrics committed at --against (HEAD by default) as well, on
the figures both have.

Writes benchmarks/results/reruns.json and prints, per pair, how many headline figures differ and
the largest metric (points) and speed-up (%) difference. The tolerance `de3pipe rerun-check`
states (de3pipe/infra/reruns.py, ACROSS_MACHINES) comes from these figures.

    python benchmarks/reruns.py [--default [--against REV]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from machine import describe_machine

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
MODES = [("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)]


def run_tiny(precision: str, threads: int) -> Path:
    """The tiny config from scratch as CI runs it (tests/pipeline: config/test.yaml as the project's
    only config, `snakemake all --cores N`), in a copy of the workflow under
    results/reruns/<precision>-t<threads>/; returns its results folder."""
    project = reused(precision, threads).parent / "project"
    if project.exists():
        shutil.rmtree(project)
    from de3pipe.infra.workflow import copy_workflow

    copy_workflow(ROOT, project)
    tiny = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    tiny["finetune"]["precision"] = precision
    tiny["tracking"] = {"enabled": False}
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    subprocess.run(["snakemake", "all", "--cores", str(threads), "--forceall", "--quiet", "all"], cwd=project,
                   check=True)
    results = reused(precision, threads)
    if results.exists():
        shutil.rmtree(results)
    shutil.move(project / "data", results)
    shutil.rmtree(project)
    return results


def reused(precision: str, threads: int) -> Path:
    """Where a tiny run's results folder is kept."""
    return ROOT / "results" / "reruns" / f"{precision}-t{threads}" / "data"


def compared(reference: dict, current: dict) -> dict:
    from de3pipe.infra import reruns

    rows = reruns.compare(reference, current)
    metrics = [abs(r.delta) for r in rows if r.delta is not None and r.field in reruns.METRIC_FIELDS]
    speedups = [abs(r.delta) for r in rows if r.delta is not None and r.field not in reruns.METRIC_FIELDS]
    return {"figures": len(rows), "differing": sum(1 for r in rows if r.delta not in (None, 0.0)),
            "missing": sum(1 for r in rows if r.delta is None),
            "max_metric_points": max(metrics, default=0.0) * 100, "max_speedup_percent": max(speedups, default=0.0) * 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", action="store_true", help="also compare data/ with the committed default run")
    parser.add_argument("--reuse", action="store_true", help="compare the tiny runs already in results/reruns/")
    parser.add_argument("--against", default="HEAD", help="the revision whose committed default run --default reads "
                        "(one made on another machine, for a comparison across machines)")
    args = parser.parse_args()
    from de3pipe.infra import reruns

    figures = {f"{p}-t{t}": reruns.headline_files(reused(p, t) if args.reuse and reused(p, t).is_dir() else run_tiny(p, t))
               for p, t in MODES}
    figures["committed reference (tests/reference)"] = json.loads(
        (ROOT / "tests" / "reference" / "tiny_headline.json").read_text())
    pairs = {f"{a} vs {b}": compared(figures[a], figures[b]) for a, b in itertools.combinations(figures, 2)}
    if args.default:
        committed = reruns.committed_headline("data", args.against)
        here = {name: record for name, record in reruns.headline_files(ROOT / "data").items() if name in committed}
        pairs[f"default run: committed ({args.against}) vs data/"] = compared(committed, here)
    for name, row in pairs.items():
        print(f"{name:55s} {row['differing']:3d}/{row['figures']} differ, max {row['max_metric_points']:.2f} points, "
              f"{row['max_speedup_percent']:.2f}% speed-up" + (f", {row['missing']} missing" if row["missing"] else ""))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "reruns.json"
    out.write_text(json.dumps({"machine": describe_machine(), "pairs": pairs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
