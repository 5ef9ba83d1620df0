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
from de3pipe.tasks import get_task

STRATEGY_ORDER = (
    "de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle",
    "de3_nodar", "control_entropy", "control_maxprob",  # the study's variants (config/study.yaml)
)
SECONDARY = {"de3": "lam", "pcee": "t", "de3_nodar": "lam"}
CONTROLS = ("control_entropy", "control_maxprob")
# Paired comparisons of the study (same seed, task and target): de3 against each of these.
COMPARISONS = {
    "entropy": ("entropy",),
    "best control head": CONTROLS,
    "no DAR": ("de3_nodar",),
    "distance alone": ("distance",),
}
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
        results["_dir"] = path.parent.parent  # the run folder: <results>/<task>/seed<seed>/
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
        per_run_areas: list[dict[str, float]] = []
        if with_curves:
            ranges = [_curve_range(r) for r in with_curves]
            names = [n for n in ranges[0][0] if all(n in found for found, _ in ranges)]
            upper = min(u for _, u in ranges)  # one range for every strategy and seed of the task
            if upper > 1.0:
                per_run_areas = [{n: frontier_area(*_curve_points(r, n), upper) for n in names} for r in with_curves]
                entry["curve_area"] = {
                    "speedup_range": [1.0, upper],
                    "strategies": {name: mean_ci([a[name] for a in per_run_areas]) for name in names},
                }
        entry["paired"] = _paired_differences(task_runs, metric, per_run_areas)
        entry |= _study_sections(task_runs, metric)
        summary["tasks"][task] = entry
    return summary


def _paired_differences(task_runs: list[dict], metric: str, per_run_areas: list[dict]) -> dict:
    """de3 minus each comparison (the best of a group), seed by seed: at every target and for the
    curve area. Mean and 95% CI of the differences: a CI that excludes 0 is a difference the
    seeds agree on."""
    out: dict = {}
    if "de3" not in task_runs[0]["strategies"]:
        return out
    targets = [t for t in task_runs[0]["strategies"]["de3"] if t != "any"]
    for label, group in COMPARISONS.items():
        if not all(g in task_runs[0]["strategies"] for g in group):
            continue
        entry = {
            target: mean_ci([
                r["strategies"]["de3"][target][metric] - max(r["strategies"][g][target][metric] for g in group)
                for r in task_runs
            ])
            for target in targets
        }
        if per_run_areas and all("de3" in a and all(g in a for g in group) for a in per_run_areas):
            entry["area"] = mean_ci([a["de3"] - max(a[g] for g in group) for a in per_run_areas])
        out[label] = entry
    return out


def _study_sections(task_runs: list[dict], metric: str) -> dict:
    """Lambda sensitivity, overhead and the per-layer head comparison, where the runs have them."""
    out: dict = {}
    if all("per_lambda" in r for r in task_runs):
        out["per_lambda"] = {
            name: {
                lam: {
                    target: {
                        "metric": mean_ci([r["per_lambda"][name][lam][target][metric] for r in task_runs]),
                        "speedup": mean_ci([r["per_lambda"][name][lam][target]["speedup"] for r in task_runs]),
                    }
                    for target in targets
                }
                for lam, targets in lambdas.items()
            }
            for name, lambdas in task_runs[0]["per_lambda"].items()
        }
    if all("overhead" in r for r in task_runs):
        overheads = [r["overhead"] for r in task_runs]
        out["overhead"] = {
            "extra_parameter_share": mean_ci([o["parameters"]["extra_share"] for o in overheads]),
            "extra_bytes": overheads[0]["parameters"]["extra_bytes"],
            "extra_parameters": overheads[0]["parameters"]["prototype_networks"]
            + overheads[0]["parameters"]["prototype_buffers"],
            "extra_flops_share_of_layer": mean_ci([o["extra_flops_share_of_layer"] for o in overheads]),
            "extra_flops_per_sample": overheads[0]["flops_per_sample"]["de3_signal"]
            - overheads[0]["flops_per_sample"]["entropy_signal"],
            "layer_flops_per_sample": mean_ci([o["flops_per_sample"]["layer"] for o in overheads]),
            **{f"percent_of_layer.{k}": mean_ci([o["percent_of_layer"][k] for o in overheads])
               for k in ("classifier", "entropy_signal", "de3_signal", "de3_extra")},
        }
    heads = [_validation_heads(r["_dir"], metric) if r.get("_dir") else None for r in task_runs]
    if all(h is not None for h in heads):
        out["validation_heads"] = {
            kind: [mean_ci([h[kind][m] for h in heads]) for m in range(len(heads[0][kind]))] for kind in heads[0]
        }
    return out


