"""The ``de3pipe`` command: it parses arguments and calls the library, one subcommand per
pipeline stage (``de3pipe/stages/``) plus predict, speed and the generated workflow files."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from de3pipe.cli_support import StageOptions, user_errors
from de3pipe.cli_support import stage_command as _stage_command

app = typer.Typer(
    name="de3pipe",
    help="Distance-enhanced early exiting for BERT (DE3-BERT): data, training, calibration, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("de3pipe")
stage_command = functools.partial(_stage_command, app)

DataOpt = Annotated[Path, typer.Option(help="prepared-data folder (written by `de3pipe prepare`)")]
ThresholdsOpt = Annotated[Path, typer.Option(help="thresholds.json from `de3pipe calibrate`")]
TrainMetricsOpt = Annotated[
    Path | None, typer.Option(help="the training record to write (default: train_metrics/<name of --out>.json beside --out)")
]


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))


@stage_command()
def prepare(
    task: Annotated[str, typer.Option(help="GLUE task: cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli")],
    out: Annotated[Path, typer.Option(help="output folder")],
    opts: StageOptions,
) -> None:
    """Read a GLUE task (GLUE folder or hub), carve the validation split, write parquet + stats."""
    from de3pipe.stages import prepare as stage

    _print_json(stage.run(task, out, opts.config, opts.overwrite)["splits"])


@stage_command()
def finetune(
    data: DataOpt,
    out: Annotated[Path, typer.Option(help="checkpoint folder to write (stage 1)")],
    opts: StageOptions,
    train_metrics: TrainMetricsOpt = None,
) -> None:
    """Stage 1: fine-tune the backbone and an internal classifier on every layer."""
    from de3pipe.infra.layout import train_metrics_of
    from de3pipe.stages import finetune as stage

    record = train_metrics or train_metrics_of(out)
    _print_json(stage.run(data, out, record, opts.config, opts.overwrite, opts.progress)["epochs"][-1])


@stage_command()
def prototypes(
    data: DataOpt,
    model: Annotated[Path, typer.Option(help="stage-1 checkpoint folder (from `de3pipe finetune`)")],
    out: Annotated[Path, typer.Option(help="checkpoint folder to write (stage 2)")],
    opts: StageOptions,
    train_metrics: TrainMetricsOpt = None,
) -> None:
    """Stage 2: train the prototypical networks with DAR (backbone and classifiers frozen by default)."""
    from de3pipe.infra.layout import train_metrics_of
    from de3pipe.stages import prototypes as stage

    record = train_metrics or train_metrics_of(out)
    _print_json(stage.run(data, model, out, record, opts.config, opts.overwrite, opts.progress)["epochs"][-1])


@stage_command()
def signals(
    data: DataOpt,
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder (from `de3pipe prototypes`)")],
    out: Annotated[Path, typer.Option(help="folder to write, one <split>.npz per split")],
    opts: StageOptions,
    splits: Annotated[str | None, typer.Option(help="comma-separated splits; default: all prepared splits")] = None,
) -> None:
    """One forward pass per split storing every layer's logits, entropy, r1, r2 and DR."""
    from de3pipe.stages import signals as stage

    names = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    stage.run(data, model, out, opts.config, names, opts.overwrite, opts.progress)


@stage_command()
def calibrate(
    signals_path: Annotated[Path, typer.Option("--signals", help="signals folder (uses validation.npz) or a .npz file")],
    out: Annotated[Path, typer.Option(help="folder to write thresholds.json and curves.csv into")],
    opts: StageOptions,
) -> None:
    """Sweep every strategy's knob on the validation split; freeze one operating point per target."""
    from de3pipe.stages import calibrate as stage

    thresholds = stage.run(signals_path, out, opts.config, opts.overwrite)
    for name, targets in thresholds["strategies"].items():
        for target, entry in targets.items():
            flag = "" if entry["status"] == "ok" else "  (unreachable: nearest point)"
            typer.echo(f"{name:9s} {target:>4s}x  {entry['knobs']}  val speed-up {entry['validation_speedup']:.2f}{flag}")
    for name, points in thresholds["curves"].items():
        reach = points[-1]["validation_speedup"] if points else 1.0
        typer.echo(f"{name:9s} calibrated curve: {len(points)} points up to {reach:.2f}x on validation")
    for name, points in (thresholds.get("guaranteed") or {"strategies": {}})["strategies"].items():
        for key, entry in points.items():
            typer.echo(f"{name:9s} {key}: {entry['knobs']}  risk {entry['calibration_risk']:.4f} (upper bound {entry['calibration_upper_bound']:.4f}), "
                       f"speed-up {entry['calibration_speedup']:.2f} on {entry['n']} examples")


@stage_command()
def evaluate(
    signals_path: Annotated[Path, typer.Option("--signals", help="signals folder (test.npz, submit*.npz) or a .npz")],
    thresholds: ThresholdsOpt,
    out: Annotated[Path, typer.Option(help="folder to write metrics.json, exits.parquet and submissions into")],
    opts: StageOptions,
    model: Annotated[Path | None, typer.Option(help="checkpoint, to measure wall-clock speed-up")] = None,
    data: Annotated[Path | None, typer.Option(help="prepared data, to measure wall-clock speed-up")] = None,
) -> None:
    """Apply the frozen thresholds to the test split: metrics, speed-ups, exits, curves, submission files."""
    from de3pipe.stages import evaluate as stage

    results = stage.run(signals_path, thresholds, out, opts.config, model, data, opts.overwrite)
    metric = next(iter(results["full_model"]))
    typer.echo(f"full model: {metric} {results['full_model'][metric]:.4f}")
    for name, targets in results["strategies"].items():
        for target, entry in targets.items():
            typer.echo(f"{name:9s} {target:>4s}x  {metric} {entry[metric]:.4f}  speed-up {entry['speedup']:.2f}")
    for name, points in results.get("guaranteed", {}).items():
        for key, entry in points.items():
            typer.echo(f"{name:9s} {key}: test risk {entry['risk']:.4f}  {metric} {entry[metric]:.4f}  "
                       f"speed-up {entry['speedup']:.2f}")
    for row in results.get("wallclock", []):
        typer.echo(f"wall-clock {row['strategy_name']} {row['target']}x: layer speed-up {row['layer_speedup']:.2f}, "
                   f"measured {row['wallclock_speedup']:.2f} (batch {row['batch_size']})")


