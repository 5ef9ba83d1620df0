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
AUC_MAX_SPEEDUP = 3.0  # the area is taken over layer speed-ups 1x..3x (or less where a strategy stops)


def frontier_area(speedup: np.ndarray, metric: np.ndarray, upper: float) -> float:
    """Mean metric over layer speed-ups [1, upper] along a strategy's test curve: at each speed-up
    s the best metric any of its knob settings reaches at speed-up >= s (its Pareto frontier), so
    strategies with a second knob (lambda, t) are not penalised for their weaker settings."""
    grid = np.linspace(1.0, upper, 201)
    order = np.argsort(-speedup)
    best_at_or_above = np.maximum.accumulate(metric[order])  # over points sorted by falling speed-up
    # the first point (in falling order) whose speed-up is still >= s is the last one with index < count
    count = np.searchsorted(-speedup[order], -grid, side="right")
    if (count == 0).any():
        raise ValueError(f"the curve stops at {speedup.max():.2f}x, below {upper:.2f}x")
    values = best_at_or_above[count - 1]
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)) / (upper - 1.0))


def _curve_range(run: dict) -> tuple[list[str], float]:
    """The strategies on a run's test curves and the speed-up range all of them reach (<= 3x)."""
    curves = run["_curves"]
    names = [n for n in STRATEGY_ORDER if n != "oracle" and (curves["strategy"] == n).any()]
    upper = min([AUC_MAX_SPEEDUP] + [curves.loc[curves["strategy"] == n, "speedup"].max() for n in names])
    return names, float(upper)


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


def _curve_points(run: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    curve = run["_curves"][run["_curves"]["strategy"] == name]
    return curve["speedup"].to_numpy(float), curve["metric"].to_numpy(float)


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
        entry["calibration_error"] = {  # achieved test speed-up against the target, relative
            name: {t: mean_ci([r["strategies"][name][t]["speedup"] / float(t) - 1 for r in task_runs]) for t in targets}
            for name, targets in strategies.items() if name != "oracle"
        }
        with_curves = [r for r in task_runs if r["_curves"] is not None]
        if with_curves:
            ranges = [_curve_range(r) for r in with_curves]
            names = [n for n in ranges[0][0] if all(n in found for found, _ in ranges)]
            upper = min(u for _, u in ranges)  # one range for every strategy and seed of the task
            if upper > 1.0:
                entry["curve_area"] = {
                    "speedup_range": [1.0, upper],
                    "strategies": {
                        name: mean_ci([frontier_area(*_curve_points(r, name), upper) for r in with_curves])
                        for name in names
                    },
                }
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
    areas = {t: summary["tasks"][t].get("curve_area") for t in tasks}
    if any(areas.values()):
        ranges = ", ".join(f"{t}: 1–{a['speedup_range'][1]:.2f}×" for t, a in areas.items() if a)
        lines += [
            "",
            "## Area under the metric/speed-up curve",
            "",
            "Mean test metric (×100, mean ± 95% CI over seeds) along each strategy's best curve (its Pareto "
            f"frontier over all knob settings) over the same speed-up range for every strategy of a task ({ranges}).",
            "",
            "| strategy | " + " | ".join(tasks) + " |",
            "|---|" + "---|" * len(tasks),
        ]
        for name in STRATEGY_ORDER:
            cells = [_fmt(*a["strategies"][name]) if a and name in a["strategies"] else "–" for a in areas.values()]
            if any(c != "–" for c in cells):
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Calibration quality",
        "",
        "Achieved test speed-up against the target the thresholds were frozen for on validation: relative "
        "error in % (mean ± 95% CI over seeds; negative = slower than promised).",
        "",
        "| strategy | target | " + " | ".join(tasks) + " |",
        "|---|---|" + "---|" * len(tasks),
    ]
    for target in targets:
        for name in STRATEGY_ORDER:
            cells = [summary["tasks"][t].get("calibration_error", {}).get(name, {}).get(target) for t in tasks]
            if any(cells):
                lines.append(f"| {name} | {target}× | " + " | ".join(_fmt(*c) if c else "–" for c in cells) + " |")
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