def _validation_heads(run_dir: Path, metric: str) -> dict | None:
    """Per-layer validation metric of the internal classifier, the control head and the nearest
    prototype, from the two training stages' train_metrics.json (None where not recorded)."""
    files = [run_dir / "finetuned" / "train_metrics.json", run_dir / "prototyped" / "train_metrics.json"]
    if not all(f.is_file() for f in files):
        return None
    stage1, stage2 = (read_json(f, what="training metrics")["epochs"][-1] for f in files)
    if "validation_control" not in stage2:
        return None
    n_exits = len(stage2["validation_control"])
    return {
        "internal classifier": [m[metric] for m in stage1["validation"][:n_exits]],
        "control head": [m[metric] for m in stage2["validation_control"]],
        "nearest prototype": [m[metric] for m in stage2["validation_nearest"]],
    }


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
        *(["Setup (training caps included):", "", *(f"- {k}: {v}" for k, v in summary["setup"].items()), ""]
          if summary.get("setup") else []),
    ]
    rows = [["full model", "1×", *(_fmt(*summary["tasks"][t]["full_model"]) for t in tasks)]]
    for target in targets:
        for name in STRATEGY_ORDER:
            cells = [_cell(summary["tasks"][t]["strategies"].get(name, {}).get(target)) for t in tasks]
            if any(c != "–" for c in cells):
                rows.append([name, f"{target}×", *cells])
    oracle = [summary["tasks"][t]["strategies"].get("oracle", {}).get("any") for t in tasks]
    if any(oracle):
        rows.append(["oracle (analysis)", "–", *(_cell(p) for p in oracle)])
    lines += _table(["strategy", "target", *tasks], rows)
    areas = {t: summary["tasks"][t].get("curve_area") for t in tasks}
    if any(areas.values()):
        ranges = ", ".join(f"{t}: 1–{a['speedup_range'][1]:.2f}×" for t, a in areas.items() if a)
        rows = []
        for name in STRATEGY_ORDER:
            cells = [_fmt(*a["strategies"][name]) if a and name in a["strategies"] else "–" for a in areas.values()]
            if any(c != "–" for c in cells):
                rows.append([name, *cells])
        lines += [
            "",
            "## Area under the metric/speed-up curve",
            "",
            "Mean test metric (×100, mean ± 95% CI over seeds) along each strategy's best curve (its Pareto "
            f"frontier over all knob settings) over the same speed-up range for every strategy of a task ({ranges}).",
            "",
            *_table(["strategy", *tasks], rows),
        ]
    rows = []
    for target in targets:
        for name in STRATEGY_ORDER:
            cells = [summary["tasks"][t].get("calibration_error", {}).get(name, {}).get(target) for t in tasks]
            if any(cells):
                rows.append([name, f"{target}×", *(_fmt(*c) if c else "–" for c in cells)])
    lines += [
        "",
        "## Calibration quality",
        "",
        "Achieved test speed-up against the target the thresholds were frozen for on validation: relative "
        "error in % (mean ± 95% CI over seeds; negative = slower than promised).",
        "",
        *_table(["strategy", "target", *tasks], rows),
    ]
    lines += _study_markdown(summary, tasks, targets)
    lines += ["", "Plots of metric against speed-up (test split, one curve per strategy): `plots/<task>.png`.", ""]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _signed(value: tuple[float, float | None] | None, scale: float = 100.0) -> str:
    if value is None:
        return "–"
    mean, half = value
    text = f"{mean * scale:+.1f}" + (f" ± {half * scale:.1f}" if half is not None else "")
    return f"**{text}**" if half is not None and abs(mean) > half else text  # bold: the CI excludes 0


