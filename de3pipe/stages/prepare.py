"""Stage 1 of the pipeline: read a task (GLUE folder or hub), carve the seeded validation split,
apply the caps and write one parquet file per split with the dataset record."""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.data.prepare import PreparedData, prepare_task
from de3pipe.data.tasks import get_task
from de3pipe.infra import tracking


def run(task: str, out: Path, cfg: Config, overwrite: bool = False) -> dict:
    """Write the prepared-data folder ``out``; returns the dataset record."""
    name = get_task(task).name
    cfg = cfg.for_task(name)
    with tracking.stage_run(cfg, "prepare", name, ("data",)) as logger:
        info = prepare_task(name, cfg.data, cfg.seed, out, overwrite)
        prepared = PreparedData.open(out)
        logger.log_metrics({f"rows.{split}": stats["rows"] for split, stats in info["splits"].items()})
        tracking.log_prepared_splits(logger, prepared, list(info["splits"]))
        logger.log_artifact(prepared.files.info)
    return info
