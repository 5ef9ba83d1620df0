"""The workflow run: lint, dry runs, validation before any job, the tiny config end to end."""

import json
import re
import sqlite3


from tests.pipeline.conftest import ROOT, needs_glue, run


def test_lint_is_clean(project):
    proc = run(["snakemake", "--lint"], project)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@needs_glue
def test_dry_run_of_the_default_config(project):
    proc = run(["snakemake", "-n", "all"], project)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.MULTILINE))
    for name in ("prepare", "finetune", "prototypes", "signals", "calibrate", "evaluate"):
        assert counts[name] == "4", name  # the default config's four tasks
    assert counts["report"] == "1" and counts["total"] == "26"


@needs_glue
def test_the_study_config_keeps_its_runs_apart(project):
    """config/study.yaml: 4 tasks x 10 seeds, every output and log under its results folder."""
    proc = run(["snakemake", "-n", "all", "--configfile", "config/study.yaml"], project)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.MULTILINE))
    assert counts["finetune"] == "40" and counts["evaluate"] == "40" and counts["report"] == "1"
    assert "results/study/rte/seed2/finetuned" in proc.stdout
    assert "results/study/logs/finetune/rte.seed2.log" in proc.stdout
    assert "results/study/report/report.md" in proc.stdout
    assert not re.search(r"(^|\s)data/", proc.stdout), "a study job writes into the default run's data/"


def _write(project, text):
    (project / "config" / "bad.yaml").write_text(text)
    return run(["snakemake", "-n", "all", "--configfile", "config/bad.yaml"], project, check=False)


def test_invalid_configs_fail_before_any_job(project):
    proc = _write(project, "finetune:\n  learning_rate: -1.0\n")
    assert proc.returncode != 0 and "learning_rate" in proc.stderr + proc.stdout
    proc = _write(project, "tasks: [sst2, sst5]\n")
    assert proc.returncode != 0 and "sst5" in proc.stderr + proc.stdout
    proc = _write(project, "finetune:\n  learning_rat: 1.0e-5\n")
    output = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "learning_rat" in output
    proc = _write(project, "calibration:\n  targets: [0.5, 2]\n")
    assert proc.returncode != 0 and "targets" in proc.stderr + proc.stdout
    assert not (project / "data").exists() and not (project / "mlflow.db").exists()


def test_the_tiny_run_reproduces_the_committed_reference(tiny_run):
    """CI's guard against machine-dependent results: the tiny config in exact mode (fp32) gives the
    committed headline metrics, within the tolerance measured across machines and thread counts
    (README, "Reruns"). CI runs on varying machines, so a change that makes results depend on the
    machine fails here as soon as it lands."""
    from de3pipe.infra import reruns

    reference = json.loads((ROOT / "tests" / "reference" / "tiny_headline.json").read_text())
    rows = reruns.compare(reference, reruns.headline_files(tiny_run / "data"))
    lines, agrees = reruns.summary_lines(rows, reruns.ACROSS_MACHINES)
    print("\n".join(lines))
    assert agrees, "\n".join(lines)


def test_snakemake_runs_every_rule_of_the_tiny_config(tiny_run):
    project = tiny_run
    report = (project / "data" / "report" / "report.md").read_text()
    for strategy in ("de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle"):
        assert f"| {strategy}" in report
    assert "| strategy | target | rte" in report and "## Metric at matched speed-ups" in report
    assert (project / "data" / "report" / "plots" / "sst2.png").stat().st_size > 10_000
    for task in ("sst2", "rte"):
        run_dir = project / "data" / task / "seed1"
        assert (run_dir / "evaluation" / "submission" / "de3_2").is_dir()
        assert json.loads((run_dir / "evaluation" / "metrics.json").read_text())["wallclock"]
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute(
            "select t.value, r.status from runs r join tags t on t.run_uuid = r.run_uuid where t.key = 'stage'"
        ).fetchall()
    stages = [stage for stage, _ in rows]
    assert {status for _, status in rows} == {"FINISHED"}
    for stage in ("prepare", "finetune", "prototypes", "signals", "calibrate"):
        assert stages.count(stage) == 2, stage
    assert stages.count("pipeline") == 1 and stages.count("report") == 1
    assert stages.count("evaluate") == 2 * (1 + 8)  # one run per job + one child per strategy
    with sqlite3.connect(project / "mlflow.db") as db:
        kinds = db.execute("select value from experiment_tags where key = 'mlflow.experimentKind'").fetchall()
        keys = dict(db.execute("select key, count(distinct step) from metrics group by key").fetchall())
        datasets = {name for (name,) in db.execute("select name from datasets").fetchall()}
    assert kinds == [("custom_model_development",)]  # the UI opens on the training runs
    assert keys["loss"] >= 3 and keys["lr"] >= 3 and keys["loss.layer1"] >= 3 and keys["dar.layer1"] >= 3
    assert keys["validation_accuracy.layer6"] >= 1 and keys["calibrated_curve.accuracy"] >= 3
    assert {"sst2-train", "sst2-validation", "rte-test", "sst2-validation-signals", "rte-test-signals"} <= datasets
    again = run(["snakemake", "-n", "all"], project)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_tracking_store_that_is_down_stops_the_workflow_before_any_job(project):
    """One line naming the URI, how to start a server and how to turn tracking off; no job ran."""
    import time

    from tests.conftest import _free_port
    from tests.pipeline.conftest import pipeline_env

    uri = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    proc = run(["snakemake", "--cores", "1", "all", "--configfile", "config/test.yaml"], project, check=False,
               env=pipeline_env(MLFLOW_TRACKING_URI=uri))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.monotonic() - start < 60
    assert f"the MLflow server at {uri} cannot be reached" in output
    assert "mlflow server --host 127.0.0.1" in output and "tracking: {enabled: false}" in output
    assert not (project / "data").exists()


def test_a_recipe_reruns_only_its_task(tiny_run, tmp_path):
    """A per-task recipe is a param of that task's stages only: Snakemake reruns rte's chain (and the
    report), not sst2's."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(tiny_run, project, symlinks=True)
    config = project / "config" / "config.yaml"  # the same command line: only the recipe changes
    config.write_text(config.read_text().replace("recipes: {}", "recipes:\n  rte:\n    finetune: {learning_rate: 1.0e-4}"))
    proc = run(["snakemake", "-n", "all"], project)
    jobs = set(re.findall(r"(?:localrule|rule) (\w+):\n(?:.*\n)*?\s+output: (\S+)", proc.stdout))
    outputs = {output for _, output in jobs}
    assert any("rte/seed1/finetuned" in o for o in outputs) and not any("sst2/" in o for o in outputs), outputs
    assert not any("prepared" in o for o in outputs)  # the recipe changes training, not the data
