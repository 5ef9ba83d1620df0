"""The task table: the one place that says what each task's files, columns, labels and metrics are.

GLUE's classification tasks are built in; a user's own datasets (config ``datasets``) join the same
table under their names when a config is loaded (:func:`register_datasets`), so no stage knows
which kind of task it runs.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from de3pipe.errors import De3Error


@dataclass(frozen=True)
class TsvFile:
    """How to read one file of the original GLUE TSV layout.

    ``columns`` maps our normalised column (``idx``, ``text_a``, ``text_b``, ``label``) to the
    file's header name, or to a 0-based column index for header-less files.
    """

    name: str
    columns: dict[str, str | int]
    has_header: bool = True
    n_columns: int | None = None  # fixed column count of header-less files


@dataclass(frozen=True)
class GlueTask:
    name: str  # canonical, lower case, as the hub's config name: "sst2"
    glue_dir_name: str  # folder in glue_data/: "SST-2"
    hub_columns: tuple[str, ...]  # text columns in nyu-mll/glue
    label_names: tuple[str, ...]  # index i is class i; the hub's ClassLabel order
    raw_labels: tuple[str, ...]  # how class i is spelled in GLUE TSVs and submission files
    metrics: tuple[str, ...]  # the first one selects operating points
    # normalised split name -> (TSV file, hub split name); "train", "test" (labeled official
    # dev), "submit" (unlabeled official test) and MNLI's extra mismatched pairs.
    splits: dict[str, tuple[TsvFile, str]] = field(default_factory=dict)
    submission_files: dict[str, str] = field(default_factory=dict)  # submit split -> GLUE file name
    is_regression: bool = False
    # SST-2's train split holds every phrase of each sentence's parse tree, its dev (our test)
    # whole sentences: validation must then be carved from whole sentences (data.validation_unit).
    train_holds_subphrases: bool = False
    # A user's own dataset: its config entry (files or hub split names, columns, labels); None for GLUE.
    dataset: Any = None

    @property
    def is_own(self) -> bool:
        return self.dataset is not None

    def with_label_names(self, names) -> GlueTask:
        """The task with the class names a stage recorded (a dataset of your own finds them in its
        train file); itself when none were recorded or they are the table's."""
        names = tuple(names or self.label_names)
        return self if names == self.label_names else dataclasses.replace(self, label_names=names, raw_labels=names)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.hub_columns) == 2

    @property
    def labeled_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.splits if not s.startswith("submit"))

    @property
    def submit_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.splits if s.startswith("submit"))


def _single(idx: str | int, text: str | int, label: str | int | None = None) -> dict[str, str | int]:
    cols: dict[str, str | int] = {"idx": idx, "text_a": text}
    if label is not None:
        cols["label"] = label
    return cols


def _pair(idx: str | None, a: str, b: str, label: str | None = None) -> dict[str, str | int]:
    cols: dict[str, str | int] = {"text_a": a, "text_b": b}
    if idx is not None:
        cols["idx"] = idx
    if label is not None:
        cols["label"] = label
    return cols


