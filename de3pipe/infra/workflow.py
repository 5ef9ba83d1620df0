"""The pipeline graph, defined once: the Snakemake rule files and ``dvc.yaml`` are generated from
this stage table (``de3pipe rules``, ``de3pipe dvc-yaml``; tests fail when they drift).

Each stage names its inputs and outputs (paths from the run layout, ``layout.py``), the command
that connects them, the config keys it reads (Snakemake passes them as ``params``, DVC lists
them as ``params`` of the config file: a change reruns the stage and what follows), its threads
and resources, and its module: the stage's code dependency is that module's import closure.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from de3pipe.infra.layout import DEFAULT_RESULTS, ReportFiles, RunLayout

CONFIG_FILE = "config/config.yaml"
PLOT_TEMPLATE = "workflow/plots/strategy_lines.json"  # Vega-Lite: colour = strategy, a line per file
RULES_DIR = Path("workflow/rules")
PACKAGE = Path(__file__).resolve().parent.parent
# Modules that only write to MLflow, never to a stage's outputs: fixing how a run is logged
# does not make results stale, so they are no code dependency (and their imports are not followed).
LOGGING_ONLY = frozenset({"de3pipe.infra.tracking", "de3pipe.inference.serving"})

# What a copy of the project needs to run the workflow elsewhere (CI's pipeline tests, the reruns benchmark).
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "dvc.yaml", ".dvcignore", "de3pipe")

RUN = RunLayout.template()
REPORT = ReportFiles.of("{results}")
TORCH = "torch"  # a torch job: every core it is given, one at a time on one machine


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str  # what the stage does, one sentence (the rule file's comment)
    inputs: dict[str, str]  # path templates; a trailing "/" marks a directory
    outputs: dict[str, str]
    args: tuple[tuple[str, str], ...]  # (flag, what): "input.x", "output.x", "folder.x", "task", "seed"; flag "" = positional
    params: tuple[str, ...]  # config keys the stage reads ("recipes": its task's recipe, per task)
    folders: dict[str, str] = field(default_factory=dict)  # folders the command writes its outputs into
    metrics: tuple[str, ...] = ()  # outputs that are DVC metrics (cache: false): compact headline figures
    plots: tuple[str, ...] = ()  # outputs drawn by `dvc plots show`: one line per strategy, a plot per task
    per_task: bool = True
    # a common.smk function of the job's wildcards giving more input files (a dataset of your own's files)
    sources: str | None = None
    threads: str = "1"  # TORCH: every core the job is given
    mem_mb: str = "4000"  # Snakemake expressions: a torch job's memory and runtime may grow per attempt
    runtime: str = "30"

    @property
    def module(self) -> str:
        return f"de3pipe.stages.{self.name}"


def _dir(path: Path) -> str:
    return f"{path}/"


GROWING_MEMORY = "lambda wildcards, attempt: 8000 * attempt"
GROWING_RUNTIME = "lambda wildcards, attempt: 240 * attempt"

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in [
        Stage(
            "prepare", "read the task (GLUE folder or hub) and carve the seeded validation split.",
            inputs={},
            outputs={"data": _dir(RUN.prepared.folder)},
            args=(("--task", "task"), ("--seed", "seed"), ("--out", "output.data")),
            params=("data", "recipes", "datasets"),
            sources="dataset_files",
        ),
        Stage(
            "finetune", "the method's stage 1: fine-tune the backbone and one internal classifier per layer.",
            inputs={"data": _dir(RUN.prepared.folder)},
            outputs={"model": _dir(RUN.finetuned), "train_metrics": str(RUN.finetune_metrics)},
            args=(("--data", "input.data"), ("--seed", "seed"), ("--out", "output.model"),
                  ("--train-metrics", "output.train_metrics")),
            params=("model", "finetune", "recipes"),
            threads=TORCH, mem_mb=GROWING_MEMORY, runtime=GROWING_RUNTIME,
        ),
        Stage(
            "prototypes", "the method's stage 2: train the prototypical networks with DAR (backbone and classifiers frozen).",
            inputs={"data": _dir(RUN.prepared.folder), "model": _dir(RUN.finetuned)},
            outputs={"model": _dir(RUN.prototyped), "train_metrics": str(RUN.prototypes_metrics)},
            args=(("--data", "input.data"), ("--model", "input.model"), ("--seed", "seed"), ("--out", "output.model"),
                  ("--train-metrics", "output.train_metrics")),
            params=("prototypes", "finetune.layer_weighting", "recipes"),
            threads=TORCH, mem_mb=GROWING_MEMORY, runtime=GROWING_RUNTIME,
        ),
        Stage(
            "signals", "one forward pass per split storing every layer's exit signals.",
            inputs={"data": _dir(RUN.prepared.folder), "model": _dir(RUN.prototyped)},
            outputs={"signals": _dir(RUN.signals.folder)},
            args=(("--data", "input.data"), ("--model", "input.model"), ("--seed", "seed"), ("--out", "output.signals")),
            params=("signals", "recipes"),
            threads=TORCH, mem_mb=GROWING_MEMORY, runtime=GROWING_RUNTIME,
        ),
        Stage(
            "calibrate", "sweep every strategy on the validation split and freeze one operating point per target.",
            inputs={"signals": _dir(RUN.signals.folder)},
            outputs={"thresholds": str(RUN.calibration.thresholds), "curves": str(RUN.calibration.curves)},
            folders={"out": str(RUN.calibration.folder)},
            args=(("--signals", "input.signals"), ("--seed", "seed"), ("--out", "folder.out")),
            params=("calibration", "signals.eps"),
        ),
        Stage(
            "evaluate", "apply the frozen thresholds to the test split; wall-clock speed-up of batched early exit.",
            inputs={
                "signals": _dir(RUN.signals.folder),
                "thresholds": str(RUN.calibration.thresholds),
                "data": _dir(RUN.prepared.folder),
                "model": _dir(RUN.prototyped),
            },
            outputs={
                "metrics": str(RUN.evaluation.metrics),
                "curves": str(RUN.evaluation.test_curves),
                "exits": str(RUN.evaluation.exits),
                "points": str(RUN.evaluation.points),
                "submission": _dir(RUN.evaluation.submission),
                "headline": _dir(RUN.evaluation.headline),
            },
            folders={"out": str(RUN.evaluation.folder)},
            args=(("--signals", "input.signals"), ("--thresholds", "input.thresholds"), ("--data", "input.data"),
                  ("--model", "input.model"), ("--seed", "seed"), ("--out", "folder.out")),
            params=("evaluation", "calibration"),
            metrics=("headline",),
            plots=("curves",),
            threads=TORCH,
        ),
        Stage(
            "report", "strategies compared at matched speed-ups on calibrated curves (bootstrap intervals), and the plots.",
            # Every file the report reads, per run (report/collect.py): the signals folder holds the
            # prototype-space projection where the config asks for one.
            inputs={
                "evaluations": str(RUN.evaluation.metrics),
                "curves": str(RUN.evaluation.test_curves),
                "points": str(RUN.evaluation.points),
                "finetune_metrics": str(RUN.finetune_metrics),
                "prototypes_metrics": str(RUN.prototypes_metrics),
                "signals": _dir(RUN.signals.folder),
            },
            outputs={"page": str(REPORT.page), "summary": str(REPORT.summary), "plots": _dir(REPORT.plots)},
            folders={"out": str(REPORT.folder)},
            args=(("--out", "folder.out"), ("", "input.evaluations")),
            params=("report",),
            per_task=False,
            mem_mb="2000", runtime="10",
        ),
    ]
}


# ---- code dependencies ----

def _module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    for candidate in (PACKAGE.joinpath(*parts).with_suffix(".py"), PACKAGE.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The de3pipe modules a source file imports, at module level or inside functions, and the
    packages they live in (importing a module runs its package's ``__init__``)."""
    found: set[str] = set()
    for node in _running_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    found = {name for name in found if name.split(".")[0] == "de3pipe"}
    return found | {".".join(name.split(".")[:n]) for name in found for n in range(1, name.count(".") + 1)}


