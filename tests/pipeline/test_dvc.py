"""DVC on the tiny config's finished Snakemake run: no-op repro, param change reruns only what follows,
and push -> fresh clone -> pull gives a clean DVC status and nothing for Snakemake to do."""

import shutil

import pytest

from tests.pipeline.conftest import git_commit, run

PER_TASK = ("prepare", "finetune", "prototypes", "signals", "calibrate", "evaluate")


def _stages_in(status: str) -> set[str]:
    return {line.split("@")[0].strip() for line in status.splitlines() if line and not line.startswith("\t")
            and ":" in line and not line.startswith(" ")}


@pytest.mark.slow
def test_dvc_agrees_with_snakemake_and_restores(tiny_run, tmp_path):
    """After `snakemake all` (which records dvc.lock): DVC sees nothing to do; a param change
    reruns only what follows; push -> fresh clone -> pull -> nothing for DVC or Snakemake to do."""
    project = tmp_path / "project"
    shutil.copytree(tiny_run, project, symlinks=True)
    run(["dvc", "remote", "modify", "local", "url", str(tmp_path / "remote")], project)
    assert "up to date" in run(["dvc", "status"], project).stdout
    second = run(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout
    git_commit(project, "default run")

    config = (project / "config" / "config.yaml").read_text()
    text = config.replace("n_thresholds: 30", "n_thresholds: 25")
    assert text != config
    (project / "config" / "config.yaml").write_text(text)
    changed = _stages_in(run(["dvc", "status"], project).stdout)
    assert changed == {"calibrate", "evaluate"}, changed  # the report follows once they rerun
    third = run(["dvc", "repro"], project)
    ran = {line.split("'")[1].split("@")[0] for line in third.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"calibrate", "evaluate", "report"}

    run(["dvc", "push"], project)
    git_commit(project, "results")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # DVC restores files with new modification times; one touch pass in dependency order tells
    # Snakemake they are current (DVC has just verified their content).
    run(["snakemake", "all", "--touch", "--cores", "1"], clone)
    dry = run(["snakemake", "-n", "all"], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert "up to date" in run(["dvc", "status"], clone).stdout
    assert "Running stage" not in run(["dvc", "repro"], clone).stdout
    shutil.rmtree(tmp_path / "remote")
