"""The ``de3pipe`` command: one subcommand per pipeline stage (rules call these, nothing else)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from de3pipe.config import Config, load_config
from de3pipe.errors import De3Error

app = typer.Typer(
    name="de3pipe",
    help="Distance-enhanced early exiting for BERT (DE3-BERT): data, training, calibration, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("de3pipe")

ConfigOpt = Annotated[
    list[Path] | None,
    typer.Option("--config", "-c", help="YAML config (config/config.yaml layout); repeat to layer files"),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a config key: section.key=value (repeatable)")
]
SeedOpt = Annotated[int | None, typer.Option(help="random seed (overrides the config's seed)")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace an existing output instead of refusing")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
DataOpt = Annotated[Path, typer.Option(help="prepared-data folder (written by `de3pipe prepare`)")]


def _config(config: list[Path] | None, overrides: list[str] | None, seed: int | None) -> Config:
    cfg = load_config(config, overrides)
    return cfg.model_copy(update={"seed": seed}) if seed is not None else cfg


def _user_errors(fn):
    """Turn a De3Error (or a full disk) into one clear line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except De3Error as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            typer.echo(
                f"error: no space left on the device{where} ({exc.strerror}); free some space and rerun. "
                "Outputs are written to a temporary folder first: the previous complete output, if any, is untouched.",
                err=True,
            )
            raise typer.Exit(2) from None

    return wrapper


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))


def _job(cfg: Config, stage: str, task: str, sections: tuple[str, ...]):
    """The MLflow run of one stage (a no-op unless tracking.enabled), with the config it read."""
    from de3pipe.infra import tracking

    run = tracking.job_run(
        cfg.tracking.enabled,
        cfg.tracking.uri,
        cfg.tracking.experiment,
        f"{stage} {task} seed{cfg.seed}",
        {"stage": stage, "task": task, "seed": cfg.seed},
    )
    return _JobRun(run, cfg, sections)


class _JobRun:
    def __init__(self, run, cfg: Config, sections: tuple[str, ...]):
        self._cm, self._cfg, self._sections = run, cfg, sections

    def __enter__(self):
        logger = self._cm.__enter__()
        dumped = self._cfg.model_dump()
        logger.log_params({"seed": self._cfg.seed} | {s: dumped[s] for s in self._sections})
        return logger

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


