"""The pipeline graph, defined once: Snakemake rules and ``dvc.yaml`` are both built from it.

Each stage names its inputs and outputs (path templates with ``{task}`` and ``{seed}``), the
``de3pipe`` arguments that connect them, and the config keys it reads: Snakemake passes those
keys as ``params`` (a change reruns the stage and what follows) and DVC lists them as ``params``
of ``config/config.yaml`` (the same effect for ``dvc repro``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

# Every path starts at the results folder (`results` in the config; `data` by default, the
# folder DVC versions): another config, such as config/study.yaml, keeps its runs apart.
DEFAULT_RESULTS = "data"
RUN = "{results}/{task}/seed{seed}"


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: dict[str, str]
    outputs: dict[str, str]  # a trailing "/" marks a directory
    args: str  # refers to {input.x}, {output.x}, {task}, {seed}
    params: tuple[str, ...]  # config keys the stage reads ("recipes": its task's recipe, per task)
    code: tuple[str, ...]  # library modules the stage runs; with what they import, its code dependency
    metrics: tuple[str, ...] = ()  # outputs that are DVC metrics (cache: false): compact headline figures
    plots: tuple[str, ...] = ()  # outputs drawn by `dvc plots show`: one line per strategy, a plot per task
    per_task: bool = True
    heavy: bool = False  # training: declares a gpu resource
    extra: dict = field(default_factory=dict)


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in [
        Stage(
            "prepare",
            inputs={},
            outputs={"data": f"{RUN}/prepared/"},
            args="--task {task} --seed {seed} --out {output.data}",
            params=("data", "recipes"),
            code=("de3pipe.data.prepare",),
        ),
        Stage(
            "finetune",
            inputs={"data": f"{RUN}/prepared/"},
            outputs={"model": f"{RUN}/finetuned/"},
            args="--data {input.data} --seed {seed} --out {output.model}",
            params=("model", "finetune", "recipes"),
            code=("de3pipe.modeling.training",),
            heavy=True,
        ),
        Stage(
            "prototypes",
            inputs={"data": f"{RUN}/prepared/", "model": f"{RUN}/finetuned/"},
            outputs={"model": f"{RUN}/prototyped/"},
            args="--data {input.data} --model {input.model} --seed {seed} --out {output.model}",
            params=("prototypes", "finetune.layer_weighting", "recipes"),
            code=("de3pipe.modeling.training",),
            heavy=True,
        ),
        Stage(
            "signals",
            inputs={"data": f"{RUN}/prepared/", "model": f"{RUN}/prototyped/"},
            outputs={"signals": f"{RUN}/signals/"},
            args="--data {input.data} --model {input.model} --seed {seed} --out {output.signals}",
            params=("signals", "recipes"),
            code=("de3pipe.stages.signals",),
            heavy=True,
        ),
        Stage(
            "calibrate",
            inputs={"signals": f"{RUN}/signals/"},
            outputs={"thresholds": f"{RUN}/calibration/thresholds.json", "curves": f"{RUN}/calibration/curves.csv"},
            args=f"--signals {{input.signals}} --seed {{seed}} --out {RUN}/calibration",
            params=("calibration", "signals.eps"),
            code=("de3pipe.method.calibration",),
        ),
        Stage(
            "evaluate",
            inputs={
                "signals": f"{RUN}/signals/",
                "thresholds": f"{RUN}/calibration/thresholds.json",
                "data": f"{RUN}/prepared/",
                "model": f"{RUN}/prototyped/",
            },
            outputs={
                "metrics": f"{RUN}/evaluation/metrics.json",
                "curves": f"{RUN}/evaluation/test_curves.csv",
                "exits": f"{RUN}/evaluation/exits.parquet",
                "points": f"{RUN}/evaluation/points.npz",
                "submission": f"{RUN}/evaluation/submission/",
                "headline": f"{RUN}/evaluation/headline/",
            },
            args=(
                "--signals {input.signals} --thresholds {input.thresholds} --data {input.data} "
                f"--model {{input.model}} --seed {{seed}} --out {RUN}/evaluation"
            ),
            params=("evaluation", "calibration"),
            code=("de3pipe.method.evaluation", "de3pipe.inference.wallclock", "de3pipe.inference.overhead"),
            metrics=("headline",),
            plots=("curves",),
        ),
        Stage(
            "report",
            inputs={
                "evaluations": f"{RUN}/evaluation/metrics.json",
                "curves": f"{RUN}/evaluation/test_curves.csv",
                "points": f"{RUN}/evaluation/points.npz",
            },
            outputs={
                "table": "{results}/report/report.md",
                "summary": "{results}/report/summary.json",
                "plots": "{results}/report/plots/",
            },
            args="--out {results}/report {input.evaluations}",
            params=("report",),
            code=("de3pipe.report.page",),
            per_task=False,
        ),
    ]
}

CONFIG_FILE = "config/config.yaml"
PLOT_TEMPLATE = "workflow/plots/strategy_lines.json"  # Vega-Lite: colour = strategy, a line per file
PACKAGE = Path(__file__).resolve().parent
ENTRY_POINT = "de3pipe.cli"  # every stage is a command of the CLI


def _module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    for candidate in (PACKAGE.joinpath(*parts).with_suffix(".py"), PACKAGE.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file() or not parts and candidate.name == "__init__.py" and candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """The de3pipe modules a source file imports, at module level or inside functions, and the
    packages they live in (importing a module runs its package's ``__init__``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    found = {name for name in found if name.split(".")[0] == "de3pipe"}
    return found | {".".join(name.split(".")[:n]) for name in found for n in range(1, name.count(".") + 1)}


@cache
def code_files(stage_name: str) -> tuple[str, ...]:
    """The source files a stage runs, relative to the project: the CLI module, the stage's library
    modules and every de3pipe module they import, at any depth. Editing another file (the report's
    code, say) leaves the stage, and the results it made, current. The CLI's own lazy imports are
    not followed: among them only tracking and serving are not a stage's library, and they write to
    MLflow, never to a stage's outputs."""
    todo, files = ["de3pipe", *STAGES[stage_name].code], set()
    files.add(PACKAGE / "cli.py")
    while todo:
        path = _module_file(todo.pop())
        if path is None or path in files:
            continue
        files.add(path)
        todo += sorted(_imported_modules(path))
    return tuple(sorted(str(path.relative_to(PACKAGE.parent)) for path in files))


def is_directory(path: str) -> bool:
    """Output templates mark directories with a trailing slash."""
    return path.endswith("/")


def plain_path(path: str, results: str = DEFAULT_RESULTS) -> str:
    """``path`` without the directory marker, under the results folder ``results``."""
    return path.rstrip("/").replace("{results}", results)


def command(
    stage: Stage, paths: dict[str, dict[str, str]], task: str, seed: str, config_args: str, results: str = DEFAULT_RESULTS
) -> str:
    """The shell command of ``stage`` with concrete (or templated) paths."""

    def substitute(match: re.Match) -> str:
        kind, key = match.group(1), match.group(2)
        return paths[kind][key]

    args = stage.args.replace("{task}", task).replace("{seed}", seed).replace("{results}", results)
    args = re.sub(r"\{(input|output)\.(\w+)\}", substitute, args)
    return f"de3pipe {stage.name} {args} {config_args}"


def dvc_yaml(tasks: list[str], seeds: list[int], config: str = CONFIG_FILE) -> str:
    """``dvc.yaml``: per-task stages as a matrix over ``tasks`` x ``seeds`` (read from the config
    through ``vars``), and the report over every evaluation."""

    def item(path: str) -> str:
        return plain_path(path).replace("{task}", "${item.task}").replace("{seed}", "${item.seed}")

    stages: dict[str, dict] = {}
    for stage in STAGES.values():
        if stage.per_task:
            paths = {
                "input": {k: item(v) for k, v in stage.inputs.items()},
                "output": {k: item(v) for k, v in stage.outputs.items()},
            }
            deps = list(paths["input"].values())
            cmd = command(stage, paths, "${item.task}", "${item.seed}", f"--config {config}") + " --overwrite --quiet"
        else:
            runs = [(t, s) for t in tasks for s in seeds]
            expanded = {k: [plain_path(v).format(task=t, seed=s) for t, s in runs] for k, v in stage.inputs.items()}
            deps = [p for values in expanded.values() for p in values]
            paths = {
                "input": {k: " ".join(v) for k, v in expanded.items()},
                "output": {k: plain_path(v) for k, v in stage.outputs.items()},
            }
            cmd = command(stage, paths, "", "", f"--config {config}") + " --overwrite"
        entry: dict = {}
        if stage.per_task:
            entry["matrix"] = {"task": "${tasks}", "seed": "${seeds}"}
        entry["cmd"] = cmd
        entry["deps"] = sorted(set(deps)) + list(code_files(stage.name))
        if stage.params:
            entry["params"] = [{config: list(stage.params)}]
        outs = [paths["output"][k] for k in stage.outputs if k not in stage.metrics]
        entry["outs"] = outs
        if stage.metrics:
            entry["metrics"] = [{paths["output"][k]: {"cache": False}} for k in stage.metrics]
        stages[stage.name] = entry
    plots = []
    for stage in STAGES.values():
        for key in stage.plots:
            for t in tasks:
                files = [plain_path(stage.outputs[key]).format(task=t, seed=s) for s in seeds]
                plots.append({f"{t}: {stage.name} curves, one line per strategy": {
                    "x": "speedup", "y": dict.fromkeys(files, "metric"), "template": PLOT_TEMPLATE,
                }})
    document = {"vars": [config], "stages": stages, "plots": plots}
    header = (
        "# Generated from de3pipe/infra/workflow.py by `de3pipe dvc-yaml` — do not edit by hand;\n"
        "# a test fails when this file and the workflow drift apart.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1000)