_BINARY = ("0", "1")
_RTE_LIKE = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in [
        GlueTask(
            name="cola",
            glue_dir_name="CoLA",
            hub_columns=("sentence",),
            label_names=("unacceptable", "acceptable"),
            raw_labels=_BINARY,
            metrics=("matthews", "accuracy"),
            splits={
                # CoLA train/dev have no header: source, label, author mark, sentence.
                "train": (TsvFile("train.tsv", {"text_a": 3, "label": 1}, False, 4), "train"),
                "test": (TsvFile("dev.tsv", {"text_a": 3, "label": 1}, False, 4), "validation"),
                "submit": (TsvFile("test.tsv", _single("index", "sentence")), "test"),
            },
            submission_files={"submit": "CoLA.tsv"},
        ),
        GlueTask(
            name="sst2",
            glue_dir_name="SST-2",
            hub_columns=("sentence",),
            label_names=("negative", "positive"),
            raw_labels=_BINARY,
            metrics=("accuracy",),
            splits={
                "train": (TsvFile("train.tsv", {"text_a": "sentence", "label": "label"}), "train"),
                "test": (TsvFile("dev.tsv", {"text_a": "sentence", "label": "label"}), "validation"),
                "submit": (TsvFile("test.tsv", _single("index", "sentence")), "test"),
            },
            submission_files={"submit": "SST-2.tsv"},
            train_holds_subphrases=True,
        ),
        GlueTask(
            name="mrpc",
            glue_dir_name="MRPC",
            hub_columns=("sentence1", "sentence2"),
            label_names=("not_equivalent", "equivalent"),
            raw_labels=_BINARY,
            metrics=("f1", "accuracy"),
            splits={
                "train": (TsvFile("train.tsv", _pair(None, "#1 String", "#2 String", "Quality")), "train"),
                "test": (TsvFile("dev.tsv", _pair(None, "#1 String", "#2 String", "Quality")), "validation"),
                "submit": (TsvFile("test.tsv", _pair("index", "#1 String", "#2 String")), "test"),
            },
            submission_files={"submit": "MRPC.tsv"},
        ),
        GlueTask(
            name="qqp",
            glue_dir_name="QQP",
            hub_columns=("question1", "question2"),
            label_names=("not_duplicate", "duplicate"),
            raw_labels=_BINARY,
            metrics=("f1", "accuracy"),
            splits={
                "train": (TsvFile("train.tsv", _pair("id", "question1", "question2", "is_duplicate")), "train"),
                "test": (TsvFile("dev.tsv", _pair("id", "question1", "question2", "is_duplicate")), "validation"),
                "submit": (TsvFile("test.tsv", _pair("id", "question1", "question2")), "test"),
            },
            submission_files={"submit": "QQP.tsv"},
        ),
        GlueTask(
            name="stsb",
            glue_dir_name="STS-B",
            hub_columns=("sentence1", "sentence2"),
            label_names=(),
            raw_labels=(),
            metrics=("pearson", "spearman"),
            is_regression=True,
        ),
        GlueTask(
            name="mnli",
            glue_dir_name="MNLI",
            hub_columns=("premise", "hypothesis"),
            label_names=("entailment", "neutral", "contradiction"),
            raw_labels=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            splits={
                "train": (TsvFile("train.tsv", _pair("index", "sentence1", "sentence2", "gold_label")), "train"),
                "test": (
                    TsvFile("dev_matched.tsv", _pair("index", "sentence1", "sentence2", "gold_label")),
                    "validation_matched",
                ),
                "test_mismatched": (
                    TsvFile("dev_mismatched.tsv", _pair("index", "sentence1", "sentence2", "gold_label")),
                    "validation_mismatched",
                ),
                "submit": (TsvFile("test_matched.tsv", _pair("index", "sentence1", "sentence2")), "test_matched"),
                "submit_mismatched": (
                    TsvFile("test_mismatched.tsv", _pair("index", "sentence1", "sentence2")),
                    "test_mismatched",
                ),
            },
            submission_files={"submit": "MNLI-m.tsv", "submit_mismatched": "MNLI-mm.tsv"},
        ),
        GlueTask(
            name="qnli",
            glue_dir_name="QNLI",
            hub_columns=("question", "sentence"),
            label_names=_RTE_LIKE,
            raw_labels=_RTE_LIKE,
            metrics=("accuracy",),
            splits={
                "train": (TsvFile("train.tsv", _pair("index", "question", "sentence", "label")), "train"),
                "test": (TsvFile("dev.tsv", _pair("index", "question", "sentence", "label")), "validation"),
                "submit": (TsvFile("test.tsv", _pair("index", "question", "sentence")), "test"),
            },
            submission_files={"submit": "QNLI.tsv"},
        ),
        GlueTask(
            name="rte",
            glue_dir_name="RTE",
            hub_columns=("sentence1", "sentence2"),
            label_names=_RTE_LIKE,
            raw_labels=_RTE_LIKE,
            metrics=("accuracy",),
            splits={
                "train": (TsvFile("train.tsv", _pair("index", "sentence1", "sentence2", "label")), "train"),
                "test": (TsvFile("dev.tsv", _pair("index", "sentence1", "sentence2", "label")), "validation"),
                "submit": (TsvFile("test.tsv", _pair("index", "sentence1", "sentence2")), "test"),
            },
            submission_files={"submit": "RTE.tsv"},
        ),
        GlueTask(
            name="wnli",
            glue_dir_name="WNLI",
            hub_columns=("sentence1", "sentence2"),
            label_names=("not_entailment", "entailment"),
            raw_labels=_BINARY,
            metrics=("accuracy",),
            splits={
                "train": (TsvFile("train.tsv", _pair("index", "sentence1", "sentence2", "label")), "train"),
                "test": (TsvFile("dev.tsv", _pair("index", "sentence1", "sentence2", "label")), "validation"),
                "submit": (TsvFile("test.tsv", _pair("index", "sentence1", "sentence2")), "test"),
            },
            submission_files={"submit": "WNLI.tsv"},
        ),
    ]
}

