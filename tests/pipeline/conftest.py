"""Fixtures for workflow tests: a copy of the workflow in a temporary project folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHARED_GLUE

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "dvc.yaml", ".dvcignore", "de3pipe"]


def glue_dir() -> Path:
    return Path(os.environ.get("GLUE_DIR", SHARED_GLUE))


needs_glue = pytest.mark.skipif(not glue_dir().is_dir(), reason="the shared GLUE folder is not here")


def run(args: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = os.environ | {"GLUE_DIR": str(glue_dir()), "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture()
def project(tmp_path) -> Path:
    """The workflow (Snakefile, rules, configs, profiles, dvc.yaml) copied into an empty folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / name)
    return folder
