"""Faults during training: a SIGKILL mid-epoch or mid-save, and a full disk, never leave a
checkpoint that looks complete, never destroy a previous one, and a rerun gives the same bytes
as an uninterrupted run (training restarts from scratch, seeded)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from de3pipe.cli import app
from de3pipe.infra.layout import train_metrics_of
from tests.conftest import write_sst2

# Runs `de3pipe finetune ...` in a fresh interpreter with one function replaced by a fault.
_FAULTY_RUN = """
import errno, os, signal, sys
from de3pipe.modeling import training
from de3pipe.modeling import multi_exit

fault, args = sys.argv[1], sys.argv[2:]
if fault == "kill-mid-epoch":  # SIGKILL at the 2nd optimiser step of the first epoch
    real_step, calls = training.optimizer_step, []
    def step(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(*a, **k)
    training.optimizer_step = step
else:  # the weights file gets half its bytes, then SIGKILL or a full disk
    class Failing:
        def __init__(self, path, mode):
            self.path, self.handle = path, open(path, mode)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            if fault == "kill-mid-save":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
    multi_exit.open = Failing
from de3pipe.cli import app
from de3pipe.infra.layout import train_metrics_of
app(args, prog_name="de3pipe")
"""


def _finetune_args(data: Path, out: Path, model: Path) -> list[str]:
    sets = {
        "model.name_or_path": model,
        "model.max_length": 32,
        "finetune.epochs": 2,
        "finetune.batch_size": 8,
        "finetune.learning_rate": 1e-3,
    }
    return ["finetune", "-q", "--data", str(data), "--out", str(out), "--seed", "3",
            *[arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]]


def _faulty(fault: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _FAULTY_RUN, fault, *args], capture_output=True, text=True, timeout=300)


def _training_record(folder: Path) -> dict:
    record = json.loads(train_metrics_of(folder).read_text())
    record.pop("seconds"), record.pop("validation_seconds")  # wall times differ between any two runs
    return record


def _weights_digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    out = folder / "data"
    sets = ["--set", f"data.glue_dir={write_sst2(folder / 'glue')}", "--set", "data.validation_size=20"]
    result = CliRunner().invoke(app, ["prepare", "--task", "sst2", "--out", str(out), *sets])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def uninterrupted(prepared, tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    result = CliRunner().invoke(app, _finetune_args(prepared, out, tiny_model_dir))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("fault", ["kill-mid-epoch", "kill-mid-save"])
def test_sigkill_then_rerun_gives_the_uninterrupted_result(fault, prepared, uninterrupted, tiny_model_dir, tmp_path):
    out = tmp_path / "finetuned"
    args = _finetune_args(prepared, out, tiny_model_dir)
    killed = _faulty(fault, args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()  # never a folder that looks complete
    leftovers = [p.name for p in tmp_path.iterdir()]
    if fault == "kill-mid-save":  # the half-written checkpoint sits in a hidden temporary folder
        assert len(leftovers) == 1 and leftovers[0].startswith(".finetuned.tmp-"), leftovers
        assert (tmp_path / leftovers[0] / "model.safetensors").is_file()
    else:  # nothing is written before training ends
        assert leftovers == []

    rerun = CliRunner().invoke(app, args)  # what Snakemake does after a failed attempt
    assert rerun.exit_code == 0, rerun.output
    assert _weights_digest(out) == _weights_digest(uninterrupted)
    assert _training_record(out) == _training_record(uninterrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetuned", "train_metrics"]  # the killed run's temporary is gone


def test_disk_full_during_save_keeps_the_previous_checkpoint(prepared, uninterrupted, tiny_model_dir, tmp_path):
    out = tmp_path / "finetuned"
    args = _finetune_args(prepared, out, tiny_model_dir)
    assert CliRunner().invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    full = _faulty("disk-full", [*args, "--overwrite"])
    assert full.returncode == 2, full.stderr[-2000:]
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith("error: no space left on the device writing ") and "model.safetensors" in message
    assert "previous complete output" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetuned", "train_metrics"]  # and the half-written one is gone