_ALIASES = {t.glue_dir_name.lower(): t.name for t in GLUE_TASKS.values()} | {"sts-b": "stsb", "sst-2": "sst2"}

CLASSIFICATION_TASKS = tuple(name for name, task in GLUE_TASKS.items() if not task.is_regression)


_OWN_TASKS: dict[str, GlueTask] = {}  # the loaded config's datasets


def own_task(name: str, dataset) -> GlueTask:
    """The task entry of a user's dataset (a ``DatasetConfig``): its label names are the declared
    ones, or empty until prepare finds them in the train file (then read from the prepared data)."""
    labels = tuple(dataset.labels or ())
    metrics = tuple(dict.fromkeys((dataset.metric, "accuracy")))
    return GlueTask(name=name, glue_dir_name=name, hub_columns=tuple(dataset.text_columns), label_names=labels,
                    raw_labels=labels, metrics=metrics, dataset=dataset,
                    submission_files={"submit": f"{name}.tsv"} if dataset.unlabeled else {})


def register_datasets(datasets: dict) -> None:
    """Make the config's datasets tasks (replacing any earlier config's); a name GLUE uses is refused."""
    for name in datasets:
        key = _ALIASES.get(name.lower(), name.lower())
        if key in GLUE_TASKS:
            raise De3Error(f"datasets.{name}: the name clashes with the GLUE task {key}; rename the dataset "
                           f"(e.g. my_{key})")
        if not name.replace("_", "").isalnum() or not name[:1].isalpha() or name != name.lower():
            raise De3Error(f"datasets.{name}: a dataset name is lower-case letters, digits and underscores, starting "
                           "with a letter (it names folders and workflow jobs)")
    _OWN_TASKS.clear()
    _OWN_TASKS.update({name: own_task(name, dataset) for name, dataset in datasets.items()})


def get_task(name: str) -> GlueTask:
    """Look a task up by its hub name ("sst2"), its GLUE folder name ("SST-2") or the name of one of
    the config's datasets; reject regression."""
    if name in _OWN_TASKS:
        return _OWN_TASKS[name]
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        known = [*CLASSIFICATION_TASKS, *_OWN_TASKS]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise De3Error(
            f"unknown task {name!r}{hint}; choose one of the GLUE classification tasks ("
            + ", ".join(CLASSIFICATION_TASKS) + ") or declare your own under datasets: (README, 'Your own data')"
        )
    task = GLUE_TASKS[key]
    if task.is_regression:
        raise De3Error(
            f"task {name!r} is a regression task (similarity scores): DE3-BERT's prototypes need classes; "
            "choose one of: " + ", ".join(CLASSIFICATION_TASKS)
        )
    return task
