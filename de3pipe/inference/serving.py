"""The calibrated classifier as an MLflow model: a pyfunc around the batched early-exit engine.

``log_calibrated_model`` logs a task's stage-2 checkpoint and thresholds into a run, with a
signature and an input example, and registers it (``de3pipe-<task>``). Served with
``mlflow models serve -m models:/de3pipe-<task>/<version> --env-manager local``, it answers
``POST /invocations`` with the label, exit layer and confidence of each text, like
``de3pipe predict``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pandas as pd

from de3pipe.errors import De3Error

MODEL_NAME = "model"  # the model's name inside its run
OUTPUT_COLUMNS = ("label", "exit_layer", "confidence")
DEFAULT_POINT = {"strategy": "de3", "target": "2"}


def registered_name(task: str) -> str:
    return f"de3pipe-{task}"


def _mlflow_python_model():
    import mlflow.pyfunc

    class EarlyExitClassifier(mlflow.pyfunc.PythonModel):
        """Inputs: a ``text`` column (and ``text_b`` for sentence-pair tasks); params ``strategy``
        and ``target`` pick the calibrated operating point (default de3 at 2x)."""

        def load_context(self, context):
            self.artifacts = context.artifacts
            self.predictors = {}

        def _predictor(self, strategy: str, target: str):
            from de3pipe.inference.predict import Predictor

            key = (strategy, str(target))
            if key not in self.predictors:
                self.predictors[key] = Predictor(
                    Path(self.artifacts["checkpoint"]), Path(self.artifacts["thresholds"]), strategy, str(target)
                )
            return self.predictors[key]

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            point = DEFAULT_POINT | {k: str(v) for k, v in (params or {}).items() if v is not None}
            predictor = self._predictor(point["strategy"], point["target"])
            if "text" not in model_input.columns:
                raise De3Error("the input needs a 'text' column (and 'text_b' for sentence-pair tasks)")
            text_b = model_input["text_b"].astype(str).tolist() if "text_b" in model_input.columns else None
            rows = predictor.classify(model_input["text"].astype(str).tolist(), text_b)
            return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))

    return EarlyExitClassifier()


def example_input(is_pair: bool) -> pd.DataFrame:
    if is_pair:
        return pd.DataFrame({"text": ["The cat sat on the mat."], "text_b": ["A cat was sitting on a mat."]})
    return pd.DataFrame({"text": ["a gripping, beautifully acted film"]})


def log_calibrated_model(run, checkpoint: Path, thresholds: Path, task) -> str | None:
    """Log the calibrated model into ``run`` (a tracking.RunLogger) and register it under the task's
    name; the model version, or None when tracking is off or the store failed."""
    if not run.active:
        return None
    import mlflow
    from mlflow.models import infer_signature

    example = example_input(task.is_pair)
    output = pd.DataFrame({"label": [task.label_names[0]], "exit_layer": [1], "confidence": [0.5]})
    signature = infer_signature(example, output, params=DEFAULT_POINT)
    package = Path(__file__).resolve().parent

    def log() -> str:
        with _fluent_tracking(run.budget.uri), mlflow.start_run(run_id=run.run_id):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=_mlflow_python_model(),
                artifacts={"checkpoint": str(checkpoint), "thresholds": str(thresholds)},
                code_paths=[str(package)],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                registered_model_name=registered_name(task.name),
                await_registration_for=0,
            )
        return str(info.registered_model_version)

    return run.within_budget(log)


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