@app.command()
@_user_errors
def prepare(
    task: Annotated[str, typer.Option(help="GLUE task: cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli")],
    out: Annotated[Path, typer.Option(help="output folder")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Read a GLUE task (GLUE folder or hub), carve the validation split, write parquet + stats."""
    from de3pipe.data.prepare import PreparedData, prepare_task
    from de3pipe.data.tasks import get_task

    cfg = _config(config, set_, seed).for_task(get_task(task).name)
    with _job(cfg, "prepare", get_task(task).name, ("data",)) as run:
        info = prepare_task(task, cfg.data, cfg.seed, out, overwrite)
        run.log_metrics({f"rows.{name}": stats["rows"] for name, stats in info["splits"].items()})
        _log_splits(run, PreparedData.open(out), list(info["splits"]))
        run.log_artifact(out / "dataset.json")
    _print_json(info["splits"])


def _log_training(run, summary: dict, key: str, out: Path) -> None:
    """The training curve (loss, each exit's loss, learning rate per optimiser step), each epoch's
    per-layer validation metrics at that epoch's last step, and the last epoch against depth."""
    prefix = "validation" if key == "validation" else "nearest_prototype"
    run.log_curve(summary.get("curve", []))
    run.log_curve([
        {"step": epoch["step"], **{f"{prefix}_{name}.layer{m}": layer[name]
                                   for m, layer in enumerate(epoch[key], 1) for name in layer}}
        for epoch in summary["epochs"]
    ])
    last = summary["epochs"][-1]
    for name in last[key][0]:
        run.log_per_layer(f"{prefix}_{name}_per_layer", [layer[name] for layer in last[key]])
    run.log_metrics({"train_seconds": summary["seconds"], "steps": summary["steps"]})
    run.log_artifact(out / "train_metrics.json")


def _log_splits(run, prepared, names) -> None:
    """The prepared splits a stage read, as MLflow dataset inputs."""
    from de3pipe.data.prepare import source_label

    for name in names:
        rows = prepared.info["splits"][name]["rows"]
        run.log_dataset(f"{prepared.task.name}-{name}", prepared.path / f"{name}.parquet", name, rows,
                        source_label(prepared.info.get("source")))


@app.command()
@_user_errors
def finetune(
    data: DataOpt,
    out: Annotated[Path, typer.Option(help="checkpoint folder to write (stage 1)")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stage 1: fine-tune the backbone and an internal classifier on every layer."""
    from de3pipe.data.prepare import PreparedData
    from de3pipe.modeling.training import finetune as run_stage

    prepared = PreparedData.open(data)
    cfg = _config(config, set_, seed).for_task(prepared.task.name)
    with _job(cfg, "finetune", prepared.task.name, ("model", "finetune")) as run:
        _log_splits(run, prepared, ["train", "validation"])
        summary = run_stage(prepared, cfg, out, overwrite, progress=not quiet)
        _log_training(run, summary, "validation", out)
    _print_json(summary["epochs"][-1])


@app.command()
@_user_errors
def prototypes(
    data: DataOpt,
    model: Annotated[Path, typer.Option(help="stage-1 checkpoint folder (from `de3pipe finetune`)")],
    out: Annotated[Path, typer.Option(help="checkpoint folder to write (stage 2)")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stage 2: train the prototypical networks with DAR (backbone and classifiers frozen by default)."""
    from de3pipe.data.prepare import PreparedData
    from de3pipe.modeling.training import train_prototypes

    prepared = PreparedData.open(data)
    cfg = _config(config, set_, seed).for_task(prepared.task.name)
    with _job(cfg, "prototypes", prepared.task.name, ("prototypes",)) as run:
        _log_splits(run, prepared, ["train", "validation"])
        summary = train_prototypes(prepared, cfg, model, out, overwrite, progress=not quiet)
        _log_training(run, summary, "validation_nearest", out)
    _print_json(summary["epochs"][-1])


@app.command()
@_user_errors
def signals(
    data: DataOpt,
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder (from `de3pipe prototypes`)")],
    out: Annotated[Path, typer.Option(help="folder to write, one <split>.npz per split")],
    splits: Annotated[str | None, typer.Option(help="comma-separated splits; default: all prepared splits")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """One forward pass per split storing every layer's logits, entropy, r1, r2 and DR."""
    from de3pipe.data.prepare import PreparedData
    from de3pipe.method.metrics import task_metrics
    from de3pipe.stages.signals import run_signal_pass

    prepared = PreparedData.open(data)
    cfg = _config(config, set_, seed).for_task(prepared.task.name)
    names = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    with _job(cfg, "signals", prepared.task.name, ("signals",)) as run:

        def log_split(name, result):
            run.log_per_layer(f"{name}_mean_entropy_per_layer", result.entropy.mean(0).tolist())
            if result.has_labels:
                primary = prepared.task.metrics[0]
                run.log_per_layer(f"{name}_{primary}_per_layer", [
                    task_metrics(prepared.task, result.labels, result.pred[:, m])[primary] for m in range(result.num_layers)
                ])

        written = run_signal_pass(prepared, model, out, cfg, names, overwrite, not quiet, log_split)
        _log_splits(run, prepared, list(written))


def _signals_file(path: Path, split: str) -> Path:
    """Accept a signals folder (from `de3pipe signals`) or one .npz file."""
    return path / f"{split}.npz" if path.is_dir() else path


@app.command()
@_user_errors
def calibrate(
    signals_path: Annotated[Path, typer.Option("--signals", help="signals folder (uses validation.npz) or a .npz file")],
    out: Annotated[Path, typer.Option(help="folder to write thresholds.json and curves.csv into")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sweep every strategy's knob on the validation split; freeze one operating point per target."""
    from de3pipe.method.calibration import calibrate as run_stage
    from de3pipe.infra.io import atomic_file, write_json
    from de3pipe.method.signals import Signals

    cfg = _config(config, set_, seed)
    validation = Signals.load(_signals_file(signals_path, "validation"))
    _refuse_existing([out / "thresholds.json", out / "curves.csv"], overwrite)
    with _job(cfg, "calibrate", validation.meta["task"], ("calibration",)) as run:
        _log_splits_of_signals(run, validation)
        thresholds, curves = run_stage(validation, cfg.calibration, cfg.signals.eps)
        with atomic_file(out / "curves.csv") as handle:
            curves.to_csv(handle, index=False)
        write_json(out / "thresholds.json", thresholds)
        metric = thresholds["metric"]
        flat = {
            f"validation/{name}/{target}x/{field}": entry[key]
            for name, targets in thresholds["strategies"].items()
            for target, entry in targets.items()
            for field, key in ((metric, f"validation_{metric}"), ("speedup", "validation_speedup"))
        }
        run.log_metrics(flat)
        run.log_artifact(out / "thresholds.json")
        run.log_artifact(out / "curves.csv")
    for name, targets in thresholds["strategies"].items():
        for target, entry in targets.items():
            flag = "" if entry["status"] == "ok" else "  (unreachable: nearest point)"
            typer.echo(f"{name:9s} {target:>4s}x  {entry['knobs']}  val speed-up {entry['validation_speedup']:.2f}{flag}")
    for name, points in thresholds["curves"].items():
        reach = points[-1]["validation_speedup"] if points else 1.0
        typer.echo(f"{name:9s} calibrated curve: {len(points)} points up to {reach:.2f}x on validation")


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise De3Error(f"{', '.join(existing)} already exist(s); remove or pass --overwrite to replace")


@app.command()
@_user_errors
def evaluate(
    signals_path: Annotated[Path, typer.Option("--signals", help="signals folder (test.npz, submit*.npz) or a .npz")],
    thresholds: Annotated[Path, typer.Option(help="thresholds.json from `de3pipe calibrate`")],
    out: Annotated[Path, typer.Option(help="folder to write metrics.json, exits.parquet and submissions into")],
    model: Annotated[Path | None, typer.Option(help="checkpoint, to measure wall-clock speed-up")] = None,
    data: Annotated[Path | None, typer.Option(help="prepared data, to measure wall-clock speed-up")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Apply the frozen thresholds to the test split: metrics, speed-ups, exits, curves, submission files."""
    from de3pipe.method.evaluation import HEADLINE_DIR, POINTS_FILE, headline, write_submissions
    from de3pipe.method.evaluation import evaluate as run_stage
    from de3pipe.infra.io import atomic_dir, atomic_file, read_json, write_json, write_npz
    from de3pipe.method.signals import Signals
    from de3pipe.data.tasks import get_task

    frozen = read_json(thresholds, what="thresholds file")
    test = Signals.load(_signals_file(signals_path, "test"))
    cfg = _config(config, set_, seed).for_task(test.meta["task"])
    submits = [Signals.load(p) for p in sorted(signals_path.glob("submit*.npz"))] if signals_path.is_dir() else []
    outputs = [out / "metrics.json", out / "exits.parquet", out / "test_curves.csv", out / POINTS_FILE, out / "submission",
               out / HEADLINE_DIR]
    _refuse_existing(outputs, overwrite)
    with _job(cfg, "evaluate", test.meta["task"], ("evaluation", "calibration")) as run:
        results, exits, curves, points = run_stage(test, frozen)
        results["seed"] = cfg.seed
        task = get_task(test.meta["task"])
        if model is not None and data is not None and (cfg.evaluation.wallclock or cfg.evaluation.overhead):
            from de3pipe.inference.overhead import measure_overhead
            from de3pipe.inference.wallclock import measure_points, timing_inputs

            network, tokenizer, encoded = timing_inputs(model, data, test.meta["split"])
            if cfg.evaluation.wallclock:
                results["wallclock"] = measure_points(
                    network, tokenizer, encoded, frozen, cfg.evaluation.wallclock_strategies,
                    cfg.evaluation.wallclock_batch_size, cfg.evaluation.wallclock_repeats,
                )
            if cfg.evaluation.overhead:
                results["overhead"] = measure_overhead(
                    network, tokenizer, encoded, cfg.evaluation.wallclock_batch_size, cfg.signals.eps, cfg.seed
                )
        with atomic_file(out / "exits.parquet", "wb") as handle:
            exits.to_parquet(handle, index=False)
        with atomic_file(out / "test_curves.csv") as handle:
            curves.to_csv(handle, index=False)
        write_npz(out / POINTS_FILE, **points)
        with atomic_dir(out / "submission", overwrite=True) as tmp:
            for submit in submits:
                write_submissions(submit, frozen, task.submission_files[submit.meta["split"]], tmp)
        write_json(out / "metrics.json", results)
        with atomic_dir(out / HEADLINE_DIR, overwrite=True) as tmp:
            for name, record in headline(results, curves).items():
                write_json(tmp / f"{name}.json", record)
        _log_splits_of_signals(run, test)
        _log_evaluation(run, results, curves, task.metrics[0], out)
        if model is not None and cfg.tracking.log_model:
            from de3pipe.inference.serving import log_calibrated_model

            log_calibrated_model(run, model, thresholds, task)
    _print_summary(results)


def _log_splits_of_signals(run, signals) -> None:
    """A signals file a stage read, as an MLflow dataset input."""
    if signals.source is not None:
        run.log_dataset(f"{signals.meta['task']}-{signals.meta['split']}-signals", signals.source, signals.meta["split"],
                        signals.num_samples, signals.meta.get("checkpoint"))


def _log_evaluation(run, results: dict, curves, metric: str, out: Path) -> None:
    run.log_metrics({f"test.full_model.{k}": v for k, v in results["full_model"].items()})
    run.log_per_layer(f"test_{metric}_per_layer", [layer[metric] for layer in results["per_layer"]])
    run.log_per_layer("test_mean_entropy_per_layer", results["mean_entropy_per_layer"])
    for row in results.get("wallclock", []):
        run.log_metrics({f"wallclock_speedup/{row['strategy_name']}/{row['target']}x": row["wallclock_speedup"]})
    run.log_artifact(out / "metrics.json")
    run.log_artifact(out / "test_curves.csv")
    for name, targets in results["strategies"].items():
        with run.child(f"{name} {results['task']} seed{results['seed']}", {"strategy": name, "task": results["task"],
                                                                          "seed": results["seed"], "stage": "evaluate"}) as child:
            child.log_metrics({f"{target}x.{field}": entry[field]
                               for target, entry in targets.items() for field in (metric, "speedup")})
            # The calibrated test curve with step = speed-up x 100: comparing the strategy runs in the
            # UI overlays their curves, metric against speed-up.
            rows = curves[curves["strategy"] == name] if len(curves) else curves
            child.log_curve([{"step": round(r.speedup * 100), f"calibrated_curve.{metric}": getattr(r, metric)}
                             for r in rows.itertuples()])


def _print_summary(results: dict) -> None:
    metric = next(iter(results["full_model"]))
    typer.echo(f"full model: {metric} {results['full_model'][metric]:.4f}")
    for name, targets in results["strategies"].items():
        for target, entry in targets.items():
            typer.echo(f"{name:9s} {target:>4s}x  {metric} {entry[metric]:.4f}  speed-up {entry['speedup']:.2f}")
    for row in results.get("wallclock", []):
        typer.echo(
            f"wall-clock {row['strategy_name']} {row['target']}x: layer speed-up {row['layer_speedup']:.2f}, "
            f"measured {row['wallclock_speedup']:.2f} (batch {row['batch_size']})"
        )


@app.command()
@_user_errors
def predict(
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder")],
    thresholds: Annotated[Path, typer.Option(help="thresholds.json from `de3pipe calibrate`")],
    texts: Annotated[list[str] | None, typer.Argument(help="texts; for sentence-pair tasks 'first<TAB>second'")] = None,
    file: Annotated[Path | None, typer.Option(help="a file with one text (or tab-separated pair) per line")] = None,
    strategy: Annotated[str, typer.Option(help="exit strategy")] = "de3",
    target: Annotated[str, typer.Option(help="target speed-up the thresholds were calibrated for")] = "2",
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
) -> None:
    """Classify texts with early exit; print label, exit layer and confidence per text."""
    from de3pipe.inference.predict import predict_texts, read_texts

    lines = read_texts(texts or [], file)
    for row in predict_texts(model, thresholds, lines, strategy, target, batch_size):
        typer.echo(f"{row['label']}\texit_layer={row['exit_layer']}\tconfidence={row['confidence']:.4f}\t{row['text']}")


@app.command()
@_user_errors
def speed(
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder")],
    data: DataOpt,
    thresholds: Annotated[Path, typer.Option(help="thresholds.json from `de3pipe calibrate`")],
    split: Annotated[str, typer.Option(help="split to run")] = "test",
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,8,32,128",
    strategies: Annotated[str, typer.Option(help="comma-separated strategies")] = "de3,entropy",
    repeats: Annotated[int, typer.Option(help="timed repeats (the fastest counts)")] = 2,
    max_samples: Annotated[int | None, typer.Option(help="time a seeded random subset of this many samples")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON file for the figures")] = None,
) -> None:
    """Measure batched early exit against the full model: layer and wall-clock speed-ups."""
    from de3pipe.infra.io import read_json, write_json
    from de3pipe.inference.wallclock import measure_points, timing_inputs

    frozen = read_json(thresholds, what="thresholds file")
    network, tokenizer, encoded = timing_inputs(model, data, split, max_samples)
    rows = []
    for size in (int(b) for b in batch_sizes.split(",")):
        for row in measure_points(network, tokenizer, encoded, frozen, strategies.split(","), size, repeats):
            rows.append(row)
            typer.echo(
                f"batch {size:4d} {row['strategy_name']:8s} {row['target']:>4s}x: layer {row['layer_speedup']:.2f}x, "
                f"wall-clock {row['wallclock_speedup']:.2f}x (ratio {row['ratio']:.2f}), "
                f"{row['samples_per_second']:.0f} samples/s (full model {row['full_samples_per_second']:.0f}/s)"
            )
    if out is not None:
        write_json(out, rows)


@app.command()
@_user_errors
def report(
    metrics: Annotated[list[Path], typer.Argument(help="evaluation metrics.json files (any tasks and seeds)")],
    out: Annotated[Path, typer.Option(help="folder for report.md, summary.json and plots/")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Strategies compared at matched speed-ups on calibrated curves, with bootstrap intervals; plots."""
    from de3pipe.report.page import build_report

    cfg = _config(config, set_, None)
    _refuse_existing([out / "report.md", out / "summary.json"], overwrite)
    with _job(cfg, "report", "all", ("report",)) as run:
        build_report(metrics, out, cfg, setup=bool(config))
        run.log_artifact(out / "report.md")
        for plot in sorted((out / "plots").glob("*.png")):
            run.log_artifact(plot, "plots")
    typer.echo((out / "report.md").read_text(encoding="utf-8"))


@app.command("dvc-yaml")
@_user_errors
def dvc_yaml(
    config: Annotated[Path, typer.Option(help="the pipeline config whose tasks and seeds the report reads")] = Path(
        "config/config.yaml"
    ),
) -> None:
    """Print dvc.yaml, generated from the workflow's stage table (de3pipe/infra/workflow.py)."""
    import yaml

    from de3pipe.infra.workflow import dvc_yaml as generate

    tree = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    typer.echo(generate(tree.get("tasks", []), tree.get("seeds", []), str(config)), nl=False)


@app.command("config-schema")
def config_schema() -> None:
    """Print the JSON schema of the config (workflow/schemas/config.schema.yaml is generated from it)."""
    import yaml

    from de3pipe.config import pipeline_schema

    typer.echo(yaml.safe_dump(pipeline_schema(), sort_keys=False, width=1000), nl=False)


def _exit_on_sigterm(signum: int, _frame) -> None:
    # scancel, a cluster's preemption and Snakemake's own cancel send SIGTERM: unwind normally so
    # temporary outputs are removed and the MLflow run is marked FAILED instead of left RUNNING.
    raise SystemExit(128 + signum)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app()


if __name__ == "__main__":
    main()
