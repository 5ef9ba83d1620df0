"""MLflow tracking behind one small service: one run per pipeline job.

Runs are grouped under one parent run per ``snakemake`` invocation (its id travels to the jobs
in ``DE3PIPE_PARENT_RUN_ID``; the Snakefile's ``onstart`` creates it) and carry a
``run_group`` tag. Everything goes through ``MlflowClient`` with explicit run ids and batched
writes, and every call is retried, so parallel jobs sharing one SQLite file neither lose runs
nor fail on "database is locked". A job that raises is marked FAILED, never left RUNNING.

Tracking never costs work: the workflow checks the store before any job (:func:`store_problem`),
and inside a job every tracking call shares one time budget (:data:`JOB_BUDGET_S`); the first
call that fails (or the budget running out) disables tracking for the rest of the job with one
warning, and the stage goes on and keeps its outputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from de3pipe.errors import De3Error

if TYPE_CHECKING:
    from mlflow.entities import RunInfo

log = logging.getLogger(__name__)

PARENT_ENV = "DE3PIPE_PARENT_RUN_ID"
GROUP_ENV = "DE3PIPE_RUN_GROUP"
DEFAULT_DB = "mlflow.db"
JOB_BUDGET_S = 60.0  # the most a job waits on tracking, in total
CHECK_TIMEOUT_S = 8.0  # the workflow's start-up check of the store
# MLflow's own HTTP retries would wait minutes per call on a server that is down (7 retries,
# backoff factor 2, 120 s timeout); a job's budget needs short calls. Users may still override.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def tracking_uri(configured: str | None) -> str:
    """``$MLFLOW_TRACKING_URI`` wins (a team server), then the config, then ./mlflow.db (SQLite)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _retry(fn, *args, attempts: int = 12, deadline: float | None = None, **kwargs):
    """SQLite allows one writer at a time: wait and retry instead of failing the job (until
    ``deadline``, a time.monotonic() value, if given)."""
    delay, unreachable = 0.2, 0
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the sqlite error in several types
            text = str(exc).lower()
            contention = "locked" in text or "busy" in text  # SQLite's one writer: worth waiting for
            unreachable += "connection" in text or "timed out" in text  # a server: a few tries, then give up
            late = deadline is not None and time.monotonic() + delay > deadline
            if not (contention or 0 < unreachable <= 2) or attempt == attempts - 1 or late:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def store_problem(uri: str, timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """Why the tracking store at ``uri`` cannot be used (None when it can), found within ``timeout``
    seconds: an HTTP server must answer its /health check, a SQLite file's folder must be writable."""
    import urllib.error
    import urllib.request

    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as answer:  # noqa: S310
                if answer.status == 200:
                    return None
                return f"the MLflow server at {uri} answered its health check with HTTP {answer.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"the MLflow server at {uri} cannot be reached ({reason})"
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return f"the MLflow store {uri} cannot be written: {folder} is not a writable folder"
    return None


def unreachable_message(uri: str, problem: str) -> str:
    return (
        f"{problem}. Start it (e.g. `mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "
        "sqlite:///mlflow.db`), point MLFLOW_TRACKING_URI (or tracking.uri) at a running one, or turn tracking "
        "off with `tracking: {enabled: false}` in a file passed with --configfile. No job was started."
    )


class _Budget:
    """The tracking time of one job: the time spent inside tracking calls (waiting on a slow or
    failing store), not the job's own work, counts against it; every call shares it, and the first
    failure ends tracking for the job."""

    def __init__(self, uri: str, seconds: float = JOB_BUDGET_S):
        self.uri, self.left, self.failed = uri, seconds, False

    def call(self, fn, *args, **kwargs):
        if self.failed:
            return None
        if self.left <= 0:
            return self._give_up(f"the {JOB_BUDGET_S:.0f} s tracking budget of this job ran out")
        start = time.monotonic()
        try:
            return _retry(fn, *args, deadline=start + self.left, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any tracking failure: warn once, never fail the stage
            return self._give_up(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        finally:
            self.left -= time.monotonic() - start

    def _give_up(self, why: str) -> None:
        self.failed = True
        log.warning("MLflow tracking at %s failed (%s); this job goes on untracked and keeps its outputs", self.uri, why)
        return None


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
    """What a job logs into its run, every call within the job's tracking budget; ``None`` run id
    (tracking off, or the store failed) makes every call a no-op."""

    def __init__(self, client, run_id: str | None, budget: _Budget | None = None):
        self.client, self.run_id, self.budget = client, run_id, budget

    @property
    def active(self) -> bool:
        return self.run_id is not None and not self.budget.failed

    def _call(self, fn, *args, **kwargs):
        return self.budget.call(fn, *args, **kwargs)

    def within_budget(self, fn, *args, **kwargs):
        """Run a tracking call of one's own (fluent MLflow API, say) under the job's budget: a
        failure ends tracking for the job with one warning and returns None."""
        return self._call(fn, *args, **kwargs) if self.active else None

    def log_params(self, params: dict[str, Any]) -> None:
        if self.active and params:
            from mlflow.entities import Param

            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
            for start in range(0, len(items), 100):  # MLflow's batch limit for params
                self._call(self.client.log_batch, self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_curve([{"step": step or 0, **metrics}] if metrics else [])

    def log_per_layer(self, name: str, values: list[float]) -> None:
        """A per-layer curve: ``step`` is the 1-based layer, so the MLflow UI draws it against depth."""
        self.log_curve([{"step": layer, name: v} for layer, v in enumerate(values, start=1)])

    def log_curve(self, rows: list[dict[str, float]]) -> None:
        """Metrics, each row at its own ``step`` (a training curve: loss, lr per optimiser step); the one
        path every metric takes."""
        if self.active and rows:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(k, float(v), now, int(row["step"])) for row in rows for k, v in row.items()
                     if k != "step" and v is not None]
            for start in range(0, len(items), 1000):  # MLflow's batch limit for metrics
                self._call(self.client.log_batch, self.run_id, metrics=items[start : start + 1000])

    def log_dataset(self, name: str, path: str | Path, context: str, rows: int, origin: str | None = None) -> None:
        """A data file this stage read, as an MLflow dataset input (the runs table's Dataset column):
        its name, a digest of its bytes, where it lives and where it came from."""
        if not self.active or not Path(path).is_file():
            return
        import hashlib
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        source = json.dumps({"uri": str(Path(path).resolve())} | ({"origin": origin} if origin else {}))
        dataset = Dataset(name=name, digest=digest, source_type="local", source=source,
                          profile=json.dumps({"num_rows": rows}))
        self._call(self.client.log_inputs, self.run_id,
                   datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.active and Path(path).exists():
            self._call(self.client.log_artifact, self.run_id, str(path), folder)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            from mlflow.entities import RunTag

            self._call(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @contextlib.contextmanager
    def child(self, name: str, tags: dict[str, Any]) -> Iterator[RunLogger]:
        """A nested run (e.g. one per strategy), so the UI can compare strategies side by side."""
        parent = self._call(self.client.get_run, self.run_id) if self.active else None
        if parent is None:
            yield RunLogger(None, None)
            return
        with _run(self.client, parent.info.experiment_id, name, tags | {"mlflow.parentRunId": self.run_id},
                  self.budget) as run:
            yield run


@contextlib.contextmanager
def _run(client, experiment_id: str | None, name: str, tags: dict[str, Any], budget: _Budget) -> Iterator[RunLogger]:
    call = budget.call
    run = None if experiment_id is None else call(
        client.create_run, experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
    if run is None:  # the store failed: the job goes on untracked
        yield RunLogger(None, None)
        return
    run_id = run.info.run_id
    try:
        yield RunLogger(client, run_id, budget)
    except BaseException:
        call(client.set_terminated, run_id, "FAILED")
        raise
    call(client.set_terminated, run_id, "FINISHED")


def _client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError as exc:  # pragma: no cover - mlflow is a dependency
        raise De3Error("tracking is on but mlflow is not installed; pip install mlflow") from exc
    return MlflowClient(tracking_uri=uri)


# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it holds model training.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client, name: str, call=_retry) -> str | None:
    found = call(client.get_experiment_by_name, name)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            call(client.set_experiment_tag, found.experiment_id, *EXPERIMENT_KIND)
        return found.experiment_id
    try:
        return call(client.create_experiment, name, tags=dict([EXPERIMENT_KIND]))
    except Exception:  # noqa: BLE001 - another job created it first
        found = call(client.get_experiment_by_name, name)
        return None if found is None else found.experiment_id


@contextlib.contextmanager
def job_run(
    enabled: bool, uri: str | None, experiment: str, name: str, tags: dict[str, Any]
) -> Iterator[RunLogger]:
    """The run of one pipeline job (child of the invocation's parent run when there is one). A
    tracking failure never fails the job: see :class:`_Budget`."""
    if not enabled:
        yield RunLogger(None, None)
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    resolved = tracking_uri(uri)
    client = _client(resolved)
    budget = _Budget(resolved)
    all_tags = {"git_commit": git_commit(), **tags}
    if os.environ.get(GROUP_ENV):
        all_tags["run_group"] = os.environ[GROUP_ENV]
    if os.environ.get(PARENT_ENV):
        all_tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    with _run(client, experiment_id(client, experiment, budget.call), name, all_tags, budget) as run:
        yield run


def start_parent(uri: str | None, experiment: str, name: str, tags: dict[str, Any]) -> RunInfo:
    """Create the parent run of one pipeline invocation (and the store, before jobs race to)."""
    client = _client(tracking_uri(uri))
    run = _retry(
        client.create_run,
        experiment_id(client, experiment),
        run_name=name,
        tags={"git_commit": git_commit(), **{k: str(v) for k, v in tags.items()}},
    )
    return run.info


def training_runs_link(uri: str, experiment_id: str) -> str:
    """The UI link to an experiment's training runs. MLflow 3.17's UI ignores the experiment kind
    and opens its GenAI view unless the link asks for the training one (README, MLflow)."""
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def end_parent(uri: str | None, run_id: str, status: str) -> None:
    """End an invocation's run, and mark FAILED the runs of its jobs that a SIGKILL (out of memory,
    a node lost, a time limit) left RUNNING: their processes could not close them. A store that
    has gone away costs a warning, within the job budget, never the finished work."""
    resolved = tracking_uri(uri)
    client, call = _client(resolved), _Budget(resolved).call
    parent = call(client.get_run, run_id)
    if parent is None:
        return
    group = parent.data.tags.get("run_group")
    if group:
        experiment = [parent.info.experiment_id]
        pending = call(client.search_runs, experiment, f"tags.run_group = '{group}' and attributes.status = 'RUNNING'")
        while pending:
            run = pending.pop()
            if run.info.run_id == run_id:
                continue
            call(client.set_tag, run.info.run_id, "de3pipe.end", "its process was killed before it could end the run")
            call(client.set_terminated, run.info.run_id, "FAILED")
            pending += call(
                client.search_runs,
                experiment,
                f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'",
            ) or []
    call(client.set_terminated, run_id, status)


# ---- what the stages log (each stage module calls these; none of them writes a stage's output) ----

@contextlib.contextmanager
def stage_run(cfg, stage: str, task: str, sections: tuple[str, ...]) -> Iterator[RunLogger]:
    """The MLflow run of one stage job (a no-op unless ``tracking.enabled``), with the seed and the
    config sections the stage read as params."""
    settings = cfg.tracking
    with job_run(settings.enabled, settings.uri, settings.experiment, f"{stage} {task} seed{cfg.seed}",
                 {"stage": stage, "task": task, "seed": cfg.seed}) as run:
        dumped = cfg.model_dump()
        run.log_params({"seed": cfg.seed} | {s: dumped[s] for s in sections})
        yield run


def log_prepared_splits(run: RunLogger, prepared, names) -> None:
    """The prepared splits a stage read, as MLflow dataset inputs."""
    from de3pipe.data.prepare import source_label

    for name in names:
        rows = prepared.info["splits"][name]["rows"]
        run.log_dataset(f"{prepared.task.name}-{name}", prepared.files.split(name), name, rows,
                        source_label(prepared.info.get("source")))


def log_signals_input(run: RunLogger, signals) -> None:
    """A signals file a stage read, as an MLflow dataset input."""
    if signals.source is not None:
        run.log_dataset(f"{signals.meta['task']}-{signals.meta['split']}-signals", signals.source, signals.meta["split"],
                        signals.num_samples, signals.meta.get("checkpoint"))


def log_training(run: RunLogger, summary: dict, key: str, record: Path) -> None:
    """The training curve (loss, each exit's loss, learning rate per optimiser step), each epoch's
    per-layer validation metrics at that epoch's last step, and the last epoch against depth."""
    prefix = "validation" if key == "validation" else "nearest_prototype"
    run.log_curve(summary.get("curve", []))
    run.log_curve([
        {"step": epoch["step"], **{f"{prefix}_{name}.layer{m}": layer[name]
                                   for m, layer in enumerate(epoch[key], 1) for name in layer}}
        for epoch in summary["epochs"]
    ])
    last = summary["epochs"][-1]
    for name in last[key][0]:
        run.log_per_layer(f"{prefix}_{name}_per_layer", [layer[name] for layer in last[key]])
    run.log_metrics({"train_seconds": summary["seconds"], "steps": summary["steps"]})
    run.log_artifact(record)


def log_calibration(run: RunLogger, thresholds: dict, files) -> None:
    """Each strategy's validation metric and speed-up at every named target, and the two files."""
    metric = thresholds["metric"]
    run.log_metrics({
        f"validation/{name}/{target}x/{field}": entry[key]
        for name, targets in thresholds["strategies"].items()
        for target, entry in targets.items()
        for field, key in ((metric, f"validation_{metric}"), ("speedup", "validation_speedup"))
    })
    guaranteed = thresholds.get("guaranteed") or {"strategies": {}}
    run.log_metrics({  # each guaranteed point's risk, upper bound and speed-up on the calibration examples
        f"guaranteed/{name}/{key}/{field}": entry[field]
        for name, points in guaranteed["strategies"].items()
        for key, entry in points.items()
        for field in ("calibration_upper_bound", "calibration_speedup", "calibration_risk")
    })
    run.log_artifact(files.thresholds)
    run.log_artifact(files.curves)


def log_evaluation(run: RunLogger, results: dict, curves, metric: str, files) -> None:
    """The full model per layer, the wall-clock speed-ups, and one child run per strategy with its
    named points and its calibrated test curve (step = speed-up x 100, so comparing the strategy
    runs in the UI overlays their curves, metric against speed-up)."""
    run.log_metrics({f"test.full_model.{k}": v for k, v in results["full_model"].items()})
    run.log_per_layer(f"test_{metric}_per_layer", [layer[metric] for layer in results["per_layer"]])
    run.log_per_layer("test_mean_entropy_per_layer", results["mean_entropy_per_layer"])
    for row in results.get("wallclock", []):
        run.log_metrics({f"wallclock_speedup/{row['strategy_name']}/{row['target']}x": row["wallclock_speedup"]})
    run.log_artifact(files.metrics)
    run.log_artifact(files.test_curves)
    for name, targets in results["strategies"].items():
        tags = {"strategy": name, "task": results["task"], "seed": results["seed"], "stage": "evaluate"}
        with run.child(f"{name} {results['task']} seed{results['seed']}", tags) as child:
            child.log_metrics({f"{target}x.{field}": entry[field]
                               for target, entry in targets.items() for field in (metric, "speedup")})
            child.log_metrics({f"{key}.{field}": entry[field]  # the guaranteed points: test speed-up and risk
                               for key, entry in results.get("guaranteed", {}).get(name, {}).items()
                               for field in ("speedup", "risk", "calibration_upper_bound")})
            rows = curves[curves["strategy"] == name] if len(curves) else curves
            child.log_curve([{"step": round(r.speedup * 100), f"calibrated_curve.{metric}": getattr(r, metric)}
                             for r in rows.itertuples()])
