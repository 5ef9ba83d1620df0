"""Fixtures for workflow tests: a copy of the workflow in a temporary project folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from de3pipe.infra import workflow
from tests.conftest import SHARED_GLUE

ROOT = Path(__file__).resolve().parents[2]


def glue_dir() -> Path:
    return Path(os.environ.get("GLUE_DIR", SHARED_GLUE))


needs_glue = pytest.mark.skipif(not glue_dir().is_dir(), reason="the shared GLUE folder is not here")


def pipeline_env(**extra: str) -> dict[str, str]:
    """The environment of a pipeline run: the shared GLUE copy, offline, the config's own MLflow store."""
    env = os.environ | {"GLUE_DIR": str(glue_dir()), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | extra


def run(
    args: list[str], cwd: Path, check: bool = True, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = env or pipeline_env()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_workflow(folder: Path) -> Path:
    """The workflow (Snakefile, rules, configs, profiles, dvc.yaml) copied into an empty folder."""
    return workflow.copy_workflow(ROOT, folder)


@pytest.fixture()
def project(tmp_path) -> Path:
    return copy_workflow(tmp_path / "project")


TINY_TASKS = ["sst2", "rte"]
TINY_SEED = 1


def git_commit(folder: Path, message: str) -> None:
    run(["git", "add", "-A"], folder)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], folder)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One local `snakemake --cores 2 all` of the tiny config, as the project's default config, in a
    git + DVC project (so its onsuccess records dvc.lock). Shared, read-only: copy it to change it."""
    from de3pipe.infra.workflow import dvc_yaml

    if not glue_dir().is_dir():
        pytest.skip("the shared GLUE folder is not here")
    folder = copy_workflow(tmp_path_factory.mktemp("tiny-run") / "project")
    (folder / "config" / "config.yaml").write_text((folder / "config" / "test.yaml").read_text())
    (folder / "dvc.yaml").write_text(dvc_yaml(TINY_TASKS, [TINY_SEED]))
    shutil.copy2(ROOT / ".gitignore", folder / ".gitignore")  # metrics (cache: false) go to git
    run(["git", "init", "-q"], folder)
    run(["dvc", "init", "-q"], folder)
    run(["dvc", "remote", "add", "-d", "local", str(folder.parent / "remote")], folder)
    git_commit(folder, "init")
    started = time.monotonic()
    run(["snakemake", "all", "--cores", "2"], folder)
    (folder.parent / "wall_seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    return folder