@stage_command(seed=False)
def report(
    metrics: Annotated[list[Path], typer.Argument(help="evaluation metrics.json files (any tasks and seeds)")],
    out: Annotated[Path, typer.Option(help="folder for report.md, summary.json and plots/")],
    opts: StageOptions,
) -> None:
    """Strategies compared at matched speed-ups on calibrated curves, with bootstrap intervals; plots."""
    from de3pipe.infra.layout import ReportFiles
    from de3pipe.stages import report as stage

    stage.run(metrics, out, opts.config, setup=opts.config_given, overwrite=opts.overwrite)
    typer.echo(ReportFiles(out).page.read_text(encoding="utf-8"))


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder")],
    thresholds: ThresholdsOpt,
    texts: Annotated[list[str] | None, typer.Argument(help="texts; for sentence-pair tasks 'first<TAB>second'")] = None,
    file: Annotated[Path | None, typer.Option(help="a file with one text (or tab-separated pair) per line")] = None,
    strategy: Annotated[str, typer.Option(help="exit strategy")] = "de3",
    target: Annotated[str, typer.Option(help="target speed-up the thresholds were calibrated for, or a guaranteed point such as accuracy_drop-0.02")] = "2",
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
) -> None:
    """Classify texts with early exit; print label, exit layer and confidence per text."""
    from de3pipe.inference.predict import predict_texts, read_texts

    for row in predict_texts(model, thresholds, read_texts(texts or [], file), strategy, target, batch_size):
        typer.echo(f"{row['label']}\texit_layer={row['exit_layer']}\tconfidence={row['confidence']:.4f}\t{row['text']}")


@app.command()
@user_errors
def speed(
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder")],
    data: DataOpt,
    thresholds: ThresholdsOpt,
    split: Annotated[str, typer.Option(help="split to run")] = "test",
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,8,32,128",
    strategies: Annotated[str, typer.Option(help="comma-separated strategies")] = "de3,entropy",
    repeats: Annotated[int, typer.Option(help="timed repeats (the fastest counts)")] = 2,
    max_samples: Annotated[int | None, typer.Option(help="time a seeded random subset of this many samples")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON file for the figures")] = None,
) -> None:
    """Measure batched early exit against the full model: layer and wall-clock speed-ups."""
    from de3pipe.inference.wallclock import measure_speed

    sizes = [int(b) for b in batch_sizes.split(",")]
    for row in measure_speed(model, data, thresholds, split, sizes, strategies.split(","), repeats, max_samples, out):
        typer.echo(
            f"batch {row['batch_size']:4d} {row['strategy_name']:8s} {row['target']:>4s}x: layer {row['layer_speedup']:.2f}x, "
            f"wall-clock {row['wallclock_speedup']:.2f}x (ratio {row['ratio']:.2f}), "
            f"{row['samples_per_second']:.0f} samples/s (full model {row['full_samples_per_second']:.0f}/s)"
        )


@app.command("rerun-check")
@user_errors
def rerun_check(
    results: Annotated[Path, typer.Option(help="the results folder of your run")] = Path("data"),
    against: Annotated[str, typer.Option(help="the git revision whose committed headline metrics are the reference")] = "HEAD",
    reference: Annotated[Path | None, typer.Option(help="another results folder as the reference, instead of git")] = None,
    exact: Annotated[bool, typer.Option(help="demand bit-exact figures (same machine, same threads)")] = False,
) -> None:
    """Do your headline metrics agree with the committed ones, within the measured tolerance?"""
    from de3pipe.infra import reruns

    expected = reruns.headline_files(reference) if reference else reruns.committed_headline(results.as_posix(), against)
    lines, agrees = reruns.summary_lines(reruns.compare(expected, reruns.headline_files(results)),
                                         reruns.EXACT if exact else reruns.ACROSS_MACHINES)
    typer.echo("\n".join(lines))
    raise typer.Exit(0 if agrees else 1)


ConfigFileOpt = Annotated[Path, typer.Option(help="the pipeline config whose tasks and seeds the files describe")]


@app.command("dvc-yaml")
@user_errors
def dvc_yaml(config: ConfigFileOpt = Path("config/config.yaml")) -> None:
    """Print dvc.yaml, generated from the workflow's stage table (de3pipe/infra/workflow.py)."""
    from de3pipe.infra.workflow import dvc_yaml as generate
    from de3pipe.infra.workflow import read_dataset_files, read_tasks_and_seeds

    typer.echo(generate(*read_tasks_and_seeds(config), str(config), read_dataset_files(config)), nl=False)


@app.command("rules")
@user_errors
def rules(out: Annotated[Path, typer.Option(help="folder of the rule files")] = Path("workflow/rules")) -> None:
    """Write the Snakemake rule files (one per stage), generated from the stage table."""
    from de3pipe.infra.workflow import write_rules

    for path in write_rules(out):
        typer.echo(str(path))


@app.command("config-schema")
def config_schema() -> None:
    """Print the JSON schema of the config (workflow/schemas/config.schema.yaml is generated from it)."""
    from de3pipe.infra.workflow import schema_yaml

    typer.echo(schema_yaml(), nl=False)


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
