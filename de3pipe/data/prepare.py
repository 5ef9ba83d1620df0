"""Prepare one task: read it, carve a validation split from train, apply caps, write parquet + stats.

Split names after preparation (method.md, **(decision)**):
``train`` / ``validation`` (carved from the official train, stratified, seeded),
``test`` (the official, labeled dev set), ``submit`` (the official, unlabeled test set; GLUE
submission files are made from it) and MNLI's ``test_mismatched`` / ``submit_mismatched``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from de3pipe.config import DataConfig
from de3pipe.data import glue_dir, hub
from de3pipe.errors import De3Error
from de3pipe.io import atomic_dir, read_json, write_json
from de3pipe.tasks import GlueTask, get_task

DATASET_INFO = "dataset.json"


def load_raw(task: GlueTask, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], str]:
    folder = cfg.resolved_glue_dir()
    if cfg.source == "glue_dir" or (cfg.source == "auto" and folder is not None):
        if folder is None:
            raise De3Error("data.source is glue_dir but neither data.glue_dir nor $GLUE_DIR is set")
        return glue_dir.read_task(folder, task), f"glue_dir:{folder}"
    return hub.read_task(task), f"hub:{hub.HUB_DATASET}"


def _stratified_take(frame: pd.DataFrame, size: float | int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (taken, rest); ``taken`` has ``size`` rows (or that fraction), class-balanced."""
    n_take = int(size) if size >= 1 else int(round(size * len(frame)))
    if n_take >= len(frame):
        return frame, frame.iloc[:0]
    if n_take <= 0:
        return frame.iloc[:0], frame
    counts = frame["label"].value_counts()  # unlabeled (-1) splits: one "class", so no stratification
    n_classes = len(counts)
    stratify = frame["label"] if counts.min() >= 2 and n_classes <= n_take <= len(frame) - n_classes else None
    rest, taken = train_test_split(frame, test_size=n_take, stratify=stratify, random_state=seed)
    return taken.sort_index(), rest.sort_index()


def split_stats(frame: pd.DataFrame, task: GlueTask) -> dict:
    labeled = frame[frame["label"] >= 0]
    counts = {task.label_names[i]: int((labeled["label"] == i).sum()) for i in range(task.num_labels)}
    return {"rows": len(frame), "labeled": len(labeled), "label_counts": counts}


def prepare_task(task_name: str, cfg: DataConfig, seed: int, out_dir: Path, overwrite: bool = False) -> dict:
    task = get_task(task_name)
    raw, source = load_raw(task, cfg)
    validation, train = _stratified_take(raw["train"], cfg.validation_size, seed)
    splits = {"train": train, "validation": validation} | {k: v for k, v in raw.items() if k != "train"}
    caps = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_validation_samples,
        "test": cfg.max_test_samples,
        "submit": cfg.max_submit_samples,
    }
    for split, cap in caps.items():
        if cap is not None:
            splits[split], _ = _stratified_take(splits[split], cap, seed)
    for split, frame in splits.items():
        if len(frame) == 0:
            raise De3Error(
                f"split {split!r} of {task.name} is empty after preparation; check data.validation_size and the caps"
            )
    info = {
        "task": task.name,
        "label_names": list(task.label_names),
        "source": source,
        "seed": seed,
        "data_config": cfg.model_dump(),
        "splits": {name: split_stats(frame, task) for name, frame in splits.items()},
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for name, frame in splits.items():
            frame.reset_index(drop=True).to_parquet(tmp / f"{name}.parquet", index=False)
        write_json(tmp / DATASET_INFO, info)
    return info


@dataclass(frozen=True)
class PreparedData:
    """A folder written by :func:`prepare_task`."""

    path: Path
    info: dict

    @classmethod
    def open(cls, path: str | Path) -> PreparedData:
        path = Path(path)
        info = read_json(path / DATASET_INFO, what="prepared-data index (run `de3pipe prepare` first):")
        return cls(path, info)

    @property
    def task(self) -> GlueTask:
        return get_task(self.info["task"])

    @property
    def split_names(self) -> list[str]:
        return list(self.info["splits"])

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.info["splits"]:
            raise De3Error(f"{self.path} has no split {name!r}; it has {self.split_names}")
        file = self.path / f"{name}.parquet"
        if not file.is_file():
            raise De3Error(f"{file} is missing; re-run `de3pipe prepare`")
        frame = pd.read_parquet(file)
        return frame.assign(label=frame["label"].astype(np.int64))
