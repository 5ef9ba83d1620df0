"""The calibrated model as an MLflow model, served over REST, answers like `de3pipe predict`."""

import json
import os
import sys
import urllib.request

import pytest

from de3pipe.inference.serving import registered_name
from tests.conftest import _free_port, serving_process
from tests.helpers import invoke, run_every_stage, stage_overrides

TEXTS = ["a great movie", "awful", "the plot is thin but the actors carry it"]


@pytest.mark.slow
def test_the_registered_model_serves_what_predict_answers(tiny_config, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir), "--set", "tracking.enabled=true", "--set", f"tracking.uri={uri}"]
    tracking_before = os.environ.get("MLFLOW_TRACKING_URI")
    run_every_stage(tmp_path, sets)
    assert os.environ.get("MLFLOW_TRACKING_URI") == tracking_before, "logging the model leaks no tracking URI"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    versions = client.search_model_versions(f"name = '{registered_name('sst2')}'")
    assert [str(v.version) for v in versions] == ["1"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the registry the models:/ URI resolves in
    info = __import__("mlflow").models.get_model_info(f"models:/{registered_name('sst2')}/1")
    assert info.signature.inputs.input_names() == ["text"] and info.saved_input_example_info

    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{registered_name('sst2')}/1",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    # mlflow execs uvicorn by name: the environment's bin folder first, as in an activated venv
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path}
    with serving_process(command, tmp_path / "serve.log", f"http://127.0.0.1:{port}/ping", env) as (process, _):
        body = {"dataframe_records": [{"text": t} for t in TEXTS], "params": {"strategy": "entropy", "target": "2"}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
        default = {"dataframe_records": [{"text": t} for t in TEXTS]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(default).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served_de3 = json.loads(response.read())["predictions"]
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
