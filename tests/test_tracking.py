"""MLflow tracking: runs end FINISHED or FAILED, per-layer steps, and parallel writers lose nothing."""

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from de3pipe import tracking


def _runs(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("select run_uuid, status, name from runs").fetchall()


def test_runs_finish_or_fail(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.job_run(True, uri, "exp", "ok", {"stage": "finetune"}) as run:
        run.log_params({"finetune": {"epochs": 2}, "seed": 1})
        run.log_per_layer("accuracy_per_layer", [0.5, 0.6, 0.7])
    with pytest.raises(RuntimeError), tracking.job_run(True, uri, "exp", "broken", {"stage": "finetune"}):
        raise RuntimeError("boom")
    statuses = {name: status for _, status, name in _runs(tmp_path / "mlflow.db")}
    assert statuses == {"ok": "FINISHED", "broken": "FAILED"}
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        steps = conn.execute("select step, value from metrics where key='accuracy_per_layer' order by step").fetchall()
        params = dict(conn.execute("select key, value from params").fetchall())
    assert steps == [(1, 0.5), (2, 0.6), (3, 0.7)]
    assert params == {"finetune.epochs": "2", "seed": "1"}


def test_tracking_off_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tracking.job_run(False, None, "exp", "x", {}) as run:
        run.log_metrics({"a": 1.0})
        run.log_artifact(tmp_path)
    assert not (tmp_path / "mlflow.db").exists()


def _job(args):
    uri, experiment, index, folder = args
    artifact = Path(folder) / f"artifact{index}.txt"
    artifact.write_text(f"job {index}\n")
    with tracking.job_run(True, uri, experiment, f"job{index}", {"stage": "test", "task": f"t{index}"}) as run:
        run.log_params({"section": {f"k{i}": i for i in range(20)}})
        for step in range(10):
            run.log_metrics({f"m{i}": float(i * step) for i in range(10)}, step=step)
        run.log_artifact(artifact)
    return index


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_parallel_jobs_lose_no_run_and_no_metric(store, tmp_path, request):
    """8 jobs at once, each with 20 params, 100 metric values and an artifact: nothing is lost and
    no job fails with "database is locked" (writes are batched and retried)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "sqlite" else request.getfixturevalue("mlflow_server")
    experiment = f"exp-{tmp_path.name}"
    parent = tracking.start_parent(uri, experiment, "parent", {})  # the Snakefile's onstart creates the store first
    # Separate processes, as Snakemake's jobs are; forked from a server that has imported mlflow
    # once (no store opened before the fork), so the 8 do not each pay the import.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "de3pipe.tracking"])
    with context.Pool(8) as pool:
        jobs = [(uri, experiment, i, str(tmp_path)) for i in range(8)]
        assert sorted(pool.map(_job, jobs)) == list(range(8))
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    runs = [run for run in client.search_runs([exp_id]) if run.info.run_id != parent]
    assert len(runs) == 8 and {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert len(run.data.params) == 20
        assert sum(len(client.get_metric_history(run.info.run_id, f"m{i}")) for i in range(10)) == 100
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == [f"artifact{run.info.run_name[3:]}.txt"]


_KILLED_JOB = """
import sys, time
from de3pipe import tracking
with tracking.job_run(True, sys.argv[1], "exp", "killed", {"stage": "finetune"}) as run:
    with run.child("strategy", {"stage": "finetune"}):
        print("started", flush=True)
        time.sleep(600)
"""


def test_runs_of_killed_jobs_end_failed_with_the_invocation(tmp_path):
    """SIGKILL leaves no chance to close a run: the invocation's end marks its RUNNING runs FAILED."""
    import signal
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent(uri, "exp", "snakemake", {"run_group": "g1", "stage": "pipeline"})
    env = {**os.environ, tracking.PARENT_ENV: parent, tracking.GROUP_ENV: "g1"}
    job = subprocess.Popen([sys.executable, "-c", _KILLED_JOB, uri], env=env, stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline().strip() == "started"
    job.send_signal(signal.SIGKILL)
    job.wait()
    other = tracking.start_parent(uri, "exp", "another invocation", {"run_group": "g2", "stage": "pipeline"})
    assert {status for _, status, _ in _runs(tmp_path / "mlflow.db")} == {"RUNNING"}
    tracking.end_parent(uri, parent, "FINISHED")
    statuses = {name: status for _, status, name in _runs(tmp_path / "mlflow.db")}
    assert statuses == {"snakemake": "FINISHED", "killed": "FAILED", "strategy": "FAILED", "another invocation": "RUNNING"}
    assert other
