"""Stage 3 of the pipeline (the method's stage 2): train the prototypical networks with DAR on the
stage-1 checkpoint (backbone and classifiers frozen by default); write the checkpoint and the
training record beside it."""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.data.prepare import PreparedData
from de3pipe.infra import tracking
from de3pipe.infra.io import refuse_existing, write_json
from de3pipe.modeling.training import train_prototypes


def run(data: Path, model: Path, out: Path, train_metrics: Path, cfg: Config, overwrite: bool = False,
        progress: bool = True) -> dict:
    """Write the ``prototyped`` checkpoint ``out`` and its training record ``train_metrics``."""
    prepared = PreparedData.open(data)
    cfg = cfg.for_task(prepared.task.name)
    refuse_existing([out, train_metrics], overwrite)
    with tracking.stage_run(cfg, "prototypes", prepared.task.name, ("prototypes",)) as logger:
        tracking.log_prepared_splits(logger, prepared, ["train", "validation"])
        summary = train_prototypes(prepared, cfg, model, out, overwrite, progress=progress)
        write_json(train_metrics, summary)
        tracking.log_training(logger, summary, "validation_nearest", train_metrics)
    return summary
