"""Stage 5 of the pipeline: sweep every strategy's knobs on the validation split and freeze one
operating point per named target, per point of each strategy's dense curve grid and per
guaranteed risk level (``thresholds.json``, with the validation curves in ``curves.csv``)."""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.infra import tracking
from de3pipe.infra.io import atomic_file, refuse_existing
from de3pipe.infra.layout import CalibrationFiles, SignalFiles
from de3pipe.method.calibration import calibrate
from de3pipe.method.operating_points import write_thresholds
from de3pipe.method.signals import Signals


def run(signals: Path, out: Path, cfg: Config, overwrite: bool = False) -> dict:
    """Write ``thresholds.json`` and ``curves.csv`` into ``out``; returns the thresholds."""
    validation_file, unlabeled_files = SignalFiles.given(signals, "validation")
    validation = Signals.load(validation_file)
    guarantee = cfg.calibration.guarantee
    unlabeled = [Signals.load(p) for p in unlabeled_files] if guarantee and guarantee.unlabeled else []
    files = CalibrationFiles(out)
    refuse_existing([files.thresholds, files.curves], overwrite)
    with tracking.stage_run(cfg, "calibrate", validation.meta["task"], ("calibration",)) as logger:
        tracking.log_signals_input(logger, validation)
        thresholds, curves = calibrate(validation, cfg.calibration, cfg.signals.eps, unlabeled)
        with atomic_file(files.curves) as handle:
            curves.to_csv(handle, index=False)
        write_thresholds(files.thresholds, thresholds)
        tracking.log_calibration(logger, thresholds, files)
    return thresholds
