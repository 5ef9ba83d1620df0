"""The cross-task report: tables, findings and plots, rendered from the statistics of
``comparison.py`` (which computes every number; this module only formats and draws).

Input: the ``metrics.json`` of every evaluation (any tasks, any seeds), with the
``points.npz`` and ``test_curves.csv`` beside each. Output: ``report.md``, ``summary.json``
(the same numbers, machine-readable) and one PNG per task.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from de3pipe.report.comparison import (
    Estimate, RunPoints, TaskComparison, compare_task, correct_differences, study_sections,
)
from de3pipe.config import Config, ReportConfig
from de3pipe.errors import De3Error
from de3pipe.method.evaluation import POINTS_FILE
from de3pipe.infra.io import atomic_dir, atomic_file, read_json, write_json
from de3pipe.method.strategies import registry
from de3pipe.data.tasks import get_task

CONTROL = "control_entropy"  # the control the findings quote: the control head exited on by entropy


def display_order() -> list[str]:
    """Strategies in registry order, analysis-only ones left out (they are not compared)."""
    return [name for name, entry in registry().items() if not entry.analysis_only]


def collect(metrics_files: list[Path]) -> list[dict]:
    runs = []
    for path in metrics_files:
        results = read_json(path, what="evaluation metrics")
        if not isinstance(results.get("task"), str) or not isinstance(results.get("full_model"), dict) or not isinstance(
                results.get("strategies"), dict):
            raise De3Error(f"evaluation metrics {path} lack task, full_model or strategies; re-run `de3pipe evaluate`")
        curves_file = path.parent / "test_curves.csv"
        try:
            results["_curves"] = pd.read_csv(curves_file) if curves_file.is_file() else None
        except pd.errors.EmptyDataError:  # no strategy had a calibrated curve point
            results["_curves"] = None
        results["_points"] = path.parent / POINTS_FILE
        results["_dir"] = path.parent.parent  # the run folder: <results>/<task>/seed<seed>/
        runs.append(results)
    if not runs:
        raise De3Error("the report needs at least one evaluation metrics.json")
    return runs


def summarise(runs: list[dict], cfg: ReportConfig) -> tuple[dict, list[TaskComparison]]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_task[run["task"]].append(run)
    comparisons = []
    for task, task_runs in sorted(by_task.items()):
        task_runs.sort(key=lambda r: r.get("seed") or 0)
        metric = next(iter(task_runs[0]["full_model"]))
        points = [RunPoints.load(r["_points"], r.get("seed")) for r in task_runs]
        comparison = compare_task(task, metric, points, cfg)
        for name, targets in comparison.targets.items():
            for target, entry in targets.items():
                entry["unreachable"] = any(r["strategies"][name][target]["calibration_status"] != "ok" for r in task_runs)
        comparisons.append(comparison)
    family = correct_differences(comparisons, cfg)
    summary: dict = {
        "seeds": sorted({run.get("seed") for run in runs}),
        "protocol": {
            "bootstrap_samples": cfg.bootstrap_samples,
            "confidence": cfg.confidence,
            "correction": cfg.correction,
            "alpha": cfg.alpha,
            "tests_in_family": family,
            "matched_speedups": cfg.matched_speedups,
        },
        "tasks": {},
    }
    for comparison in comparisons:
        task_runs = by_task[comparison.task]
        entry = _as_dict(comparison)
        entry |= study_sections(task_runs, comparison.metric)
        summary["tasks"][comparison.task] = entry
    return summary, comparisons


def _as_dict(value):
    """The comparison as plain JSON (Estimates as dicts)."""
    if isinstance(value, Estimate):
        return value.as_dict()
    if isinstance(value, TaskComparison):
        return {k: _as_dict(v) for k, v in value.__dict__.items()}
    if isinstance(value, dict):
        return {k: _as_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_dict(v) for v in value]
    return value


# ---- formatting ----

def _interval(e: dict | None, signed: bool = False, scale: float = 100.0) -> str:
    """value [low, high] (×scale); '–' where there is no value."""
    if not e:
        return "–"
    f = "{:+.1f}" if signed else "{:.1f}"
    if e["low"] == e["high"] == e["value"]:  # e.g. a constant classifier's MCC, a static exit's speed-up
        return f"{f.format(e['value'] * scale)} (exact)"
    return f"{f.format(e['value'] * scale)} [{f.format(e['low'] * scale)}, {f.format(e['high'] * scale)}]"


def _difference(e: dict | None) -> str:
    if not e:
        return "–"
    if e.get("identical"):
        return "0 (identical exits)"
    text = _interval(e, signed=True)
    return f"**{text}** ✱" if e.get("significant") else text


def _mean_t(value: tuple[float, float | None], scale: float = 100.0) -> str:
    mean, half = value
    return f"{mean * scale:.1f}" + (f" ± {half * scale:.1f}" if half else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _task_headers(summary: dict) -> list[str]:
    return [t if e["gate"]["learned"] else f"{t} (not learned)" for t, e in summary["tasks"].items()]


def markdown(summary: dict) -> str:
    tasks = list(summary["tasks"])
    entries = [summary["tasks"][t] for t in tasks]
    protocol = summary["protocol"]
    level = f"{protocol['confidence'] * 100:g}%"
    lines = [
        "# de3pipe report",
        "",
        f"Seeds: {', '.join(str(s) for s in summary['seeds'])}. Every knob (τ, λ, t, k) was chosen on the validation "
        "split and applied once to test. A strategy's **calibrated test curve** is made of its points frozen on "
        "validation for a dense grid of target speed-ups, plus the full model at 1×; strategies are compared at "
        "equal *achieved* test layer speed-up, each curve sorted by speed-up and linearly interpolated. Cells give "
        f"the test metric ×100 and its {level} interval from a paired bootstrap ({protocol['bootstrap_samples']} "
        "replicates, each resampling the test examples — the same draw for every strategy and seed — and the seeds); "
        "\"(exact)\" marks a value every replicate gives (a constant predictor's MCC, a static exit's speed-up).",
        "",
        "Metrics: " + ", ".join(f"{t}: {summary['tasks'][t]['metric']}" for t in tasks) + ".",
        "",
        *(["Setup:", "", *(f"- {k}: {v}" for k, v in summary["setup"].items()), ""] if summary.get("setup") else []),
        "## Did each task learn?",
        "",
        "The full model against the best constant prediction on the same test examples (majority-class accuracy, "
        f"all-positive F1, MCC 0), {level} bootstrap intervals. A task whose difference's interval does not lie above 0 "
        "is **not learned**: it is shown, but left out of the tests of differences and of the findings.",
        "",
    ]
    rows = []
    for task, e in zip(tasks, entries, strict=True):
        gate = e["gate"]
        rows.append([task, e["metric"], _interval(gate["full_model"]), gate["trivial_predictor"], _interval(gate["trivial"]),
                     _interval(gate["difference"], signed=True), "learned" if gate["learned"] else "**not learned**"])
    lines += _table(["task", "metric", "full model", "trivial predictor", "its score", "full − trivial", "verdict"], rows)
    headers = _task_headers(summary)
    speedups = [f"{s:g}" for s in protocol["matched_speedups"]]
    rows = [["full model", "1×", *(_interval(e["gate"]["full_model"]) for e in entries)]]
    for s in speedups:
        for name in display_order():
            cells = [_interval(e["matched"].get(name, {}).get(s)) for e in entries]
            if any(name in e["matched"] for e in entries):
                rows.append([name, f"{s}×", *cells])
    lines += [
        "", "## Metric at matched speed-ups (main table)", "",
        "Test metric (×100) of each calibrated curve at the same achieved layer speed-up; – where a strategy's curve "
        "does not reach that speed-up in every seed.", "",
        *_table(["strategy", "speed-up", *headers], rows),
    ]
    lines += _differences_markdown(summary, tasks, entries, headers, speedups)
    lines += _area_markdown(entries, tasks, headers)
    lines += _target_markdown(summary, entries, headers)
    lines += _calibration_markdown(entries, headers)
    lines += _study_markdown(entries, tasks, headers)
    if summary.get("findings"):
        lines += ["", "## Findings (generated from the numbers above)", "", *(f"- {f}" for f in summary["findings"])]
    lines += ["", "Plots of each strategy's calibrated test curve: `plots/<task>.png`.", ""]
    return "\n".join(lines)


def _differences_markdown(summary, tasks, entries, headers, speedups) -> list[str]:
    comparisons = list(dict.fromkeys(c for e in entries for c in e["differences"]))
    if not comparisons:
        return []
    protocol = summary["protocol"]
    correction = {"holm": "Holm's step-down correction", "bonferroni": "a Bonferroni correction", "none": "no correction"}
    rows = []
    for other in comparisons:
        for key in [*speedups, "area"]:
            cells = []
            for e in entries:
                value = e["differences"].get(other, {}).get(key)
                cells.append(_difference(value) if e["gate"]["learned"] or not value else f"({_interval(value, signed=True)})")
            if any(c != "–" for c in cells):
                rows.append([f"de3 − {other}", "curve area" if key == "area" else f"{key}×", *cells])
    return [
        "", "## de3 against each comparison", "",
        "de3's test metric minus the other's (×100), paired per seed and bootstrap replicate, at each matched speed-up "
        "and over the curve area below. **Bold** with ✱: significant at family-wise level "
        f"{protocol['alpha']:g} after {correction[protocol['correction']]} over the {protocol['tests_in_family']} "
        "differences of this table in learned tasks (two-sided p-values from the bootstrap standard error). "
        "Differences in brackets belong to tasks that did not learn and are not tested.", "",
        *_table(["comparison", "at", *headers], rows),
    ]


def _area_markdown(entries, tasks, headers) -> list[str]:
    if not any(e["area"] for e in entries):
        return []
    ranges = ", ".join(f"{t}: 1–{e['area']['range'][1]:.2f}×" for t, e in zip(tasks, entries, strict=True) if e["area"])
    rows = []
    for name in display_order():
        cells = [_interval(e["area"]["strategies"].get(name)) if e["area"] else "–" for e in entries]
        if any(c != "–" for c in cells):
            rows.append([name, *cells])
    return [
        "", "## Area under the calibrated curve", "",
        "Mean test metric (×100) along each calibrated curve (linear interpolation between its points sorted by "
        f"achieved speed-up, trapezoids on a 201-point grid), over one range per task that every curve reaches ({ranges}).",
        "", *_table(["strategy", *headers], rows),
    ]


def _target_markdown(summary, entries, headers) -> list[str]:
    targets = sorted({t for e in entries for s in e["targets"].values() for t in s if t != "any"}, key=float)
    rows = []
    for target in targets:
        for name in display_order():
            cells = [_target_cell(e["targets"].get(name, {}).get(target), e) for e in entries]
            if any(c != "–" for c in cells):
                rows.append([name, f"{target}×", *cells])
    for name in (n for n, r in registry().items() if r.analysis_only):
        points = [e["targets"].get(name, {}).get("any") for e in entries]
        if any(points):
            rows.append([f"{name} (analysis)", "–", *(_target_cell(p, {}) for p in points)])
    tolerance = f"{summary['protocol'].get('target_tolerance', 0.05) * 100:g}%"
    return [
        "", "## At the nominal targets (secondary view)", "",
        "Each strategy's point frozen on validation for a target speed-up: test metric (×100, interval) and, in "
        f"brackets, the achieved test speed-up. ‡: achieved more than {tolerance} away from the target (either "
        "direction), so this row does not compare strategies at equal speed; †: the target is unreachable on "
        "validation (the fastest point is used). The matched-speed-up tables above are the comparison.", "",
        *_table(["strategy", "target", *headers], rows),
    ]


def _target_cell(point: dict | None, entry: dict) -> str:  # noqa: ARG001
    if not point:
        return "–"
    marks = ("‡" if point.get("off_target") else "") + ("†" if point.get("unreachable") else "")
    return f"{_interval(point['metric'])} ({point['speedup']['value']:.2f}×){' ' + marks if marks else ''}"


def _calibration_markdown(entries, headers) -> list[str]:
    rows = []
    for name in display_order():
        per_target = [e["calibration_error"].get(name, {}) for e in entries]
        if not any(per_target):
            continue
        for target in sorted({t for p in per_target for t in p}, key=float):
            rows.append([name, f"{target}×", *(_interval(p.get(target), signed=True) for p in per_target)])
        rows.append([name, "mean abs.", *(f"{e['mean_calibration_error'][name] * 100:.1f}" if name in
                                          e["mean_calibration_error"] else "–" for e in entries)])
    return [
        "", "## Calibration error per task", "",
        "Achieved test speed-up of the point frozen for a target, relative to the target, in % (interval); negative: "
        "slower than promised. \"mean abs.\": the mean absolute error over the targets.", "",
        *_table(["strategy", "target", *headers], rows),
    ]


def _study_markdown(entries, tasks, headers) -> list[str]:
    """The study's sections, each only where the runs recorded what it needs."""
    lines: list[str] = []
    with_lambda = [e for e in entries if e.get("per_lambda")]
    if with_lambda:
        targets = sorted({t for e in with_lambda for lam in e["per_lambda"].values() for t in lam}, key=float)
        target = "2" if "2" in targets else targets[len(targets) // 2]
        lambdas = sorted({lam for e in with_lambda for lam in e["per_lambda"]}, key=float)
        rows = []
        for lam in lambdas:
            cells = []
            for e in entries:
                point = e.get("per_lambda", {}).get(lam, {}).get(target)
                cells.append(f"{_interval(point['metric'])} ({point['speedup']['value']:.2f}×)" if point else "–")
            rows.append([lam + (" (entropy)" if float(lam) == 0 else ""), *cells])
        lines += [
            "", f"## λ sensitivity at {target}×", "",
            f"de3's test metric (×100, interval) with λ fixed and only τ frozen on validation for {target}×; achieved "
            "test speed-up in brackets. λ = 0 is entropy alone (EDR = E).", "",
            *_table(["λ", *headers], rows),
        ]
    if any(e.get("overhead") for e in entries):
        rows = []
        for task, e in zip(tasks, entries, strict=True):
            o = e.get("overhead")
            if o:
                rows.append([
                    task,
                    f"{o['extra_parameters']:,} ({o['extra_bytes'] / 2**20:.2f} MiB, {_mean_t(o['extra_parameter_share'])}%)",
                    f"{o['extra_flops_per_sample'] / 1e6:.2f} M ({_mean_t(o['extra_flops_share_of_layer'])}%)",
                    _mean_t(o["percent_of_layer.entropy_signal"], 1),
                    _mean_t(o["percent_of_layer.de3_signal"], 1),
                    _mean_t(o["percent_of_layer.de3_extra"], 1),
                ])
        lines += [
            "", "## Overhead of the distance signal", "",
            "Extra storage of the prototypical networks (maps and prototypes; % of the model's parameters); extra "
            "FLOPs per sample and exit check over entropy's (% of one transformer layer's FLOPs on the same batch); "
            "measured time of one exit check (internal classifier + signal) in % of one layer's time, batch 32 of "
            "test inputs at a middle layer (de3pipe/inference/overhead.py; mean ± 95% t-interval over seeds).", "",
            *_table(["task", "extra parameters", "extra FLOPs / check", "entropy check % layer",
                     "de3 check % layer", "de3 extra % layer"], rows),
        ]
    heads = {t: e["validation_heads"] for t, e in zip(tasks, entries, strict=True) if e.get("validation_heads")}
    if heads:
        rows = [[task, kind, *(_mean_t(v) for v in values)] for task, kinds in heads.items() for kind, values in kinds.items()]
        n_exits = max(len(v) for kinds in heads.values() for v in kinds.values())
        lines += [
            "", "## Exit heads per layer (validation)", "",
            "Validation metric (×100, mean ± 95% t-interval over seeds) of each layer's internal classifier (stage 1), "
            "the control softmax head and the nearest prototype (stage 2, same frozen features). A control head better "
            "than the internal classifier is a gain any exit rule gets from a second trained head, not from distances.", "",
            *_table(["task", "head", *(f"layer {m + 1}" for m in range(n_exits))], rows),
        ]
    return lines


# ---- findings ----

def _said(e: dict) -> str:
    text = _interval(e, signed=True)
    if e.get("identical"):
        return "0 (identical exits)"
    verdict = "significant" if e.get("significant") else "not significant"
    return f"{text} ({verdict}, adjusted p = {e['p_adjusted']:.2g})"


def findings(summary: dict) -> list[str]:
    """Plain statements from the corrected numbers, for learned tasks only."""
    out = []
    tasks = summary["tasks"]
    not_learned = [t for t, e in tasks.items() if not e["gate"]["learned"]]
    if not_learned:
        out.append(
            "Not learned, so left out of every finding below: " + "; ".join(
                f"{t} ({tasks[t]['metric']} {_interval(tasks[t]['gate']['full_model'])} against the trivial "
                f"{_interval(tasks[t]['gate']['trivial'])})" for t in not_learned) + "."
        )
    for task, e in tasks.items():
        if not e["gate"]["learned"]:
            continue
        for other in ("entropy", CONTROL):
            diff = e["differences"].get(other)
            if not diff:
                continue
            parts = [f"at matched {k}× {_said(v)}" for k, v in diff.items() if k != "area" and float(k) in (2.0, 3.0)]
            if "area" in diff:
                parts.append(f"over the curve area (1–{e['area']['range'][1]:.2f}×) {_said(diff['area'])}")
            out.append(f"{task}: de3 − {other}: " + "; ".join(parts) + ".")
        significant = [f"{other} at {k}{'' if k == 'area' else '×'} ({_interval(v, signed=True)})"
                       for other, d in e["differences"].items() for k, v in d.items() if v.get("significant")]
        out.append(f"{task}: differences significant after correction: " + (", ".join(significant) or "none") + ".")
        errors = {n: error * 100 for n, error in e["mean_calibration_error"].items()}
        shown = [n for n in ("de3", "entropy", CONTROL) if n in errors]
        if shown:
            out.append(f"{task}: calibration, mean |achieved test speed-up / target − 1|: "
                       + ", ".join(f"{n} {errors[n]:.1f}%" for n in shown) + ".")
    overheads = [e["overhead"] for e in tasks.values() if e.get("overhead")]
    if overheads:
        share = np.mean([o["extra_parameter_share"][0] for o in overheads]) * 100
        extra = np.mean([o["percent_of_layer.de3_extra"][0] for o in overheads])
        out.append(f"Overhead: the prototypical networks add {share:.1f}% parameters; the distance signal adds "
                   f"{extra:.1f}% of one layer's time per exit check over entropy's.")
    return out


# ---- plots ----

def plot_task(task: str, task_runs: list[dict], entry: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    order = display_order()
    names = registry()
    bases = list(dict.fromkeys(names[n].rule.name for n in order))
    palette = dict(zip(bases, plt.get_cmap("tab10").colors, strict=False))
    colors = {n: palette[names[n].rule.name] for n in order}  # a study variant takes its rule's colour, dashed
    metric = entry["metric"]
    full = entry["gate"]["full_model"]["value"] * 100
    for name in order:
        curves = []
        for run in task_runs:
            table = run["_curves"]
            if table is None or "strategy" not in table:
                continue
            curve = table[table["strategy"] == name].sort_values("speedup", kind="stable")
            if len(curve):
                curves.append((np.concatenate([[1.0], curve["speedup"]]),
                               np.concatenate([[run["full_model"][metric] * 100], curve["metric"] * 100])))
        if not curves:
            continue
        # One line per strategy: with several seeds, their mean on a common grid up to the
        # speed-up every seed's curve reaches (linear interpolation, as the comparison uses).
        reach = min(xs.max() for xs, _ in curves)
        grid = np.linspace(1.0, reach, 120) if len(curves) > 1 else curves[0][0]
        mean = np.mean([np.interp(grid, xs, ys) for xs, ys in curves], axis=0) if len(curves) > 1 else curves[0][1]
        ax.plot(grid, mean, color=colors[name], lw=1.5, ls="--" if names[name].is_variant else "-", label=name,
                marker="." if len(curves) == 1 and len(grid) < 8 else None)
        for run in task_runs:
            for point in run["strategies"].get(name, {}).values():
                ax.scatter(point["speedup"], point[metric] * 100, color=colors[name], edgecolor="black", zorder=3, s=16)
    ax.axhline(full, color="grey", ls="--", lw=1, label="full model")
    trivial = entry["gate"]["trivial"]["value"] * 100
    ax.axhline(trivial, color="black", ls=":", lw=1, label="trivial predictor")
    ax.set_xlabel("achieved test layer speed-up (×)")
    ax.set_ylabel(f"{metric} (test, ×100)")
    learned = "" if entry["gate"]["learned"] else " — NOT LEARNED"
    seeds = f"mean of {len(task_runs)} seeds" if len(task_runs) > 1 else "one seed"
    ax.set_title(f"{task}: calibrated test curves{learned}\n(knobs chosen on validation; {seeds}; dots: named targets "
                 "per seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_prototype_space(runs: list[dict], path: Path) -> bool:
    """Per task (its first seed) and layer: validation samples in the 2-D PCA of the prototype
    space, coloured by gold label, hollow where the layer's classifier is wrong; prototypes as
    stars. False when no run wrote a projection (signals.prototype_space)."""
    from de3pipe.method.projection import FILE_NAME

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
        f"selection {cfg.calibration.selection}; calibrated curves over targets every {cfg.calibration.curve_step:g}×",
        **({"per-task recipes": "; ".join(
            f"{task}: " + ", ".join(f"{section}.{key} {value}" for section, keys in recipe.items()
                                    for key, value in keys.items())
            for task, recipe in cfg.recipes.items() if recipe)} if any(cfg.recipes.values()) else {}),
    }


def build_report(metrics_files: list[Path], out: Path, cfg: Config | None = None, setup: bool = False) -> dict:
    """report.md, summary.json and plots/ from the evaluations; ``setup`` states the config's
    training setup (the run's config files were given)."""
    cfg = cfg or Config()
    runs = collect(metrics_files)
    summary, _ = summarise(runs, cfg.report)
    summary["protocol"]["target_tolerance"] = cfg.report.target_tolerance
    if setup:
        summary["setup"] = setup_lines(cfg)
    summary["findings"] = findings(summary)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "plots", overwrite=True) as tmp:
        for task, entry in summary["tasks"].items():
            plot_task(task, [r for r in runs if r["task"] == task], entry, tmp / f"{task}.png")
        if plot_prototype_space(runs, tmp / "prototype_space.png"):
            summary["figures"] = {"prototype space per layer": "plots/prototype_space.png"}
    with atomic_file(out / "report.md") as handle:
        handle.write(markdown(summary) + _figures(summary))
    write_json(out / "summary.json", summary)
    return summary


def _figures(summary: dict) -> str:
    if not summary.get("figures"):
        return ""
    return "\n".join(["", "## Prototype space", "", *(f"![{name}]({path})" for name, path in summary["figures"].items()), ""])
