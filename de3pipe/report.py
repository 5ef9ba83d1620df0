"""The cross-task report: the paper-style main table and metric/speed-up plots.

Input: the ``metrics.json`` of every evaluation (any tasks, any seeds) and the
``test_curves.csv`` beside each. Output: ``report.md`` (strategy x target x task, mean and
95% confidence interval over seeds, with the achieved test speed-up), ``summary.json`` (the
same numbers, machine-readable) and one PNG per task.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from de3pipe.errors import De3Error
from de3pipe.io import atomic_dir, atomic_file, read_json, write_json

STRATEGY_ORDER = ("de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle")
SECONDARY = {"de3": "lam", "pcee": "t"}


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval (None with a single seed)."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), None
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr))
    return float(arr.mean()), float(half)


def _fmt(mean: float, half: float | None, scale: float = 100.0) -> str:
    return f"{mean * scale:.1f}" + (f" ± {half * scale:.1f}" if half is not None else "")


def collect(metrics_files: list[Path]) -> list[dict]:
    runs = []
    for path in metrics_files:
        results = read_json(path, what="evaluation metrics")
        curves_file = path.parent / "test_curves.csv"
        results["_curves"] = pd.read_csv(curves_file) if curves_file.is_file() else None
        runs.append(results)
    if not runs:
        raise De3Error("the report needs at least one evaluation metrics.json")
    return runs


def summarise(runs: list[dict]) -> dict:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_task[run["task"]].append(run)
    summary: dict = {"tasks": {}, "seeds": sorted({run.get("seed") for run in runs})}
    for task, task_runs in sorted(by_task.items()):
        metric = next(iter(task_runs[0]["full_model"]))
        entry: dict = {"metric": metric, "seeds": len(task_runs)}
        entry["full_model"] = mean_ci([r["full_model"][metric] for r in task_runs])
        strategies: dict = {}
        for name in STRATEGY_ORDER:
            targets = task_runs[0]["strategies"].get(name)
            if not targets:
                continue
            strategies[name] = {}
            for target in targets:
                points = [r["strategies"][name][target] for r in task_runs]
                strategies[name][target] = {
                    "metric": mean_ci([p[metric] for p in points]),
                    "speedup": mean_ci([p["speedup"] for p in points]),
                    "unreachable": any(p["calibration_status"] != "ok" for p in points),
                }
        entry["strategies"] = strategies
        summary["tasks"][task] = entry
    return summary


def markdown(summary: dict) -> str:
    tasks = list(summary["tasks"])
    targets = sorted(
        {t for e in summary["tasks"].values() for s in e["strategies"].values() for t in s if t != "any"}, key=float
    )
    lines = [
        "# de3pipe report",
        "",
        f"Seeds: {', '.join(str(s) for s in summary['seeds'])}. Each cell: test metric (×100, mean ± 95% CI over "
        "seeds) and, in brackets, the achieved test layer speed-up. Thresholds were frozen on the validation "
        "split for the target speed-up; † marks a target the strategy cannot reach (the nearest point is used).",
        "",
        "Metrics: " + ", ".join(f"{t}: {summary['tasks'][t]['metric']}" for t in tasks) + ".",
        "",
        "| strategy | target | " + " | ".join(tasks) + " |",
        "|---|---|" + "---|" * len(tasks),
        "| full model | 1× | " + " | ".join(_fmt(*summary["tasks"][t]["full_model"]) for t in tasks) + " |",
    ]
    for target in targets:
        for name in STRATEGY_ORDER:
            cells = []
            for task in tasks:
                point = summary["tasks"][task]["strategies"].get(name, {}).get(target)
                if point is None:
                    cells.append("–")
                    continue
                mark = " †" if point["unreachable"] else ""
                cells.append(f"{_fmt(*point['metric'])} ({point['speedup'][0]:.2f}×){mark}")
            if any(c != "–" for c in cells):
                lines.append(f"| {name} | {target}× | " + " | ".join(cells) + " |")
    oracle = [summary["tasks"][t]["strategies"].get("oracle", {}).get("any") for t in tasks]
    if any(oracle):
        cells = [f"{_fmt(*p['metric'])} ({p['speedup'][0]:.2f}×)" if p else "–" for p in oracle]
        lines.append("| oracle (analysis) | – | " + " | ".join(cells) + " |")
    lines += ["", "Plots of metric against speed-up (test split, one curve per strategy): `plots/<task>.png`.", ""]
    return "\n".join(lines)


def plot_task(task: str, task_runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = dict(zip(STRATEGY_ORDER, plt.get_cmap("tab10").colors, strict=False))
    metric = next(iter(task_runs[0]["full_model"]))
    for name in STRATEGY_ORDER:
        if name == "oracle":
            continue
        for i, run in enumerate(task_runs):
            curves = run["_curves"]
            if curves is None:
                continue
            curve = curves[curves["strategy"] == name]
            knob = SECONDARY.get(name)
            frozen = run["strategies"].get(name, {})
            if knob and frozen:
                # the secondary knob (lambda, t) frozen for the middle target on validation
                middle = list(frozen.values())[len(frozen) // 2]["knobs"].get(knob)
                curve = curve[curve[knob] == middle]
            curve = curve.sort_values("speedup")
            ax.plot(curve["speedup"], curve["metric"] * 100, color=colors[name], alpha=0.8 if i == 0 else 0.3,
                    label=name if i == 0 else None, marker="." if name in ("static", "patience") else None)
        for run in task_runs:
            for point in run["strategies"].get(name, {}).values():
                ax.scatter(point["speedup"], point[metric] * 100, color=colors[name], edgecolor="black", zorder=3, s=28)
    ax.axhline(np.mean([r["full_model"][metric] for r in task_runs]) * 100, color="grey", ls="--", lw=1,
               label="full model")
    ax.set_xlabel("layer speed-up (×)")
    ax.set_ylabel(f"{metric} (test, ×100)")
    ax.set_title(f"{task}: metric against speed-up (dots: frozen operating points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_report(metrics_files: list[Path], out: Path) -> dict:
    runs = collect(metrics_files)
    summary = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "plots", overwrite=True) as tmp:
        for task in summary["tasks"]:
            plot_task(task, [r for r in runs if r["task"] == task], tmp / f"{task}.png")
    with atomic_file(out / "report.md") as handle:
        handle.write(markdown(summary))
    write_json(out / "summary.json", summary)
    return summary
