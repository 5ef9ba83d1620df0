"""The calibrated model as an MLflow model, served over REST, answers like `de3pipe predict`."""

import json
import os
import sys
import urllib.error
import urllib.request

import pytest

from de3pipe.inference.serving import registered_name
from tests.conftest import _free_port, serving_process
from tests.helpers import invoke, run_every_stage, stage_overrides

TEXTS = ["a great movie", "awful", "the plot is thin but the actors carry it"]


def _post(port: int, body) -> tuple[int, dict]:
    """POST a JSON body to the served model: the status and the decoded answer (errors included)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_the_registered_model_serves_what_predict_answers(tiny_config, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir), "--set", "tracking.enabled=true",
            "--set", f"tracking.uri={uri}", "--set", "serving.max_texts=4", "--set", "serving.max_characters=500",
            "--set", "calibration.guarantee.epsilon=[0.3]"]
    tracking_before = os.environ.get("MLFLOW_TRACKING_URI")
    run_every_stage(tmp_path, sets)
    assert os.environ.get("MLFLOW_TRACKING_URI") == tracking_before, "logging the model leaks no tracking URI"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    versions = client.search_model_versions(f"name = '{registered_name('sst2')}'")
    assert [str(v.version) for v in versions] == ["1"]
    description = versions[0].description  # the version states its guarantees
    assert "Guaranteed points" in description and "de3@accuracy_drop-0.3: loses at most 30% accuracy" in description
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the registry the models:/ URI resolves in
    info = __import__("mlflow").models.get_model_info(f"models:/{registered_name('sst2')}/1")
    assert info.signature.inputs.to_dict() == [{"type": "string", "required": True}]  # the schema says strings
    assert [p.name for p in info.signature.params] == ["strategy", "target"] and info.saved_input_example_info

    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{registered_name('sst2')}/1",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    # mlflow execs uvicorn by name: the environment's bin folder first, as in an activated venv
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path}
    with serving_process(command, tmp_path / "serve.log", f"http://127.0.0.1:{port}/ping", env) as (process, _):
        served = _post(port, {"inputs": TEXTS, "params": {"strategy": "entropy", "target": "2"}})[1]["predictions"]
        served_de3 = _post(port, {"inputs": TEXTS})[1]["predictions"]
        guaranteed = _post(port, {"inputs": TEXTS, "params": {"strategy": "entropy", "target": "accuracy_drop-0.3"}})
        assert guaranteed[0] == 200 and len(guaranteed[1]["predictions"]) == 3
        bad_requests = {
            "null and a number": ({"inputs": [123, None]}, "input 0: expected a string, got a number (123)"),
            "a null among texts": ({"inputs": ["fine", None]}, "input 1: expected a string, got null"),
            "a list": ({"inputs": ["fine", ["a", "b"]]}, "input 1: expected a string, got a list of 2"),
            "an object": ({"inputs": [{"text": "a"}]}, "input 0: expected a string, got an object"),
            "a bare string": ({"inputs": "one text"}, "the input must be a list of texts"),
            "too many texts": ({"inputs": ["x"] * 5}, "holds 5 texts, more than the limit of 4"),
            "too many characters": ({"inputs": ["y" * 600]}, "more than the limit of 500"),
        }
        for name, (body, message) in bad_requests.items():
            status, answer = _post(port, body)
            assert status == 400 and message in answer["message"], (name, status, answer)
        assert _post(port, {"inputs": []}) == (200, {"predictions": []})
        status, answer = _post(port, {"inputs": ["", "   ", "fine"]})  # empty and blank strings are texts
        assert status == 200 and len(answer["predictions"]) == 3
        assert _post(port, {"inputs": TEXTS})[1]["predictions"] == served_de3  # still answering after refusals
        assert process.poll() is None
    assert process.poll() is not None  # stopped by its PID

    for strategy, answers in (("entropy", served), ("de3", served_de3)):
        result = invoke("predict", "--model", tmp_path / "proto", "--thresholds", tmp_path / "calib" / "thresholds.json",
                        "--strategy", strategy, "--target", "2", *TEXTS)
        assert result.exit_code == 0, result.output
        expected = [line.split("\t") for line in result.output.strip().splitlines()]
        assert len(answers) == len(expected) == len(TEXTS)
        for answer, (label, exit_layer, confidence, text) in zip(answers, expected, strict=True):
            assert answer["label"] == label
            assert f"exit_layer={answer['exit_layer']}" == exit_layer
            assert f"confidence={answer['confidence']:.4f}" == confidence


def test_a_pair_model_takes_pairs_of_two_strings(tiny_model_dir, tmp_path):
    """In process (MLflow's own scoring app): a sentence-pair model's schema is a list of string
    lists; a pair is exactly two strings, anything else is refused with its position."""
    import mlflow.pyfunc
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    import de3pipe
    from de3pipe.config import CalibrationConfig
    from de3pipe.infra.io import write_json
    from de3pipe.inference.serving import DEFAULT_POINT, example_input, python_model
    from de3pipe.method.calibration import calibrate
    from tests.helpers import prototyped_tiny_model
    from tests.method.test_calibration import random_signals

    model, tokenizer = prototyped_tiny_model(tiny_model_dir, task="mrpc")
    model.save_pretrained(tmp_path / "proto", tokenizer)
    thresholds, _ = calibrate(random_signals(200, seed=1), CalibrationConfig(n_thresholds=20), 1e-8)
    write_json(tmp_path / "thresholds.json", thresholds | {"task": "mrpc"})
    mlflow.pyfunc.save_model(
        tmp_path / "model", python_model=python_model(is_pair=True),
        artifacts={"checkpoint": str(tmp_path / "proto"), "thresholds": str(tmp_path / "thresholds.json")},
        code_paths=[os.path.dirname(de3pipe.__file__)], input_example=(example_input(True), DEFAULT_POINT),
        model_config={"max_texts": 3, "max_characters": 1000},
    )
    loaded = mlflow.pyfunc.load_model(tmp_path / "model")
    assert loaded.metadata.signature.inputs.to_dict() == [{"type": "array", "items": {"type": "string"}, "required": True}]
    client = TestClient(scoring_server.init(loaded))

    def post(body):
        answer = client.post("/invocations", json=body)
        return answer.status_code, answer.json()

    status, answer = post({"inputs": [["a cat sat", "a cat was sitting"], ["", " "]]})
    assert status == 200 and [row["label"] for row in answer["predictions"]] != [] and len(answer["predictions"]) == 2
    for body, message in (
        ({"inputs": [["one", "two"], ["only one"]]}, "input 1: expected a pair of two strings [first, second], got a list of 1"),
        ({"inputs": [["one", None]]}, "input 0: expected a pair of two strings"),
        ({"inputs": ["not a pair"]}, "input 0: expected a pair of two strings [first, second], got a string"),
        ({"inputs": [["a", "b"]] * 4}, "holds 4 texts, more than the limit of 3"),
    ):
        status, answer = post(body)
        assert status == 400 and message in answer["message"], (body, answer)
    assert post({"inputs": []}) == (200, {"predictions": []})
