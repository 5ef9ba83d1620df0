"""The report page: ``report.md``, ``summary.json`` and the plots, from the evaluations.

The pieces stay apart as rliable keeps statistics apart from presentation: ``collect`` reads
the runs' files, ``comparison`` computes every number and reads no file, ``tables`` and
``findings`` put them in words, ``plots`` draws them; this module puts the page together.
"""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.infra.io import atomic_dir, atomic_file, write_json
from de3pipe.infra.layout import ReportFiles
from de3pipe.method.strategies import calibrated_names, compared_names, lookup
from de3pipe.report.collect import collect
from de3pipe.report.comparison import plot_lines, summarise
from de3pipe.report.findings import findings
from de3pipe.report.plots import plot_prototype_space, plot_task
from de3pipe.report.tables import markdown


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
        "calibration": f"targets {', '.join(f'{t:g}×' for t in cfg.calibration.targets)}; "
        + "".join(f"{grid}; " for grid in [_grids(cfg.calibration)] if grid)
        + f"{cfg.calibration.n_thresholds} thresholds per curve; "
        f"selection {cfg.calibration.selection}; calibrated curves over targets every {cfg.calibration.curve_step:g}×",
        **({"per-task recipes": "; ".join(
            f"{task}: " + ", ".join(f"{section}.{key} {value}" for section, keys in recipe.items()
                                    for key, value in keys.items())
            for task, recipe in cfg.recipes.items() if recipe)} if any(cfg.recipes.values()) else {}),
    }


def _grids(cfg) -> str:
    """Each calibrated strategy's configurable knob values, e.g. "de3 lam 0, 0.25, 0.5"."""
    return "; ".join(
        f"{name} {knob} {', '.join(f'{v:g}' for v in values)}"
        for name in calibrated_names(cfg) if not lookup(name).is_variant
        for knob, values in lookup(name).rule.grid(cfg).items()
    )


def build_report(metrics_files: list[Path], out: ReportFiles, cfg: Config | None = None, setup: bool = False) -> dict:
    """report.md, summary.json and plots/ from the evaluations; ``setup`` states the config's
    training setup (the run's config files were given)."""
    cfg = cfg or Config()
    runs = collect(metrics_files)
    summary, _ = summarise(runs, cfg.report)
    summary["protocol"]["target_tolerance"] = cfg.report.target_tolerance
    if setup:
        summary["setup"] = setup_lines(cfg)
    summary["findings"] = findings(summary, cfg.report)
    out.folder.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out.plots, overwrite=True) as tmp:
        for task, entry in summary["tasks"].items():
            task_runs = [r for r in runs if r["task"] == task]
            metric = entry["metric"]
            points = {name: [(p["speedup"], p[metric] * 100) for r in task_runs
                             for p in r["strategies"].get(name, {}).values()] for name in compared_names()}
            lines = plot_lines(task_runs, compared_names(), metric)
            plot_task(task, lines, points, entry, len(task_runs), ReportFiles.task_plot(tmp, task))
        projections = _first_projection_per_task(runs)
        if projections:
            plot_prototype_space(projections, ReportFiles.prototype_space_plot(tmp))
            relative = ReportFiles.prototype_space_plot(Path(out.plots.name)).as_posix()  # as report.md links it
            summary["figures"] = {"prototype space per layer": relative}
    with atomic_file(out.page) as handle:
        handle.write(markdown(summary) + _figures(summary))
    write_json(out.summary, summary)
    return summary


def _first_projection_per_task(runs: list[dict]) -> dict[str, dict]:
    firsts: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: (r["task"], r.get("seed") or 0)):
        if run["task"] not in firsts and run["_prototype_space"] is not None:
            firsts[run["task"]] = run["_prototype_space"]
    return firsts


def _figures(summary: dict) -> str:
    if not summary.get("figures"):
        return ""
    return "\n".join(["", "## Prototype space", "", *(f"![{name}]({path})" for name, path in summary["figures"].items()), ""])
