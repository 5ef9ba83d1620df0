"""Stage 6 of the pipeline: apply the frozen operating points once to the test split.

Writes the metrics of every named point (``metrics.json``, with wall-clock timings and the
overhead measurement when asked), every sample's exit (``exits.parquet``), the calibrated test
curves (``test_curves.csv``), every point's per-example exits and predictions (``points.npz``,
for the report's bootstrap), GLUE submission files and the compact headline records DVC reads
as metrics; logs the calibrated model to MLflow when asked.
"""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.data.tasks import get_task
from de3pipe.infra import tracking
from de3pipe.infra.io import atomic_dir, atomic_file, refuse_existing, write_json, write_npz
from de3pipe.infra.layout import EvaluationFiles, SignalFiles
from de3pipe.method.evaluation import evaluate, headline, write_submissions
from de3pipe.method.operating_points import read_thresholds
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import check_evaluation


def run(signals: Path, thresholds: Path, out: Path, cfg: Config, model: Path | None = None, data: Path | None = None,
        overwrite: bool = False) -> dict:
    """Write the evaluation folder ``out``; ``model`` and ``data`` allow the wall-clock timings
    and the logged model. Returns the metrics."""
    frozen = read_thresholds(thresholds)
    test_file, submit_files = SignalFiles.given(signals, "test")
    test = Signals.load(test_file)
    cfg = cfg.for_task(test.meta["task"])
    check_evaluation(cfg.evaluation)
    submits = [Signals.load(p) for p in submit_files]
    files = EvaluationFiles(out)
    refuse_existing([files.metrics, files.exits, files.test_curves, files.points, files.submission, files.headline],
                    overwrite)
    task = test.task
    with tracking.stage_run(cfg, "evaluate", task.name, ("evaluation", "calibration")) as logger:
        results, exits, curves, points = evaluate(test, frozen)
        results["seed"] = cfg.seed
        if model is not None and data is not None:
            results |= _measurements(model, data, test.meta["split"], frozen, cfg)
        with atomic_file(files.exits, "wb") as handle:
            exits.to_parquet(handle, index=False)
        with atomic_file(files.test_curves) as handle:
            curves.to_csv(handle, index=False)
        write_npz(files.points, **points)
        with atomic_dir(files.submission, overwrite=True) as tmp:
            for submit in submits:
                write_submissions(submit, frozen, task.submission_files[submit.meta["split"]], tmp)
        write_json(files.metrics, results)
        with atomic_dir(files.headline, overwrite=True) as tmp:
            for name, record in headline(results, curves).items():
                write_json(EvaluationFiles.headline_in(tmp, name), record)
        tracking.log_signals_input(logger, test)
        tracking.log_evaluation(logger, results, curves, task.metrics[0], files)
        if model is not None and cfg.tracking.log_model:
            from de3pipe.inference.serving import log_calibrated_model

            log_calibrated_model(logger, model, thresholds, task, cfg.serving)
    return results


def _measurements(model: Path, data: Path, split: str, frozen: dict, cfg: Config) -> dict:
    """Wall-clock speed-ups of the named points and de3's overhead, where the config asks for them."""
    settings = cfg.evaluation
    if not (settings.wallclock or settings.overhead):
        return {}
    from de3pipe.inference.overhead import measure_overhead
    from de3pipe.inference.wallclock import measure_points, timing_inputs

    network, tokenizer, encoded = timing_inputs(model, data, split)
    out = {}
    if settings.wallclock:
        out["wallclock"] = measure_points(network, tokenizer, encoded, frozen, settings.wallclock_strategies,
                                          settings.wallclock_batch_size, settings.wallclock_repeats)
    if settings.overhead:
        out["overhead"] = measure_overhead(network, tokenizer, encoded, settings.wallclock_batch_size, cfg.signals.eps,
                                           cfg.seed)
    return out
