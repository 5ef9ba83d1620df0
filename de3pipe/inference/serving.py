"""The calibrated classifier as an MLflow model: a pyfunc around the batched early-exit engine.

``log_calibrated_model`` logs a task's stage-2 checkpoint and thresholds into a run, with a
signature, an input example and the request limits, and registers it (``de3pipe-<task>``).
Served with ``mlflow models serve -m models:/de3pipe-<task>/<version> --env-manager local``, it
answers ``POST /invocations`` with ``{"inputs": ["a text", ...]}`` (``[["first", "second"],
...]`` for sentence pairs) and optional ``params`` (strategy, target) with the label, exit layer
and confidence of each text, like ``de3pipe predict``.

The input schema comes from the ``predict`` type hint, ``list[str]`` (pairs: ``list[list[str]]``),
so the signature says strings; the check itself is ``predict.check_texts`` (it names the first
offending position, which MLflow's own type-hint check does not), and a refused request is a 400
with that one line.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from de3pipe.errors import De3Error

MODEL_NAME = "model"  # the model's name inside its run
DEFAULT_POINT = {"strategy": "de3", "target": "2"}


def registered_name(task: str) -> str:
    return f"de3pipe-{task}"


def python_model(is_pair: bool):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    class TextClassifier(mlflow.pyfunc.PythonModel):
        """Inputs: a list of texts; params ``strategy`` and ``target`` pick the calibrated
        operating point (default de3 at 2x)."""

        _skip_type_hint_validation = True  # check_texts checks the hint's types, naming the position
        is_pair = False

        def load_context(self, context):
            from de3pipe.inference.predict import RequestLimits

            self.artifacts = context.artifacts
            self.limits = RequestLimits(**context.model_config)
            self.predictors = {}

        def _predictor(self, strategy: str, target: str):
            from de3pipe.inference.predict import Predictor

            key = (strategy, str(target))
            if key not in self.predictors:
                self.predictors[key] = Predictor(
                    Path(self.artifacts["checkpoint"]), Path(self.artifacts["thresholds"]), strategy, str(target)
                )
            return self.predictors[key]

        def _answer(self, model_input, params) -> list[dict[str, Any]]:
            from de3pipe.inference.predict import check_texts

            try:
                text_a, text_b = check_texts(model_input, self.is_pair, self.limits)
                point = DEFAULT_POINT | {k: str(v) for k, v in (params or {}).items() if v is not None}
                return self._predictor(point["strategy"], point["target"]).classify(text_a, text_b)
            except De3Error as error:  # a client's mistake: a 400 with the one line
                raise MlflowException(str(error), INVALID_PARAMETER_VALUE) from None

        def predict(self, context, model_input: list[str], params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
            return self._answer(model_input, params)

    class PairClassifier(TextClassifier):
        """Inputs: a list of sentence pairs, each a list of two strings."""

        is_pair = True

        def predict(self, context, model_input: list[list[str]], params: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
            return self._answer(model_input, params)

    return PairClassifier() if is_pair else TextClassifier()


def example_input(is_pair: bool) -> list:
    if is_pair:
        return [["The cat sat on the mat.", "A cat was sitting on a mat."]]
    return ["a gripping, beautifully acted film"]


def log_calibrated_model(run, checkpoint: Path, thresholds: Path, task, limits) -> str | None:
    """Log the calibrated model into ``run`` (a tracking.RunLogger) and register it under the task's
    name, refusing requests beyond ``limits`` (the config's ``serving`` section); the model version,
    or None when tracking is off or the store failed."""
    if not run.active:
        return None
    import mlflow

    package = Path(__file__).resolve().parents[1]  # the whole de3pipe package travels with the model

    def log() -> str:
        with _fluent_tracking(run.budget.uri), mlflow.start_run(run_id=run.run_id):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=python_model(task.is_pair),
                artifacts={"checkpoint": str(checkpoint), "thresholds": str(thresholds)},
                model_config=limits.model_dump(),  # RequestLimits when served
                code_paths=[str(package)],
                input_example=(example_input(task.is_pair), DEFAULT_POINT),  # the signature's params from it
                pip_requirements=_requirements(),
                registered_model_name=registered_name(task.name),
                await_registration_for=0,
            )
        version = str(info.registered_model_version)
        run.client.update_model_version(registered_name(task.name), version, model_description(task.name, thresholds))
        return version

    return run.within_budget(log)


def model_description(task: str, thresholds: Path) -> str:
    """What a registered version promises: its default point and every guaranteed one."""
    from de3pipe.method.operating_points import describe_guarantees, read_thresholds

    lines = [f"de3pipe early-exit classifier for {task}. Default point: {DEFAULT_POINT['strategy']}@"
             f"{DEFAULT_POINT['target']}x (params: strategy, target)."]
    guarantees = describe_guarantees(read_thresholds(thresholds))
    if guarantees:
        lines += ["Guaranteed points (params target=<risk>-<epsilon>):", *(f"- {g}" for g in guarantees)]
    return "\n".join(lines)


@contextlib.contextmanager
def _fluent_tracking(uri: str):
    """MLflow's fluent API (which log_model needs) pointed at ``uri`` for the call only: it sets a
    process-wide URI and $MLFLOW_TRACKING_URI, which would otherwise outlive the call."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    # The URI set through the API, if any (None: the environment or MLflow's default decides).
    saved_env, saved_uri = os.environ.get("MLFLOW_TRACKING_URI"), getattr(utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def _requirements() -> list[str]:
    """The serving environment's packages, pinned to what trained the model (no inference pass)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "transformers", "tokenizers", "safetensors", "numpy",
                                                    "pandas", "pydantic", "scikit-learn", "pyyaml", "typer",
                                                    "tqdm", "mlflow")]
