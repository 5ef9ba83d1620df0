"""`snakemake --profile profiles/slurm all` on a real single-node SLURM cluster (tests/slurm/).

Every cluster job goes through sbatch (sacct lists it), one job killed while it runs is
reported failed and retried per the profile, the outputs equal those of the local run of the
same config and seed, and MLflow (a shared `mlflow server`, as on a cluster) has the runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.pipeline.conftest import ROOT, TINY_SEED, copy_workflow, pipeline_env, run

CLUSTER_SCRIPTS = ROOT / "tests" / "slurm"
TASK = "sst2"
TORCH_RULES = ("finetune", "prototypes", "signals", "evaluate")
# The test node has 2 CPUs: each torch job gets both (the local run's thread count too, so the
# results are bitwise comparable). The profile's own GPU requests stay: the node offers a GPU slot.
TEST_NODE_RESOURCES = [f"{rule}:{key}" for rule in TORCH_RULES for key in ("cpus_per_task=2", "gpu=1")]


def _cluster_is_up() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """The cluster of tests/slurm/start-cluster.sh; started (and stopped) here when it is not up."""
    if _cluster_is_up():
        yield
        return
    required = os.environ.get("DE3PIPE_REQUIRE_SLURM") == "1"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if required:
            pytest.fail("DE3PIPE_REQUIRE_SLURM=1 but no SLURM cluster runs and this user cannot start one (root + apt)")
        pytest.skip("no SLURM cluster, and starting one needs root and apt-get (tests/slurm/start-cluster.sh)")
    started = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "start-cluster.sh")], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"tests/slurm/start-cluster.sh failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPTS / "stop-cluster.sh")], capture_output=True)


def _training_run_is_open(tracking_uri: str, rule: str) -> bool:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("de3pipe")
    return experiment is not None and bool(
        client.search_runs([experiment.experiment_id], f"tags.stage = '{rule}' and attributes.status = 'RUNNING'")
    )


def _kill_first_running(rule: str, tracking_uri: str, killed: list[str], stop: threading.Event) -> None:
    """Inject a failure: SIGKILL the de3pipe process of the first ``rule`` job while it trains (its
    MLflow run open), as the kernel's OOM killer or a crash would. (Not `scancel`: sacct then reports "CANCELLED by
    <uid>", which snakemake-executor-plugin-slurm 2.8.0 does not recognise as a failure.)"""
    while not stop.is_set():
        queue = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True).stdout
        for line in queue.splitlines():
            job_id, state, comment = line.split("|", 2)
            if state != "RUNNING" or not comment.startswith(f"rule_{rule}_"):
                continue
            pids = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True).stdout
            for pid in (row.split()[0] for row in pids.splitlines()[1:] if row.split()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(part.endswith(b"de3pipe") for part in cmdline) and rule.encode() in cmdline:
                    while Path(f"/proc/{pid}").exists() and not _training_run_is_open(tracking_uri, rule):
                        time.sleep(0.2)
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        continue  # it ended first: nothing was injected, and the checks below fail
                    killed.append(job_id)
                    return
        time.sleep(0.5)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _comparable_metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    metrics.pop("wallclock")  # seconds differ between any two runs
    return metrics


@pytest.mark.slow
def test_tiny_config_on_slurm_matches_the_local_run(slurm_cluster, tiny_run, mlflow_server, tmp_path):
    project = copy_workflow(tmp_path / "project")
    config = (project / "config" / "test.yaml").read_text()
    one_task = re.sub(r"(?m)^tasks: .*$", f"tasks: [{TASK}]", config)
    assert one_task != config
    (project / "config" / "config.yaml").write_text(one_task)

    command = [
        "snakemake", "--profile", "profiles/slurm", "all",
        "--set-resources", *TEST_NODE_RESOURCES,
        "--slurm-init-seconds-before-status-checks", "2",  # a quiet test cluster: poll it often
    ]
    killed: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_first_running, args=("finetune", mlflow_server, killed, stop), daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        proc = run(command, project, check=False, timeout=1200, env=pipeline_env(MLFLOW_TRACKING_URI=mlflow_server))
    finally:
        stop.set()
    wall = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]

    # Every cluster job went through sbatch and SLURM accounting knows it.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    accounted = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(submitted), "--format", "JobID,State,Comment"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    states = {job_id: (state, comment) for job_id, state, comment in (line.split("|", 2) for line in accounted)}
    assert sorted(states) == sorted(submitted)
    rules = sorted(comment.split("_wildcards_")[0].removeprefix("rule_") for _, comment in states.values())
    # prepare + 4 torch rules for one task, the killed finetune retried; calibrate and report run locally.
    assert rules == sorted(["prepare", "finetune", "finetune", "prototypes", "signals", "evaluate"]), rules
    assert killed and states[killed[0]][0] == "FAILED", (killed, states)
    assert [state for state, _ in states.values()].count("COMPLETED") == len(submitted) - 1
    assert f"SLURM-job '{killed[0]}' failed" in output and "Trying to restart job" in output

    # The same config and seed give the same models, thresholds and metrics as the local run.
    local, cluster = (folder / "data" / TASK / f"seed{TINY_SEED}" for folder in (tiny_run, project))
    for model in ("finetuned", "prototyped"):
        assert _digest(cluster / model / "model.safetensors") == _digest(local / model / "model.safetensors"), model
    assert (cluster / "calibration" / "thresholds.json").read_text() == (local / "calibration" / "thresholds.json").read_text()
    assert _comparable_metrics(cluster / "evaluation" / "metrics.json") == _comparable_metrics(
        local / "evaluation" / "metrics.json"
    )
    assert (project / "data" / "report" / "report.md").is_file()

    # MLflow: one run per job; the killed attempt could not end its run, the invocation's end marked
    # it FAILED (not left RUNNING); the retry FINISHED.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("de3pipe")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_stage: dict[str, list[str]] = {}
    for found in runs:
        by_stage.setdefault(found.data.tags.get("stage", "child"), []).append(found.info.status)
    assert sorted(by_stage["finetune"]) == ["FAILED", "FINISHED"], by_stage
    for stage in ("pipeline", "prepare", "prototypes", "signals", "calibrate", "report"):
        assert by_stage[stage] == ["FINISHED"], (stage, by_stage[stage])
    assert by_stage["evaluate"] == ["FINISHED"] * (1 + 8)  # the job and one child run per strategy
    local_wall = float((tiny_run.parent / "wall_seconds.txt").read_text())
    print(f"\nSLURM run: {len(submitted)} sbatch jobs, {wall:.0f} s wall (local run of 2 tasks: {local_wall:.0f} s)")