def _study_markdown(summary: dict, tasks: list[str], targets: list[str]) -> list[str]:
    """The study's sections, each only where the runs recorded what it needs."""
    entries = [summary["tasks"][t] for t in tasks]
    lines: list[str] = []
    if any(e.get("paired") for e in entries):
        lines += [
            "", "## de3 against each comparison, seed by seed",
            "",
            "de3's test metric minus the other's (×100) at each target, and of the curve areas above; mean ± 95% CI "
            "over the paired seeds, **bold** where the interval excludes 0. \"best control head\" is the better of "
            "entropy and max-probability exits on the control softmax heads, per seed; \"no DAR\" is de3 with the "
            "class means of the untrained identity map as prototypes.",
            "",
        ]
        labels = [lab for lab in COMPARISONS if any(lab in e.get("paired", {}) for e in entries)]
        rows = []
        for label in labels:
            for key in [*targets, "area"]:
                cells = [_signed(e.get("paired", {}).get(label, {}).get(key)) for e in entries]
                rows.append([f"de3 − {label}", "curve area" if key == "area" else f"{key}×", *cells])
        lines += _table(["comparison", "at", *tasks], rows)
    with_lambda = [e for e in entries if e.get("per_lambda", {}).get("de3")]
    if with_lambda:
        target = "2" if "2" in targets else targets[len(targets) // 2]
        lambdas = list(with_lambda[0]["per_lambda"]["de3"])
        rows = [["0 (entropy)", *(_cell(e["strategies"].get("entropy", {}).get(target)) for e in entries)]]
        for lam in lambdas:
            rows.append([lam, *(_cell(e.get("per_lambda", {}).get("de3", {}).get(lam, {}).get(target)) for e in entries)])
        lines += [
            "", f"## λ sensitivity at {target}×", "",
            f"de3's test metric (×100, mean ± 95% CI) with λ fixed and only τ frozen on validation for {target}×; "
            "achieved test speed-up in brackets. λ = 0 is entropy alone (EDR = E).", "",
            *_table(["λ", *tasks], rows),
        ]
    if any(e.get("overhead") for e in entries):
        rows = []
        for task, e in zip(tasks, entries, strict=True):
            o = e.get("overhead")
            if not o:
                continue
            rows.append([
                task,
                f"{o['extra_parameters']:,} ({o['extra_bytes'] / 2**20:.2f} MiB, {_fmt(*o['extra_parameter_share'])}%)",
                f"{o['extra_flops_per_sample'] / 1e6:.2f} M ({_fmt(*o['extra_flops_share_of_layer'], scale=100)}%)",
                _fmt(*o["percent_of_layer.entropy_signal"], scale=1),
                _fmt(*o["percent_of_layer.de3_signal"], scale=1),
                _fmt(*o["percent_of_layer.de3_extra"], scale=1),
            ])
        lines += [
            "", "## Overhead of the distance signal", "",
            "Extra storage of the prototypical networks (maps and prototypes; % of the model's parameters); extra "
            "FLOPs per sample and exit check over entropy's (% of one transformer layer's FLOPs on the same batch); "
            "measured time of one exit check (internal classifier + signal) in % of one layer's time, batch 32 of "
            "test inputs at a middle layer (de3pipe/overhead.py; mean ± 95% CI over seeds).", "",
            *_table(["task", "extra parameters", "extra FLOPs / check", "entropy check % layer",
                     "de3 check % layer", "de3 extra % layer"], rows),
        ]
    heads = {t: e["validation_heads"] for t, e in zip(tasks, entries, strict=True) if e.get("validation_heads")}
    if heads:
        rows = []
        for task, kinds in heads.items():
            for kind, values in kinds.items():
                rows.append([task, kind, *(_fmt(*v) for v in values)])
        n_exits = max(len(v) for kinds in heads.values() for v in kinds.values())
        lines += [
            "", "## Exit heads per layer (validation)", "",
            "Validation metric (×100, mean ± 95% CI) of each layer's internal classifier (stage 1), the control "
            "softmax head and the nearest prototype (stage 2, same frozen features). A control head better than "
            "the internal classifier is a gain any exit rule gets from a second trained head, not from distances.", "",
            *_table(["task", "head", *(f"layer {m + 1}" for m in range(n_exits))], rows),
        ]
    if summary.get("findings"):
        lines += ["", "## Findings (generated from the numbers above)", "", *(f"- {f}" for f in summary["findings"])]
    if summary.get("figures"):
        lines += ["", "## Prototype space", "", *(f"![{name}]({path})" for name, path in summary["figures"].items())]
    return lines


def _cell(point: dict | None) -> str:
    """Metric (mean ± CI) and achieved speed-up of a frozen point; † where its target was unreachable."""
    if not point:
        return "–"
    mark = " †" if point.get("unreachable") else ""
    return f"{_fmt(*point['metric'])} ({point['speedup'][0]:.2f}×){mark}"


def findings(summary: dict) -> list[str]:
    """Plain statements of where de3 wins and where it does not, from the paired differences."""
    tasks = list(summary["tasks"])
    out = []
    for label in COMPARISONS:
        per_key: dict[str, list[tuple[str, tuple]]] = defaultdict(list)
        for task in tasks:
            for key, value in summary["tasks"][task].get("paired", {}).get(label, {}).items():
                per_key[key].append((task, value))
        for key, values in per_key.items():
            wins = [t for t, (m, h) in values if h is not None and m > h]
            losses = [t for t, (m, h) in values if h is not None and -m > h]
            ahead = [t for t, (m, _) in values if m > 0]
            where = "over the curve area" if key == "area" else f"at {key}×"
            mean = np.mean([m for _, (m, _) in values]) * 100
            out.append(
                f"de3 − {label} {where}: ahead on {len(ahead)} of {len(values)} tasks (mean {mean:+.1f} points); "
                f"the seeds agree on a gain for {', '.join(wins) or 'none'} and on a loss for {', '.join(losses) or 'none'}."
            )
    errors: dict[str, list[float]] = defaultdict(list)
    for task in tasks:
        for name, targets in summary["tasks"][task].get("calibration_error", {}).items():
            errors[name] += [abs(mean) for mean, _ in targets.values()]
    ranked = [n for n in ("de3", "entropy", "control_entropy") if errors.get(n)]
    if ranked:
        out.append(
            "Calibration: mean |achieved test speed-up / target − 1| over tasks and targets: "
            + ", ".join(f"{n} {np.mean(errors[n]) * 100:.1f}%" for n in ranked)
            + " (a strategy that falls short of its target is compared at a lower speed-up; the curve areas are not)."
        )
    overheads = [summary["tasks"][t]["overhead"] for t in tasks if summary["tasks"][t].get("overhead")]
    if overheads:
        share = np.mean([o["extra_parameter_share"][0] for o in overheads]) * 100
        extra = np.mean([o["percent_of_layer.de3_extra"][0] for o in overheads])
        out.append(f"Overhead: the prototypical networks add {share:.1f}% parameters; the distance signal adds "
                   f"{extra:.1f}% of one layer's time per exit check over entropy's.")
    return out


def plot_task(task: str, task_runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = dict(zip(STRATEGY_ORDER, plt.get_cmap("tab20").colors, strict=False))
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


def plot_prototype_space(runs: list[dict], path: Path) -> bool:
    """Per task (its first seed) and layer: validation samples in the 2-D PCA of the prototype
    space, coloured by gold label, hollow where the layer's classifier is wrong; prototypes as
    stars. False when no run wrote a projection (signals.prototype_space)."""
    from de3pipe.projection import FILE_NAME

    firsts = {}
    for run in sorted(runs, key=lambda r: (r["task"], r.get("seed") or 0)):
        file = run["_dir"] / "signals" / FILE_NAME if run.get("_dir") else None
        if run["task"] not in firsts and file is not None and file.is_file():
            firsts[run["task"]] = file
    if not firsts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {task: np.load(file, allow_pickle=False) for task, file in firsts.items()}
    n_exits = max(a["coords"].shape[0] for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), n_exits, figsize=(2.4 * n_exits, 2.4 * len(arrays)), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for row, (task, data) in enumerate(arrays.items()):
        labels, pred = data["labels"], data["pred"]
        for m in range(n_exits):
            ax = axes[row, m]
            ax.set_xticks([])
            ax.set_yticks([])
            if m >= data["coords"].shape[0]:
                continue
            xy = data["coords"][m]
            for k in np.unique(labels):
                right = (labels == k) & (pred[:, m] == labels)
                wrong = (labels == k) & (pred[:, m] != labels)
                ax.scatter(*xy[right].T, s=4, color=colors[k % 10], alpha=0.5, linewidths=0)
                ax.scatter(*xy[wrong].T, s=6, facecolors="none", edgecolors=colors[k % 10], alpha=0.6, linewidths=0.5)
            for k, centre in enumerate(data["prototypes"][m]):
                if np.isfinite(centre).all():
                    ax.scatter(*centre, marker="*", s=160, color=colors[k % 10], edgecolor="black", zorder=3)
            ax.set_title(f"{task} layer {m + 1} ({data['explained'][m] * 100:.0f}% var.)", fontsize=7)
        names = get_task(task).label_names
        axes[row, 0].legend(
            handles=[plt.Line2D([], [], marker="*", ls="", color=colors[k % 10], label=n) for k, n in enumerate(names)],
            fontsize=6, loc="lower left",
        )
    fig.suptitle("Validation samples in the prototype space (PCA; stars: prototypes; hollow: misclassified)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def setup_lines(cfg) -> dict[str, str]:
    """What the runs were trained with, as the report states it (caps included)."""
    data, ft, pr = cfg.data, cfg.finetune, cfg.prototypes
    caps = {"train": data.max_train_samples, "validation": data.max_validation_samples, "test": data.max_test_samples}
    return {
        "model": f"{cfg.model.name_or_path}, max {cfg.model.max_length} tokens, pooling {cfg.model.pooling}, "
        f"distance {cfg.model.distance}",
        "data": f"validation carved from train ({data.validation_size:g}); caps "
        + ", ".join(f"{k} {v if v else 'none'}" for k, v in caps.items()) + " (test = the official dev set)",
        "stage 1": f"{ft.epochs:g} epochs, batch {ft.batch_size}, lr {ft.learning_rate:g}, {ft.layer_weighting} layer weights",
        "stage 2": f"{pr.epochs:g} epochs, batch {pr.batch_size}, lr {pr.learning_rate:g}, DAR {pr.loss}, "
        f"EMA γ {pr.ema_gamma:g}, backbone {'frozen' if pr.freeze_backbone else 'trained'}"
        + (", with the control heads" if pr.controls else ""),
        "calibration": f"targets {', '.join(f'{t:g}×' for t in cfg.calibration.targets)}; λ grid "
        f"{', '.join(f'{x:g}' for x in cfg.calibration.lambdas)}; {cfg.calibration.n_thresholds} thresholds per curve; "
        f"selection {cfg.calibration.selection}",
    }


def build_report(metrics_files: list[Path], out: Path, setup: dict | None = None) -> dict:
    runs = collect(metrics_files)
    summary = summarise(runs)
    if setup:
        summary["setup"] = setup
    summary["findings"] = findings(summary)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "plots", overwrite=True) as tmp:
        for task in summary["tasks"]:
            plot_task(task, [r for r in runs if r["task"] == task], tmp / f"{task}.png")
        if plot_prototype_space(runs, tmp / "prototype_space.png"):
            summary["figures"] = {"prototype space per layer": "plots/prototype_space.png"}
    with atomic_file(out / "report.md") as handle:
        handle.write(markdown(summary))
    write_json(out / "summary.json", summary)
    return summary
