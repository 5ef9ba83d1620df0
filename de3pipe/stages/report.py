"""Stage 7 of the pipeline: the cross-task report (``report.md``, ``summary.json``, plots) over
every evaluation of the config's tasks and seeds, and its MLflow run."""

from __future__ import annotations

from pathlib import Path

from de3pipe.config import Config
from de3pipe.infra import tracking
from de3pipe.infra.io import refuse_existing
from de3pipe.infra.layout import ReportFiles
from de3pipe.method.strategies import check_report
from de3pipe.report.page import build_report


def run(metrics_files: list[Path], out: Path, cfg: Config, setup: bool = False, overwrite: bool = False) -> dict:
    """Write the report folder ``out`` from the evaluations' ``metrics.json`` (any tasks and seeds;
    each run's other files are found through the run layout). ``setup`` states the config's
    training setup in the report. Returns the summary."""
    check_report(cfg.report)
    files = ReportFiles(out)
    refuse_existing([files.page, files.summary], overwrite)
    with tracking.stage_run(cfg, "report", "all", ("report",)) as logger:
        summary = build_report(metrics_files, files, cfg, setup=setup)
        logger.log_artifact(files.page)
        for plot in sorted(files.plots.glob("*.png")):
            logger.log_artifact(plot, "plots")
    return summary
