"""`dvc repro` of the tiny config: reproduce, no-op rerun, param change reruns only what follows,
and push -> fresh clone -> pull gives a clean DVC status and nothing for Snakemake to do."""

import shutil

import pytest

from de3pipe.pipeline import dvc_yaml
from tests.pipeline.conftest import ROOT, needs_glue, run

PER_TASK = ("prepare", "finetune", "prototypes", "signals", "calibrate", "evaluate")


def _stages_in(status: str) -> set[str]:
    return {line.split("@")[0].strip() for line in status.splitlines() if line and not line.startswith("\t")
            and ":" in line and not line.startswith(" ")}


@needs_glue
@pytest.mark.slow
def test_dvc_repro_push_clone_pull(project, tmp_path):
    config = (project / "config" / "test.yaml").read_text()
    (project / "config" / "config.yaml").write_text(config)  # dvc.yaml reads config/config.yaml
    (project / "dvc.yaml").write_text(dvc_yaml(["sst2", "rte"], [1]))
    shutil.copy2(ROOT / ".gitignore", project / ".gitignore")  # metrics (cache: false) go to git
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], project)

    run(["dvc", "repro"], project, timeout=1200)
    assert (project / "data" / "report" / "report.md").is_file()
    second = run(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout

    text = config.replace("n_thresholds: 30", "n_thresholds: 25")
    assert text != config
    (project / "config" / "config.yaml").write_text(text)
    changed = _stages_in(run(["dvc", "status"], project).stdout)
    assert changed == {"calibrate", "evaluate"}, changed  # the report follows once they rerun
    third = run(["dvc", "repro"], project)
    ran = {line.split("'")[1].split("@")[0] for line in third.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"calibrate", "evaluate", "report"}

    run(["dvc", "push"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "results"], project)
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
    shutil.rmtree(tmp_path / "remote")
