"""DVC on the tiny config's finished Snakemake run: no-op repro, param change reruns only what follows,
and push -> fresh clone -> pull gives a clean DVC status and nothing for Snakemake to do."""

import json
import re
import shutil

import pytest

from tests.pipeline.conftest import git_commit, run

PER_TASK = ("prepare", "finetune", "prototypes", "signals", "calibrate", "evaluate")


def _stages_in(status: str) -> set[str]:
    return {line.split("@")[0].strip().rstrip(":") for line in status.splitlines() if line
            and not line.startswith("\t") and ":" in line and not line.startswith(" ")}


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


def _copy(tiny_run, folder):
    shutil.copytree(tiny_run, folder, symlinks=True)
    return folder


def _snakemake_jobs(project) -> set[str]:
    dry = run(["snakemake", "-n", "all"], project)
    return set(re.findall(r"^(?:localrule|rule) (\w+):", dry.stdout, re.MULTILINE))


def _touch_code(project, module: str) -> None:
    path = project / "de3pipe" / module
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.slow
def test_each_stage_depends_on_its_own_code(tiny_run, tmp_path):
    """Editing the report's rendering makes only the report stale, for DVC and Snakemake alike;
    editing the strategy registry leaves the data and both training stages current; editing the
    training code makes training stale, and Snakemake reruns it and everything after it."""
    report_edit = _copy(tiny_run, tmp_path / "report-edit")
    _touch_code(report_edit, "report/tables.py")
    assert _stages_in(run(["dvc", "status"], report_edit).stdout) == {"report"}
    assert _snakemake_jobs(report_edit) == {"report", "all"}

    registry_edit = _copy(tiny_run, tmp_path / "registry-edit")
    _touch_code(registry_edit, "method/strategies.py")
    changed = _stages_in(run(["dvc", "status"], registry_edit).stdout)
    assert "calibrate" in changed and not changed & {"prepare", "finetune", "prototypes"}, changed
    jobs = _snakemake_jobs(registry_edit)
    assert "calibrate" in jobs and not jobs & {"prepare", "finetune", "prototypes"}, jobs

    cli_edit = _copy(tiny_run, tmp_path / "cli-edit")
    _touch_code(cli_edit, "cli.py")
    assert "up to date" in run(["dvc", "status"], cli_edit).stdout
    assert _snakemake_jobs(cli_edit) == set()

    training_edit = _copy(tiny_run, tmp_path / "training-edit")
    _touch_code(training_edit, "modeling/training.py")
    changed = _stages_in(run(["dvc", "status"], training_edit).stdout)
    assert {"finetune", "prototypes"} <= changed and not changed & {"prepare", "calibrate", "evaluate", "report"}
    assert _snakemake_jobs(training_edit) == {"finetune", "prototypes", "signals", "calibrate", "evaluate", "report",
                                              "all"}


@pytest.mark.slow
def test_every_file_the_report_reads_is_its_input(tiny_run, tmp_path):
    """A run's training record changes (the report's head tables read it): both runners mark the
    report as out of date (DVC also names the record as finetune's modified output)."""
    project = _copy(tiny_run, tmp_path / "project")
    record = project / "data" / "sst2" / "seed1" / "train_metrics" / "finetuned.json"
    data = json.loads(record.read_text())
    data["epochs"][-1]["loss"] += 1.0
    record.write_text(json.dumps(data, indent=2) + "\n")
    status = run(["dvc", "status"], project).stdout
    assert _stages_in(status) == {"finetune", "report"}, status
    report_entry = status[status.index("report"):]
    assert "changed deps" in report_entry and "train_metrics/finetuned.json" in report_entry, status
    assert _snakemake_jobs(project) == {"report", "all"}


@pytest.mark.slow
def test_metrics_plots_and_experiments_read_as_dvc_users_expect(tiny_run, tmp_path):
    project = _copy(tiny_run, tmp_path / "project")
    git_commit(project, "default run")
    shown = run(["dvc", "metrics", "show"], project).stdout
    lines = shown.splitlines()
    assert max(map(len, lines)) <= 160, shown  # fits a terminal
    header = lines[0].split()
    assert header[0] == "Path" and set(header[1:]) == {"matched", "metric", "risk", "speedup"}, header  # narrow rows
    assert any("sst2/seed1/evaluation/headline/full.json" in line for line in lines)
    de3 = next(line.split() for line in lines if "sst2/seed1/evaluation/headline/de3@2x.json" in line)
    assert 3 <= len(de3) <= 5  # metric, speed-up, the matched figure where the curve reaches 2x, "-" for risk

    vega = json.loads(run(["dvc", "plots", "show", "--show-vega", "sst2: evaluate curves, one line per strategy"],
                          project).stdout)
    assert vega["encoding"]["color"]["field"] == "strategy"
    assert {"de3", "entropy", "pcee"} <= {row["strategy"] for row in vega["data"]["values"]}

    experiment = run(["dvc", "exp", "run", "-S", "config/config.yaml:calibration.targets=[1.5,2.5]"], project)
    ran = {line.split("'")[1].split("@")[0] for line in experiment.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"calibrate", "evaluate", "report"}, experiment.stdout
    from tests.pipeline.conftest import pipeline_env

    table = run(["dvc", "exp", "show", "--only-changed", "--drop", "data/|de3pipe/", "--no-pager"], project,
                env=pipeline_env(COLUMNS="120")).stdout
    assert "calibration.targets" in table and "…" not in table, table
    name = re.search(r"└── \w+ \[([\w-]+)\]", table).group(1)
    diff = run(["dvc", "exp", "diff", "HEAD", name], project).stdout
    changed_rows = [line.split() for line in diff.splitlines() if "headline/" in line]
    assert any(row[0].endswith("@2.5x.json") and row[1] == "metric" for row in changed_rows), diff
    assert max(map(len, diff.splitlines())) <= 160, diff
