"""MLflow tracking behind one small service: one run per pipeline job.

Runs are grouped under one parent run per ``snakemake`` invocation (its id travels to the jobs
in ``DE3PIPE_PARENT_RUN_ID``; the Snakefile's ``onstart`` creates it) and carry a
``run_group`` tag. Everything goes through ``MlflowClient`` with explicit run ids and batched
writes, and every call is retried, so parallel jobs sharing one SQLite file neither lose runs
nor fail on "database is locked". A job that raises is marked FAILED, never left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from de3pipe.errors import De3Error

log = logging.getLogger(__name__)

PARENT_ENV = "DE3PIPE_PARENT_RUN_ID"
GROUP_ENV = "DE3PIPE_RUN_GROUP"
DEFAULT_DB = "mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """``$MLFLOW_TRACKING_URI`` wins (a team server), then the config, then ./mlflow.db (SQLite)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _retry(fn, *args, attempts: int = 12, **kwargs):
    """SQLite allows one writer at a time: wait and retry instead of failing the job."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the sqlite error in several types
            text = str(exc).lower()
            transient = "locked" in text or "busy" in text or "connection" in text or "timed out" in text
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = str(value)
    return flat


class RunLogger:
    """What a job logs into its run; ``None`` run id (tracking off) makes every call a no-op."""

    def __init__(self, client, run_id: str | None):
        self.client, self.run_id = client, run_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if self.active and params:
            from mlflow.entities import Param

            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
            for start in range(0, len(items), 100):  # MLflow's batch limit for params
                _retry(self.client.log_batch, self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.active and metrics:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
            for start in range(0, len(items), 1000):
                _retry(self.client.log_batch, self.run_id, metrics=items[start : start + 1000])

    def log_per_layer(self, name: str, values: list[float]) -> None:
        """A per-layer curve: ``step`` is the 1-based layer, so the MLflow UI draws it against depth."""
        if self.active:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(name, float(v), now, layer) for layer, v in enumerate(values, start=1)]
            _retry(self.client.log_batch, self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.active and Path(path).exists():
            _retry(self.client.log_artifact, self.run_id, str(path), folder)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            from mlflow.entities import RunTag

            _retry(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @contextlib.contextmanager
    def child(self, name: str, tags: dict[str, Any]) -> Iterator[RunLogger]:
        """A nested run (e.g. one per strategy), so the UI can compare strategies side by side."""
        if not self.active:
            yield self
            return
        parent = _retry(self.client.get_run, self.run_id)
        with _run(self.client, parent.info.experiment_id, name, tags | {"mlflow.parentRunId": self.run_id}) as run:
            yield run


@contextlib.contextmanager
def _run(client, experiment_id: str, name: str, tags: dict[str, Any]) -> Iterator[RunLogger]:
    run = _retry(client.create_run, experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
    run_id = run.info.run_id
    try:
        yield RunLogger(client, run_id)
    except BaseException:
        _retry(client.set_terminated, run_id, "FAILED")
        raise
    _retry(client.set_terminated, run_id, "FINISHED")


def _client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError as exc:  # pragma: no cover - mlflow is a dependency
        raise De3Error("tracking is on but mlflow is not installed; pip install mlflow") from exc
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str) -> str:
    found = _retry(client.get_experiment_by_name, name)
    if found is not None:
        return found.experiment_id
    try:
        return _retry(client.create_experiment, name)
    except Exception:  # noqa: BLE001 - another job created it first
        return _retry(client.get_experiment_by_name, name).experiment_id


@contextlib.contextmanager
def job_run(
    enabled: bool, uri: str | None, experiment: str, name: str, tags: dict[str, Any]
) -> Iterator[RunLogger]:
    """The run of one pipeline job (child of the invocation's parent run when there is one)."""
    if not enabled:
        yield RunLogger(None, None)
        return
    client = _client(tracking_uri(uri))
    all_tags = {"git_commit": git_commit(), **tags}
    if os.environ.get(GROUP_ENV):
        all_tags["run_group"] = os.environ[GROUP_ENV]
    if os.environ.get(PARENT_ENV):
        all_tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    with _run(client, experiment_id(client, experiment), name, all_tags) as run:
        yield run


def start_parent(uri: str | None, experiment: str, name: str, tags: dict[str, Any]) -> str:
    """Create the parent run of one pipeline invocation (and the store, before jobs race to)."""
    client = _client(tracking_uri(uri))
    run = _retry(
        client.create_run,
        experiment_id(client, experiment),
        run_name=name,
        tags={"git_commit": git_commit(), **{k: str(v) for k, v in tags.items()}},
    )
    return run.info.run_id


def end_parent(uri: str | None, run_id: str, status: str) -> None:
    """End an invocation's run, and mark FAILED the runs of its jobs that a SIGKILL (out of memory,
    a node lost, a time limit) left RUNNING: their processes could not close them."""
    client = _client(tracking_uri(uri))
    parent = _retry(client.get_run, run_id)
    group = parent.data.tags.get("run_group")
    if group:
        experiment = [parent.info.experiment_id]
        pending = _retry(client.search_runs, experiment, f"tags.run_group = '{group}' and attributes.status = 'RUNNING'")
        while pending:
            run = pending.pop()
            if run.info.run_id == run_id:
                continue
            _retry(client.set_tag, run.info.run_id, "de3pipe.end", "its process was killed before it could end the run")
            _retry(client.set_terminated, run.info.run_id, "FAILED")
            pending += _retry(
                client.search_runs,
                experiment,
                f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'",
            )
    _retry(client.set_terminated, run_id, status)
