# Config validation, tracking of the invocation, and what the generated stage files use (the
# results folder, the config files the jobs read, each stage's config values, torch resources);
# those files come from the stage table in de3pipe/infra/workflow.py (`de3pipe rules`).
import os
import subprocess
import uuid
from datetime import datetime, timezone

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from de3pipe.config import load_config, merge, read_yaml
from de3pipe.errors import De3Error
from de3pipe.infra import tracking
from de3pipe.infra.layout import DEFAULT_RESULTS
from de3pipe.method.strategies import check_config
from de3pipe.data.tasks import get_task


def config_files():
    """The config files in Snakemake's merge order: the workflow's own, then --configfile ones."""
    cli = [os.path.relpath(p) for p in workflow.overwrite_configfiles]
    own = [os.path.relpath(p) for p in workflow.configfiles]
    return [*(p for p in own if p not in cli), *cli]


CONFIG_FILES = config_files()
merged = {}
for path in CONFIG_FILES:
    merged = merge(merged, read_yaml(path))
if merged != config:
    raise ValueError(
        "`snakemake --config key=value` overrides do not reach the jobs (they read the config files); "
        "put the values in a YAML file and pass it with --configfile"
    )
validate(config, schema="../schemas/config.schema.yaml")
try:
    SETTINGS = load_config(CONFIG_FILES)  # typed validation with clear messages, before any job
    check_config(SETTINGS)  # strategy names and knob grids, against the registry
except De3Error as error:
    raise ValueError(str(error)) from None

TASKS = config["tasks"]
for _task in TASKS:
    if _task not in SETTINGS.datasets:
        try:
            get_task(_task)
        except De3Error as error:
            raise ValueError(f"tasks: {error}") from None
SEEDS = config["seeds"]
RESULTS = config.get("results", DEFAULT_RESULTS)
# The default results folder keeps its logs in logs/; another one (a study) keeps them inside it.
LOGS = "logs" if RESULTS == DEFAULT_RESULTS else f"{RESULTS}/logs"
CONFIG_ARGS = " ".join(f"--config {path}" for path in CONFIG_FILES)


wildcard_constraints:
    task="|".join(TASKS),
    seed=r"\d+",


def _lookup(settings, key):
    node = settings.model_dump()
    for part in key.split("."):
        node = node[part]
    return node


def setting(key):
    """A config value a stage reads, with the job's task's recipe applied: a change to it reruns the
    rule (and what follows)."""
    return lambda wildcards: _lookup(SETTINGS.for_task(wildcards.task) if "task" in wildcards.keys() else SETTINGS, key)


def dataset_files(wildcards):
    """A dataset of your own: its files, so that changing one reruns exactly that task's stages
    (none for GLUE and for a hub dataset, whose entry is the param below)."""
    entry = SETTINGS.datasets.get(wildcards.task)
    return entry.files if entry is not None else []


def dataset_definition(wildcards):
    """The task's own dataset entry (None for GLUE): a change to it reruns exactly that task."""
    entry = SETTINGS.datasets.get(wildcards.task)
    return entry.model_dump() if entry is not None else None


# A torch job uses every core it is given; on one machine more of them at once only contend
# (and would spoil the wall-clock measurements), so they take all cores, one at a time
# (the default profile's torch_jobs limit). On a cluster each job has its own allocation, so
# the limit is not declared there: profiles/slurm sizes the jobs instead.
TORCH_THREADS = max(1, min(workflow.cores or 1, os.cpu_count() or 1))


def torch_resources(mem_mb, runtime):
    """Resources of a torch job: memory (MB) and runtime (minutes) may grow per attempt. The
    executor is known only once jobs are built (after parsing), hence the function."""
    one_at_a_time = lambda wildcards: int(workflow.local_exec)
    return {"torch_jobs": one_at_a_time, "mem_mb": mem_mb, "runtime": runtime}


onstart:
    # One MLflow parent run per invocation; jobs find it in the environment they inherit.
    if SETTINGS.tracking.enabled:
        uri = tracking.tracking_uri(SETTINGS.tracking.uri)
        problem = tracking.store_problem(uri)
        if problem:  # before any job: a store that is down would otherwise stall every job on retries
            raise WorkflowError(tracking.unreachable_message(uri, problem))
        if workflow.non_local_exec and uri.startswith(("sqlite:", "file:")):
            logger.warning(
                f"MLflow tracking URI {uri} is a local file: jobs on other nodes cannot share it safely. "
                "Start `mlflow server` on a host the nodes reach and export MLFLOW_TRACKING_URI=http://HOST:PORT "
                "(README, 'Running on a SLURM cluster')."
            )
        group = os.environ.setdefault(
            tracking.GROUP_ENV, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        )
        parent = tracking.start_parent(
            SETTINGS.tracking.uri,
            SETTINGS.tracking.experiment,
            f"snakemake {group}",
            {"run_group": group, "stage": "pipeline", "tasks": ",".join(TASKS), "seeds": ",".join(map(str, SEEDS))},
        )
        os.environ[tracking.PARENT_ENV] = parent.run_id
        link = tracking.training_runs_link(uri, parent.experiment_id)
        served = "" if uri.startswith("http") else f" (after `mlflow ui --backend-store-uri {uri}`)"
        logger.info(f"MLflow: the runs of this invocation, run \"snakemake {group}\", at {link}{served}")


onsuccess:
    if SETTINGS.tracking.enabled and tracking.PARENT_ENV in os.environ:
        tracking.end_parent(SETTINGS.tracking.uri, os.environ[tracking.PARENT_ENV], "FINISHED")
    # dvc.yaml describes the default config's graph: record what this run made in dvc.lock, so
    # `dvc status`/`dvc repro` agree with Snakemake. Once, here, after every job has finished
    # (DVC must never run inside parallel jobs).
    if CONFIG_FILES == ["config/config.yaml"] and RESULTS == DEFAULT_RESULTS and os.path.isdir(".dvc"):
        committed = subprocess.run(["dvc", "commit", "--force", "--quiet"], check=False)
        if committed.returncode != 0:
            logger.warning("`dvc commit --force` failed; run it by hand to record the outputs in dvc.lock")


onerror:
    if SETTINGS.tracking.enabled and tracking.PARENT_ENV in os.environ:
        tracking.end_parent(SETTINGS.tracking.uri, os.environ[tracking.PARENT_ENV], "FAILED")