def _running_nodes(tree: ast.AST):
    """Every node of ``tree`` but the bodies of ``if TYPE_CHECKING:`` (imports for annotations only,
    which never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def code_files(stage_name: str) -> tuple[str, ...]:
    """The source files a stage runs, relative to the project: its module and every de3pipe
    module that imports, at any depth, but the logging-only ones. Editing any other file (the
    report's rendering, the CLI, another stage) leaves the stage, and the results it made, current."""
    todo, files = [STAGES[stage_name].module], set()
    while todo:
        module = todo.pop()
        path = _module_file(module) if module not in LOGGING_ONLY else None
        if path is None or path in files:
            continue
        files.add(path)
        todo += sorted(imported_modules(path))
    return tuple(sorted(str(path.relative_to(PACKAGE.parent)) for path in files))


def is_directory(path: str) -> bool:
    """Path templates mark directories with a trailing slash."""
    return path.endswith("/")


# ---- dvc.yaml ----

def read_tasks_and_seeds(config: str | Path) -> tuple[list[str], list[int]]:
    """The tasks and seeds a config file runs (the report's inputs are one per task and seed)."""
    tree = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    return tree.get("tasks", []), tree.get("seeds", [])


def read_dataset_files(config: str | Path) -> list[str]:
    """The local files of the config's own datasets: prepare's DVC dependencies."""
    from de3pipe.config import load_config  # checks each entry as the stages will

    return sorted({path for entry in load_config(config).datasets.values() for path in entry.files})


def _dvc_path(template: str, task: str = "${item.task}", seed: str = "${item.seed}") -> str:
    return template.rstrip("/").format(results=DEFAULT_RESULTS, task=task, seed=seed)


def _dvc_command(stage: Stage, inputs: dict[str, list[str]], outputs: dict[str, str], folders: dict[str, str],
                 config: str) -> str:
    values = {"task": "${item.task}", "seed": "${item.seed}"}
    values |= {f"input.{k}": " ".join(v) for k, v in inputs.items()}
    values |= {f"output.{k}": v for k, v in outputs.items()} | {f"folder.{k}": v for k, v in folders.items()}
    args = " ".join(f"{flag} {values[what]}".strip() for flag, what in stage.args)
    quiet = " --quiet" if stage.per_task else ""
    return f"de3pipe {stage.name} {args} --config {config} --overwrite{quiet}"


def dvc_yaml(tasks: list[str], seeds: list[int], config: str = CONFIG_FILE, dataset_files: list[str] = ()) -> str:
    """``dvc.yaml``: per-task stages as a matrix over ``tasks`` x ``seeds`` (DVC reads them from the
    config through ``vars``), and the report over every evaluation of those tasks and seeds.

    A matrix entry cannot name its own task's files, so every prepare depends on all ``dataset_files``
    (the config's own datasets): a changed file reruns each prepare, and DVC reruns downstream only
    the task whose prepared data changed."""
    stages: dict[str, dict] = {}
    for stage in STAGES.values():
        if stage.per_task:
            inputs = {k: [_dvc_path(v)] for k, v in stage.inputs.items()}
        else:
            inputs = {k: [_dvc_path(v, t, str(s)) for t in tasks for s in seeds] for k, v in stage.inputs.items()}
        outputs = {k: _dvc_path(v) for k, v in stage.outputs.items()}
        folders = {k: _dvc_path(v) for k, v in stage.folders.items()}
        entry: dict = {}
        if stage.per_task:
            entry["matrix"] = {"task": "${tasks}", "seed": "${seeds}"}
        entry["cmd"] = _dvc_command(stage, inputs, outputs, folders, config)
        entry["deps"] = sorted({p for paths in inputs.values() for p in paths}) + list(code_files(stage.name))
        if stage.sources:
            entry["deps"] += list(dataset_files)
        if stage.params:
            entry["params"] = [{config: list(stage.params)}]
        entry["outs"] = [outputs[k] for k in stage.outputs if k not in stage.metrics]
        if stage.metrics:
            entry["metrics"] = [{outputs[k]: {"cache": False}} for k in stage.metrics]
        stages[stage.name] = entry
    plots = []
    for stage in STAGES.values():
        for key in stage.plots:
            for t in tasks:
                files = [_dvc_path(stage.outputs[key], t, str(s)) for s in seeds]
                plots.append({f"{t}: {stage.name} curves, one line per strategy": {
                    "x": "speedup", "y": dict.fromkeys(files, "metric"), "template": PLOT_TEMPLATE,
                }})
    document = {"vars": [config], "stages": stages, "plots": plots}
    header = (
        "# Generated from de3pipe/infra/workflow.py by `de3pipe dvc-yaml` — do not edit by hand;\n"
        "# a test fails when this file and the workflow drift apart.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1000)


# ---- the Snakemake rule files ----

def _snakemake_path(template: str) -> str:
    """A path template as the rule file writes it: an f-string over the results folder with the
    task and seed wildcards."""
    text = template.rstrip("/").replace("{results}", "{RESULTS}").replace("{task}", "{{task}}").replace("{seed}", "{{seed}}")
    return f'f"{text}"'


def _rule_shell(stage: Stage) -> str:
    values = {"task": "{wildcards.task}", "seed": "{wildcards.seed}"}
    values |= {f"input.{k}": f"{{input.{k}}}" for k in stage.inputs}
    values |= {f"output.{k}": f"{{output.{k}}}" for k in stage.outputs}
    # an output folder is the folder of one of its declared outputs (Snakemake's lint wants no hard-coded prefix)
    values |= {f"folder.{k}": f"$(dirname {{output.{_file_in(stage, folder)}}})" for k, folder in stage.folders.items()}
    args = " ".join(f"{flag} {values[what]}".strip() for flag, what in stage.args)
    quiet = " --quiet" if stage.per_task else ""
    # Torch and BLAS use the job's threads, or on SLURM exactly the CPUs the job was given.
    threads = "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} "
    return _quoted(f"{threads}de3pipe {stage.name} {args} {{params.config}} --overwrite{quiet} > {{log}} 2>&1")


def _file_in(stage: Stage, folder: str) -> str:
    """The key of a file output of ``stage`` directly inside ``folder``."""
    return next(key for key, path in stage.outputs.items() if not is_directory(path) and str(Path(path).parent) == folder)


def rule_text(stage: Stage, number: int) -> str:
    """One stage's rule file: literal paths, command, params, threads and resources."""
    lines = [
        "# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.",
        f"# Stage {number}: {stage.doc}",
        f"rule {stage.name}:",
        "    input:",
    ]
    for key, path in stage.inputs.items():
        value = _snakemake_path(path)
        lines.append(f"        {key}={value}," if stage.per_task else f"        {key}=expand({value}, task=TASKS, seed=SEEDS),")
    if stage.sources:
        lines.append(f"        sources={stage.sources},")
    lines += ["        code=[", *(f'            "{f}",' for f in code_files(stage.name)), "        ],"]
    lines.append("    output:")
    for key, path in stage.outputs.items():
        value = _snakemake_path(path)
        lines.append(f"        {key}=directory({value})," if is_directory(path) else f"        {key}={value},")
    lines.append("    params:")
    lines.append("        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these")
    # the config values the stage reads (its task's recipe applied): a change reruns it
    lines += [f'        {key.replace(".", "_")}=setting("{key}"),' for key in stage.params if key not in ("recipes", "datasets")]
    if "datasets" in stage.params:  # the task's own entry only: editing one dataset reruns exactly its task
        lines.append("        dataset=dataset_definition,")
    where = "{{task}}.seed{{seed}}" if stage.per_task else stage.name
    log = f'f"{{LOGS}}/{stage.name}/{where}.log"' if stage.per_task else f'f"{{LOGS}}/{stage.name}.log"'
    lines += ["    log:", f"        {log},"]
    if stage.per_task:
        lines += ["    benchmark:", f'        f"{{LOGS}}/benchmarks/{stage.name}/{where}.tsv"']
    lines += ["    conda:", '        "../envs/de3pipe.yaml"']
    if stage.threads == TORCH:
        lines += ["    threads: TORCH_THREADS", "    resources:", "        **torch_resources(",
                  f"            mem_mb={stage.mem_mb},", f"            runtime={stage.runtime},", "        ),"]
    else:
        lines += [f"    threads: {stage.threads}", "    resources:", f"        mem_mb={stage.mem_mb},",
                  f"        runtime={stage.runtime},"]
    lines += ["    shell:", f"        {_rule_shell(stage)}"]
    return "\n".join(lines) + "\n"


def _quoted(command: str) -> str:
    return '"' + command.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rule_files() -> dict[str, str]:
    """File name -> text of every generated rule file."""
    return {f"{stage.name}.smk": rule_text(stage, number) for number, stage in enumerate(STAGES.values(), start=1)}


def write_rules(folder: Path = RULES_DIR) -> list[Path]:
    from de3pipe.infra.io import atomic_file

    written = []
    for name, text in rule_files().items():
        with atomic_file(folder / name) as handle:
            handle.write(text)
        written.append(folder / name)
    return written


# ---- the config schema ----

def pipeline_schema() -> dict:
    """JSON schema of config/config.yaml: the stage sections (from the typed config), the strategy
    names and knob grids of the registry, and the workflow's own keys.
    ``workflow/schemas/config.schema.yaml`` is this, generated."""
    from de3pipe.config import Config
    from de3pipe.data.tasks import CLASSIFICATION_TASKS
    from de3pipe.method.strategies import registry

    names = registry()
    servable = [n for n, entry in names.items() if entry.servable]
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "de3pipe pipeline config (generated by `de3pipe config-schema`; do not edit by hand)"
    defs = schema["$defs"]
    calibration = defs["CalibrationConfig"]["properties"]
    calibration["strategies"]["anyOf"][0]["items"] = {"enum": list(names)}
    calibration["grids"]["propertyNames"] = {"enum": [n for n, e in names.items() if e.rule.grid_defaults and not e.is_variant]}
    calibration["grids"]["default"] = {n: {k: list(v) for k, v in e.rule.grid_defaults.items()}
                                       for n, e in names.items() if e.rule.grid_defaults and not e.is_variant}
    defs["EvaluationConfig"]["properties"]["wallclock_strategies"]["items"] = {"enum": servable}
    report = defs["ReportConfig"]["properties"]
    report["reference"]["enum"] = list(names)
    report["comparisons"]["items"] = {"enum": list(names)}
    defs["PrimaryFamily"]["properties"]["against"]["items"] = {"enum": list(names)}
    schema["properties"] |= {
        "tasks": {
            "type": "array",
            "items": {"anyOf": [{"enum": list(CLASSIFICATION_TASKS)}, {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}]},
            "minItems": 1,
            "uniqueItems": True,
            "description": "the tasks to run: GLUE classification tasks and the names of datasets of your own (datasets:)",
        },
        "seeds": {
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 1,
            "uniqueItems": True,
            "description": "one full run per seed; the report gives mean and 95% CI over them",
        },
        "results": {
            "type": "string",
            "minLength": 1,
            "default": DEFAULT_RESULTS,
            "description": "folder of every run's outputs and the report (data: the one DVC versions)",
        },
    }
    schema["required"] = ["tasks", "seeds"]
    return schema


def schema_yaml() -> str:
    return yaml.safe_dump(pipeline_schema(), sort_keys=False, width=1000)


def copy_workflow(project: Path, folder: Path) -> Path:
    """The workflow of ``project`` (Snakefile, rules, configs, profiles, dvc.yaml and the package)
    copied into the new folder ``folder``."""
    import shutil

    folder.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = Path(project) / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / name)
    return folder
