"""MLflow tracking: runs end FINISHED or FAILED, per-layer steps, and parallel writers lose nothing."""

import multiprocessing
import sqlite3

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
    uri, index = args
    with tracking.job_run(True, uri, "exp", f"job{index}", {"stage": "test", "task": f"t{index}"}) as run:
        run.log_params({"section": {f"k{i}": i for i in range(20)}})
        for step in range(10):
            run.log_metrics({f"m{i}": float(i * step) for i in range(10)}, step=step)
    return index


def test_parallel_jobs_lose_no_run_and_no_metric(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.start_parent(uri, "exp", "parent", {})  # the Snakefile's onstart creates the store first
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        assert sorted(pool.map(_job, [(uri, i) for i in range(8)])) == list(range(8))
    runs = _runs(tmp_path / "mlflow.db")
    assert len(runs) == 9
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        (count,) = conn.execute("select count(*) from metrics").fetchone()
    assert count == 8 * 10 * 10
