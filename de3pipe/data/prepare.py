"""Prepare one task: read it, carve a validation split from train, apply caps, write parquet + stats.

Split names after preparation (method.md, **(decision)**):
``train`` / ``validation`` (carved from the official train, stratified, seeded),
``test`` (the official, labeled dev set), ``submit`` (the official, unlabeled test set; GLUE
submission files are made from it) and MNLI's ``test_mismatched`` / ``submit_mismatched``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from de3pipe.config import DataConfig
from de3pipe.data import glue_dir, hub, own
from de3pipe.errors import De3Error
from de3pipe.data.tasks import GlueTask, get_task
from de3pipe.infra.io import atomic_dir, read_json, write_json
from de3pipe.infra.layout import PreparedFiles


def load_raw(task: GlueTask, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict]:
    """The task's raw splits and where they came from: the kind of source and a fingerprint of its
    contents (sha256 per file), never the path it was reached through, so the prepared bytes do not
    depend on where the GLUE folder lives."""
    folder = cfg.resolved_glue_dir()
    if cfg.source == "glue_dir" or (cfg.source == "auto" and folder is not None):
        if folder is None:
            raise De3Error("data.source is glue_dir but neither data.glue_dir nor $GLUE_DIR is set")
        return glue_dir.read_task(folder, task), {"kind": "glue_dir", "sha256": glue_dir.fingerprint(folder, task)}
    frames = hub.read_task(task)
    return frames, {"kind": "hub", "dataset": hub.HUB_DATASET, "sha256": _frames_fingerprint(frames)}


def _frames_fingerprint(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {
        split: hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        for split, frame in frames.items()
    }


def source_label(source: dict | str | None) -> str | None:
    """A short human-readable origin for tracking: the source kind and a digest of its fingerprint."""
    if not isinstance(source, dict):
        return source
    digest = hashlib.sha256(json.dumps(source.get("sha256"), sort_keys=True).encode()).hexdigest()[:12]
    return f"{source.get('kind')}:{source.get('dataset', 'GLUE TSV')}@sha256:{digest}"


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


def whole_sentences(texts: pd.Series) -> np.ndarray:
    """Rows whose text is no contiguous word span of another row's text: in a phrase-level
    treebank split (SST-2's train) these are the parse trees' roots, the whole sentences."""
    unique = set(texts)
    inside: set[str] = set()
    for text in unique:
        words = text.split()
        for start in range(len(words)):
            for stop in range(start + 1, len(words) + 1 - (start == 0)):  # every proper span
                span = " ".join(words[start:stop])
                if span in unique:
                    inside.add(span)
    return ~texts.isin(inside).to_numpy()


def phrases_of(sentences: pd.Series) -> set[str]:
    """Every contiguous word span of ``sentences`` (the sentences themselves included)."""
    spans: set[str] = set()
    for text in sentences:
        words = text.split()
        spans.update(" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1))
    return spans


def carve_validation(train: pd.DataFrame, task: GlueTask, cfg: DataConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(validation, train, how): validation carved from ``train`` (method.md, "Validation like test").

    ``rows``: a stratified, seeded sample of train rows. ``sentences``: a stratified, seeded sample
    of whole sentences (validation_size counts or is a fraction of sentences), and every train row
    that is a phrase of a validation sentence is dropped, so no part of a validation sentence is
    trained on."""
    unit = cfg.validation_unit
    if unit == "auto":
        unit = "sentences" if task.train_holds_subphrases else "rows"
    texts = train["text_a"].str.strip()
    if unit == "rows":
        validation, rest = _stratified_take(train, cfg.validation_size, seed)
        return validation, rest, {"unit": "rows"}
    if task.is_pair:
        raise De3Error(f"data.validation_unit sentences is for single-sentence tasks; {task.name} has sentence pairs")
    is_sentence = whole_sentences(texts)
    validation, _ = _stratified_take(train[is_sentence], cfg.validation_size, seed)
    kept_out = texts.isin(phrases_of(texts[validation.index]))
    how = {
        "unit": "sentences",
        "whole_sentences_in_train": int(is_sentence.sum()),
        "train_rows_dropped_as_phrases_of_validation": int(kept_out.sum()) - len(validation),
    }
    return validation, train[~kept_out], how


def split_stats(frame: pd.DataFrame, task: GlueTask) -> dict:
    labeled = frame[frame["label"] >= 0]
    counts = {task.label_names[i]: int((labeled["label"] == i).sum()) for i in range(task.num_labels)}
    return {"rows": len(frame), "labeled": len(labeled), "label_counts": counts}


def load_own(task: GlueTask, cfg: DataConfig, seed: int) -> tuple[GlueTask, dict[str, pd.DataFrame], dict]:
    """A dataset of your own: its splits (test carved from train when there is no test file, stratified
    and seeded), the task with the class names found, and where it came from."""
    raw, source, names = own.read_dataset(task)
    task = task.with_label_names(names)
    carvings = ["validation"] + ([] if "test" in raw else ["test"])
    counts = raw["train"]["label"].value_counts()
    needed = len(carvings) + 1  # a member in each carved split and one left to train on
    thin = counts[counts < needed]
    if len(thin):
        label = names[int(thin.index[0])]
        raise De3Error(f"datasets.{task.name}.train: class {label!r} has {int(thin.iloc[0])} example(s); carving a "
                       f"stratified {' and '.join(carvings)} split from train needs at least {needed} per class; add "
                       "examples of it, merge it with another class, or give a test file")
    if "test" not in raw:
        raw["test"], raw["train"] = _stratified_take(raw["train"], cfg.test_size, seed)
        source["test"] = {"carved_from": "train", "size": cfg.test_size, "seed": seed}
    return task, raw, source


def prepare_task(task_name: str, cfg: DataConfig, seed: int, out_dir: Path, overwrite: bool = False) -> dict:
    task = get_task(task_name)
    if task.is_own:
        task, raw, source = load_own(task, cfg, seed)
    else:
        raw, source = load_raw(task, cfg)
    validation, train, carving = carve_validation(raw["train"], task, cfg, seed)
    splits = {"train": train, "validation": validation} | {k: v for k, v in raw.items() if k != "train"}
    caps = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_validation_samples,
        "test": cfg.max_test_samples,
        "submit": cfg.max_submit_samples,
    }
    for split, cap in caps.items():
        if cap is not None and split in splits:  # a dataset of your own may have no unlabeled split
            splits[split], _ = _stratified_take(splits[split], cap, seed)
    for split, frame in splits.items():
        if len(frame) == 0:
            raise De3Error(
                f"split {split!r} of {task.name} is empty after preparation; check data.validation_size and the caps"
            )
    classes = sorted(set(splits["train"]["label"]))
    if len(classes) < 2:
        names = [task.label_names[c] for c in classes if c >= 0]
        raise De3Error(
            f"the train split of {task.name} holds a single class ({', '.join(names) or 'no labels'}) after "
            "preparation; a classifier needs examples of every class: check the train file's labels, "
            "data.validation_size and data.max_train_samples"
        )
    info = {
        "task": task.name,
        "label_names": list(task.label_names),
        "source": source,
        "seed": seed,
        "validation": carving,
        # where the folder lives is not content; test_size applies to datasets of your own only
        "data_config": cfg.model_dump(exclude={"glue_dir"} | (set() if task.is_own else {"test_size"})),
        "splits": {name: split_stats(frame, task) for name, frame in splits.items()},
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        files = PreparedFiles(tmp)
        for name, frame in splits.items():
            frame.reset_index(drop=True).to_parquet(files.split(name), index=False)
        write_json(files.info, info)
    return info


@dataclass(frozen=True)
class PreparedData:
    """A folder written by :func:`prepare_task`."""

    path: Path
    info: dict

    @classmethod
    def open(cls, path: str | Path) -> PreparedData:
        path = Path(path)
        info = read_json(PreparedFiles(path).info, what="prepared-data index (run `de3pipe prepare` first):")
        return cls(path, info)

    @property
    def files(self) -> PreparedFiles:
        return PreparedFiles(self.path)

    @property
    def task(self) -> GlueTask:
        """The task, with the class names preparation recorded (a dataset of your own may find them
        in its train file)."""
        return get_task(self.info["task"]).with_label_names(self.info.get("label_names"))

    @property
    def split_names(self) -> list[str]:
        return list(self.info["splits"])

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.info["splits"]:
            raise De3Error(f"{self.path} has no split {name!r}; it has {self.split_names}")
        file = self.files.split(name)
        if not file.is_file():
            raise De3Error(f"{file} is missing; re-run `de3pipe prepare`")
        frame = pd.read_parquet(file)
        return frame.assign(label=frame["label"].astype(np.int64))
