"""MLflow tracking: runs end FINISHED or FAILED, per-layer steps, and parallel writers lose nothing."""

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from de3pipe.infra import tracking


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
    parent = tracking.start_parent(uri, experiment, "parent", {}).run_id  # the Snakefile's onstart creates the store first
    # Separate processes, as Snakemake's jobs are; forked from a server that has imported mlflow
    # once (no store opened before the fork), so the 8 do not each pay the import.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "de3pipe.infra.tracking"])
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
from de3pipe.infra import tracking
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
    parent = tracking.start_parent(uri, "exp", "snakemake", {"run_group": "g1", "stage": "pipeline"}).run_id
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


_JOB_THAT_LOSES_ITS_STORE = """
import sys, time
from pathlib import Path
from de3pipe.infra import tracking
out = Path(sys.argv[2])
with tracking.job_run(True, sys.argv[1], "exp", "job", {"stage": "prepare"}) as run:
    run.log_params({"data": {"validation_size": 0.1}})
    print("started", flush=True)
    sys.stdin.readline()  # the test stops the server here
    out.write_text("the stage's result\\n")
    start = time.monotonic()
    for step in range(50):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.log_artifact(out)
    print(f"tracking took {time.monotonic() - start:.1f}", flush=True)
"""


def test_a_store_that_goes_away_mid_job_costs_one_warning_not_the_work(tmp_path):
    """The server dies while a job runs: the job finishes, keeps its output, warns once, and
    waits on tracking well within the job budget."""
    import subprocess
    import sys
    import time

    from tests.conftest import running_mlflow_server

    (tmp_path / "server").mkdir()
    with running_mlflow_server(tmp_path / "server") as (uri, stop):
        job = subprocess.Popen([sys.executable, "-c", _JOB_THAT_LOSES_ITS_STORE, uri, str(tmp_path / "out.txt")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert job.stdout.readline().strip() == "started"
        stop()
        start = time.monotonic()
        out, err = job.communicate("go\n", timeout=tracking.JOB_BUDGET_S + 30)
    assert job.returncode == 0, err
    assert (tmp_path / "out.txt").read_text() == "the stage's result\n"
    warnings = [line for line in err.splitlines() if "MLflow tracking at" in line]
    assert len(warnings) == 1 and "goes on untracked and keeps its outputs" in warnings[0], err
    assert time.monotonic() - start < tracking.JOB_BUDGET_S + 10


def test_a_stage_whose_store_is_down_finishes_untracked(tmp_path, monkeypatch):
    """`de3pipe prepare` with tracking on and nothing listening at the URI: the stage's output is
    written, one warning says why, and no traceback."""
    import subprocess
    import sys
    import time

    from tests.conftest import _free_port, write_sst2

    glue = write_sst2(tmp_path / "glue")
    env = os.environ | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "de3pipe", "prepare", "--task", "sst2", "--out", str(tmp_path / "out"),
         "--set", "tracking.enabled=true", "--set", f"data.glue_dir={glue}", "--set", "data.validation_size=10"],
        capture_output=True, text=True, env=env, timeout=tracking.JOB_BUDGET_S + 60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "train.parquet").is_file()
    assert "Traceback" not in done.stderr and done.stderr.count("goes on untracked") == 1, done.stderr
    assert time.monotonic() - start < tracking.JOB_BUDGET_S


def test_the_store_check_names_the_uri_and_the_fixes(tmp_path):
    from tests.conftest import _free_port

    uri = f"http://127.0.0.1:{_free_port()}"
    problem = tracking.store_problem(uri, timeout=2)
    assert problem.startswith(f"the MLflow server at {uri} cannot be reached")
    message = tracking.unreachable_message(uri, problem)
    assert "mlflow server --host 127.0.0.1" in message and "tracking: {enabled: false}" in message
    assert tracking.store_problem(f"sqlite:///{tmp_path / 'mlflow.db'}") is None
    assert "cannot be written" in tracking.store_problem(f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}")


def test_a_long_job_keeps_tracking_after_the_budget_time_has_passed(tmp_path, monkeypatch):
    """The budget counts time spent waiting on the store, not the job's own work: a job that
    computes for longer than the budget still logs what it computed."""
    import time

    monkeypatch.setattr(tracking, "JOB_BUDGET_S", 0.5)
    monkeypatch.setattr(tracking._Budget.__init__, "__defaults__", (0.5,))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.job_run(True, uri, "exp", "long job", {"stage": "finetune"}) as run:
        time.sleep(1.0)  # the job's work, longer than the whole budget
        run.log_metrics({"loss": 0.5}, step=1)
        assert run.active
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("select value from metrics where key = 'loss'").fetchall() == [(0.5,)]


def test_the_training_runs_link_asks_for_the_training_view(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent(uri, "exp", "parent", {})  # the workflow links the experiment it just used
    link = tracking.training_runs_link(uri, parent.experiment_id)
    assert link == f"http://127.0.0.1:5000/#/experiments/{parent.experiment_id}/runs?workflowType=machine_learning"
    served = tracking.training_runs_link("http://tracking.example:5001/", "7")  # a server: its own address
    assert served == "http://tracking.example:5001/#/experiments/7/runs?workflowType=machine_learning"
