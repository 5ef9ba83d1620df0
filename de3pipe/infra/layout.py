"""Every file of a run, named once.

A run is one task and seed under the results folder: ``<results>/<task>/seed<seed>/``. The
stage table (``workflow.py``), the stages, the comparison and the report take every path from
here; no other module spells a file name. Built on a template root (``RunLayout.template()``)
the same names become the workflow's path patterns, with ``{results}``, ``{task}`` and
``{seed}`` left for Snakemake and DVC to fill in.

What lies inside a checkpoint folder is the model's own format (``modeling/``); what lies
inside the other folders is named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_RESULTS = "data"  # the results folder DVC versions; another config (a study) keeps its runs apart


@dataclass(frozen=True)
class PreparedFiles:
    """The prepared-data folder: one parquet file per split and the dataset record."""

    folder: Path

    def split(self, name: str) -> Path:
        return self.folder / f"{name}.parquet"

    @property
    def info(self) -> Path:
        return self.folder / "dataset.json"


@dataclass(frozen=True)
class SignalFiles:
    """The signals folder: one ``<split>.npz`` per split, and the optional prototype-space projection."""

    folder: Path

    def split(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    @property
    def prototype_space(self) -> Path:
        return self.folder / "prototype_space.npz"

    def submits(self) -> list[Path]:
        """The unlabeled official test splits' signals (GLUE's ``submit``, MNLI's two)."""
        return sorted(self.folder.glob("submit*.npz"))

    @classmethod
    def given(cls, path: Path, split: str) -> tuple[Path, list[Path]]:
        """What a stage given ``path`` reads: a signals folder's ``<split>.npz`` and its unlabeled
        splits, or ``path`` itself when it is one ``.npz`` file (with no unlabeled splits)."""
        if Path(path).is_dir():
            files = cls(Path(path))
            return files.split(split), files.submits()
        return Path(path), []


@dataclass(frozen=True)
class CalibrationFiles:
    folder: Path

    @property
    def thresholds(self) -> Path:
        return self.folder / "thresholds.json"

    @property
    def curves(self) -> Path:
        return self.folder / "curves.csv"


@dataclass(frozen=True)
class EvaluationFiles:
    folder: Path

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.json"

    @property
    def test_curves(self) -> Path:
        return self.folder / "test_curves.csv"

    @property
    def exits(self) -> Path:
        return self.folder / "exits.parquet"

    @property
    def points(self) -> Path:
        return self.folder / "points.npz"

    @property
    def submission(self) -> Path:
        return self.folder / "submission"

    @staticmethod
    def submission_in(folder: Path, point: str, file_name: str) -> Path:
        """A point's GLUE submission file in a submission folder (or the temporary one it is built in)."""
        return folder / point / file_name

    @property
    def headline(self) -> Path:
        return self.folder / "headline"

    @staticmethod
    def headline_in(folder: Path, name: str) -> Path:
        """One headline record in a headline folder (or the temporary one it is built in)."""
        return folder / f"{name}.json"


@dataclass(frozen=True)
class RunLayout:
    """The files of one run (task, seed)."""

    root: Path

    @classmethod
    def of(cls, results: str | Path, task: str, seed: int | str) -> RunLayout:
        return cls(Path(results) / task / f"seed{seed}")

    @classmethod
    def template(cls) -> RunLayout:
        """The run's paths as patterns: ``{results}/{task}/seed{seed}/...``."""
        return cls.of("{results}", "{task}", "{seed}")

    @classmethod
    def of_evaluation(cls, metrics_file: str | Path) -> RunLayout:
        """The run an evaluation's ``metrics.json`` belongs to."""
        return cls(Path(metrics_file).parent.parent)

    @property
    def prepared(self) -> PreparedFiles:
        return PreparedFiles(self.root / "prepared")

    @property
    def finetuned(self) -> Path:
        """Stage 1's checkpoint folder."""
        return self.root / "finetuned"

    @property
    def prototyped(self) -> Path:
        """Stage 2's checkpoint folder."""
        return self.root / "prototyped"

    @property
    def finetune_metrics(self) -> Path:
        return train_metrics_of(self.finetuned)

    @property
    def prototypes_metrics(self) -> Path:
        return train_metrics_of(self.prototyped)

    @property
    def signals(self) -> SignalFiles:
        return SignalFiles(self.root / "signals")

    @property
    def calibration(self) -> CalibrationFiles:
        return CalibrationFiles(self.root / "calibration")

    @property
    def evaluation(self) -> EvaluationFiles:
        return EvaluationFiles(self.root / "evaluation")


def train_metrics_of(checkpoint: str | Path) -> Path:
    """A training stage's record (loss curve, per-epoch validation, timings) of the checkpoint
    folder ``checkpoint``: ``train_metrics/<checkpoint name>.json`` beside it, not inside it, so
    that the report can declare it as an input of its own."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / "train_metrics" / f"{checkpoint.name}.json"


@dataclass(frozen=True)
class ReportFiles:
    folder: Path

    @classmethod
    def of(cls, results: str | Path) -> ReportFiles:
        return cls(Path(results) / "report")

    @property
    def page(self) -> Path:
        return self.folder / "report.md"

    @property
    def summary(self) -> Path:
        return self.folder / "summary.json"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    @staticmethod
    def task_plot(folder: Path, task: str) -> Path:
        return folder / f"{task}.png"

    @staticmethod
    def prototype_space_plot(folder: Path) -> Path:
        return folder / "prototype_space.png"
