"""The ``de3pipe`` command: one subcommand per pipeline stage (rules call these, nothing else)."""

from __future__ import annotations

import functools
import json
import logging
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

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (config/config.yaml layout)")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a config key: section.key=value (repeatable)")
]
SeedOpt = Annotated[int | None, typer.Option(help="random seed (overrides the config's seed)")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace an existing output instead of refusing")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
DataOpt = Annotated[Path, typer.Option(help="prepared-data folder (written by `de3pipe prepare`)")]


def _config(config: Path | None, overrides: list[str] | None, seed: int | None) -> Config:
    cfg = load_config(config, overrides)
    return cfg.model_copy(update={"seed": seed}) if seed is not None else cfg


def _user_errors(fn):
    """Turn a De3Error into one clear line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except De3Error as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
@_user_errors
def prepare(
    task: Annotated[str, typer.Option(help="GLUE task: cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli")],
    out: Annotated[Path, typer.Option(help="output folder")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Read a GLUE task (GLUE folder or hub), carve the validation split, write parquet + stats."""
    from de3pipe.data.prepare import prepare_task

    cfg = _config(config, set_, seed)
    info = prepare_task(task, cfg.data, cfg.seed, out, overwrite)
    _print_json(info["splits"])


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
    from de3pipe.training import finetune as run

    summary = run(PreparedData.open(data), _config(config, set_, seed), out, overwrite, progress=not quiet)
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
    from de3pipe.training import train_prototypes

    cfg = _config(config, set_, seed)
    summary = train_prototypes(PreparedData.open(data), cfg, model, out, overwrite, progress=not quiet)
    _print_json(summary["epochs"][-1])


@app.command()
@_user_errors
def signals(
    data: DataOpt,
    model: Annotated[Path, typer.Option(help="stage-2 checkpoint folder (from `de3pipe prototypes`)")],
    out: Annotated[Path, typer.Option(help="folder to write, one <split>.npz per split")],
    splits: Annotated[str, typer.Option(help="comma-separated splits")] = "validation,test",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """One forward pass per split storing every layer's logits, entropy, r1, r2 and DR."""
    from de3pipe.batching import encode_split
    from de3pipe.data.prepare import PreparedData
    from de3pipe.engine import collect_signals
    from de3pipe.io import atomic_dir
    from de3pipe.modeling import load_checkpoint

    cfg = _config(config, set_, None)
    prepared = PreparedData.open(data)
    network, tokenizer = load_checkpoint(model, require_stage="prototyped", trust_remote_code=cfg.model.trust_remote_code)
    if network.config.task != prepared.task.name:
        raise De3Error(f"{model} was trained on {network.config.task}, but {data} holds {prepared.task.name}")
    names = [s.strip() for s in splits.split(",") if s.strip()]
    frames = {name: prepared.split(name) for name in names}  # fail on a bad split name before any work
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, frame in frames.items():
            encoded = encode_split(frame, tokenizer, network.config.max_length)
            meta = {"task": prepared.task.name, "split": name, "checkpoint": str(model), "num_layers": network.num_layers}
            result = collect_signals(network, tokenizer, encoded, cfg.signals.batch_size, cfg.signals.eps, meta, not quiet)
            result.save(tmp / f"{name}.npz")
            log.info("%s: %d samples x %d layers", name, result.num_samples, result.num_layers)


@app.command()
@_user_errors
def calibrate(
    signals_file: Annotated[Path, typer.Option("--signals", help="validation-split signals (.npz)")],
    out: Annotated[Path, typer.Option(help="folder to write thresholds.json and curves.csv into")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Sweep every strategy's knob on the validation split; freeze one operating point per target."""
    from de3pipe.calibration import calibrate as run
    from de3pipe.io import atomic_dir, write_json
    from de3pipe.signals import Signals

    cfg = _config(config, set_, None)
    thresholds, curves = run(Signals.load(signals_file), cfg.calibration, cfg.signals.eps)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "thresholds.json", thresholds)
        curves.to_csv(tmp / "curves.csv", index=False)
    for name, targets in thresholds["strategies"].items():
        for target, entry in targets.items():
            flag = "" if entry["status"] == "ok" else "  (unreachable: nearest point)"
            typer.echo(f"{name:9s} {target:>4s}x  {entry['knobs']}  val speed-up {entry['validation_speedup']:.2f}{flag}")


@app.command()
@_user_errors
def evaluate(
    signals_file: Annotated[Path, typer.Option("--signals", help="test-split signals (.npz)")],
    thresholds: Annotated[Path, typer.Option(help="thresholds.json from `de3pipe calibrate`")],
    out: Annotated[Path, typer.Option(help="folder to write metrics.json, exits.parquet and submissions into")],
    submit_signals: Annotated[
        list[Path] | None, typer.Option(help="signals of the unlabeled official test set(s), for GLUE submission files")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="checkpoint, to measure wall-clock speed-up")] = None,
    data: Annotated[Path | None, typer.Option(help="prepared data, to measure wall-clock speed-up")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Apply the frozen thresholds to the test split: metrics, speed-ups, exits, submission files."""
    from de3pipe.evaluation import evaluate as run
    from de3pipe.evaluation import write_submissions
    from de3pipe.io import atomic_dir, read_json, write_json
    from de3pipe.signals import Signals
    from de3pipe.tasks import get_task

    cfg = _config(config, set_, None)
    frozen = read_json(thresholds, what="thresholds file")
    test = Signals.load(signals_file)
    results, exits = run(test, frozen)
    submits = [Signals.load(path) for path in submit_signals or []]
    if model is not None and data is not None and cfg.evaluation.wallclock:
        results["wallclock"] = _wallclock(model, data, test.meta["split"], frozen, cfg)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", results)
        exits.to_parquet(tmp / "exits.parquet", index=False)
        for submit in submits:
            file_name = get_task(submit.meta["task"]).submission_files[submit.meta["split"]]
            write_submissions(submit, frozen, file_name, tmp / "submission")
    _print_summary(results)


def _wallclock(model: Path, data: Path, split: str, frozen: dict, cfg: Config) -> list[dict]:
    from de3pipe.batching import encode_split
    from de3pipe.data.prepare import PreparedData
    from de3pipe.engine import EarlyExitEngine, measure_wallclock
    from de3pipe.evaluation import operating_points
    from de3pipe.modeling import load_checkpoint

    network, tokenizer = load_checkpoint(model, require_stage="prototyped")
    encoded = encode_split(PreparedData.open(data).split(split), tokenizer, network.config.max_length)
    engine = EarlyExitEngine(network, frozen.get("eps", cfg.signals.eps))
    points = [(n, t, s) for n, t, s, _ in operating_points(frozen) if n in cfg.evaluation.wallclock_strategies]
    rows = measure_wallclock(
        engine, tokenizer, encoded, [s for _, _, s in points], cfg.evaluation.wallclock_batch_size,
        cfg.evaluation.wallclock_repeats,
    )
    return [{"strategy_name": n, "target": t, **row} for (n, t, _), row in zip(points, rows, strict=True)]


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
    from de3pipe.predict import predict_texts, read_texts

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
    out: Annotated[Path | None, typer.Option(help="JSON file for the figures")] = None,
) -> None:
    """Measure batched early exit against the full model: layer and wall-clock speed-ups."""
    from de3pipe.batching import encode_split
    from de3pipe.data.prepare import PreparedData
    from de3pipe.engine import EarlyExitEngine, measure_wallclock
    from de3pipe.evaluation import operating_points
    from de3pipe.io import read_json, write_json
    from de3pipe.modeling import load_checkpoint

    frozen = read_json(thresholds, what="thresholds file")
    network, tokenizer = load_checkpoint(model, require_stage="prototyped")
    encoded = encode_split(PreparedData.open(data).split(split), tokenizer, network.config.max_length)
    engine = EarlyExitEngine(network, frozen.get("eps", 1e-8))
    wanted = set(strategies.split(","))
    points = [(n, t, s) for n, t, s, _ in operating_points(frozen) if n in wanted]
    rows = []
    for size in (int(b) for b in batch_sizes.split(",")):
        measured = measure_wallclock(engine, tokenizer, encoded, [s for _, _, s in points], size, repeats)
        for (name, target, _), row in zip(points, measured, strict=True):
            rows.append({"strategy_name": name, "target": target, **row})
            typer.echo(
                f"batch {size:4d} {name:8s} {target:>4s}x: layer {row['layer_speedup']:.2f}x, "
                f"wall-clock {row['wallclock_speedup']:.2f}x, {row['samples_per_second']:.0f} samples/s "
                f"(full model {row['full_samples_per_second']:.0f}/s)"
            )
    if out is not None:
        write_json(out, rows)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
