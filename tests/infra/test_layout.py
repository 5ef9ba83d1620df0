"""The run layout (de3pipe/infra/layout.py): every file of a run under
``<results>/<task>/seed<seed>/``, the same names as workflow patterns, and the report's files."""

from pathlib import Path

import pytest

from de3pipe.infra.layout import (
    DEFAULT_RESULTS, EvaluationFiles, PreparedFiles, ReportFiles, RunLayout, SignalFiles, train_metrics_of,
)


def test_a_run_lives_under_results_task_and_seed():
    run = RunLayout.of("data", "sst2", 3)
    assert run.root == Path("data/sst2/seed3")
    assert RunLayout.of(Path("/r"), "rte", "7").root == Path("/r/rte/seed7")
    assert DEFAULT_RESULTS == "data"


def test_every_stage_output_of_a_run():
    run = RunLayout.of("res", "sst2", 0)
    root = Path("res/sst2/seed0")
    assert run.prepared.folder == root / "prepared"
    assert run.prepared.split("train") == root / "prepared" / "train.parquet"
    assert run.prepared.info == root / "prepared" / "dataset.json"
    assert run.finetuned == root / "finetuned"
    assert run.prototyped == root / "prototyped"
    assert run.finetune_metrics == root / "train_metrics" / "finetuned.json"
    assert run.prototypes_metrics == root / "train_metrics" / "prototyped.json"
    assert run.signals.split("validation") == root / "signals" / "validation.npz"
    assert run.signals.prototype_space == root / "signals" / "prototype_space.npz"
    assert run.calibration.thresholds == root / "calibration" / "thresholds.json"
    assert run.calibration.curves == root / "calibration" / "curves.csv"
    evaluation = root / "evaluation"
    assert run.evaluation.folder == evaluation
    assert run.evaluation.metrics == evaluation / "metrics.json"
    assert run.evaluation.test_curves == evaluation / "test_curves.csv"
    assert run.evaluation.exits == evaluation / "exits.parquet"
    assert run.evaluation.points == evaluation / "points.npz"
    assert run.evaluation.submission == evaluation / "submission"
    assert run.evaluation.headline == evaluation / "headline"


def test_the_template_keeps_the_wildcards():
    template = RunLayout.template()
    assert str(template.root) == "{results}/{task}/seed{seed}"
    patterns = [template.prepared.info, template.finetuned, template.prototypes_metrics, template.signals.split("test"),
                template.calibration.thresholds, template.evaluation.metrics, template.evaluation.points]
    for pattern in patterns:
        assert str(pattern).startswith("{results}/{task}/seed{seed}/"), pattern
    assert str(template.evaluation.metrics) == "{results}/{task}/seed{seed}/evaluation/metrics.json"
    # Snakemake fills the wildcards with str.format: the pattern becomes the concrete run's path
    filled = str(template.evaluation.metrics).format(results="data", task="sst2", seed=1)
    assert Path(filled) == RunLayout.of("data", "sst2", 1).evaluation.metrics


@pytest.mark.parametrize("results", ["data", "/abs/results", "study/runs"])
def test_of_evaluation_finds_the_run_of_a_metrics_file(results):
    run = RunLayout.of(results, "mrpc", 2)
    assert RunLayout.of_evaluation(run.evaluation.metrics) == run
    assert RunLayout.of_evaluation(str(run.evaluation.metrics)).signals.prototype_space == run.signals.prototype_space


def test_training_records_sit_beside_the_checkpoint():
    assert train_metrics_of("a/b/finetuned") == Path("a/b/train_metrics/finetuned.json")
    assert train_metrics_of(Path("/x/ckpt")) == Path("/x/train_metrics/ckpt.json")
    checkpoint = RunLayout.of("d", "sst2", 0).prototyped
    assert not train_metrics_of(checkpoint).is_relative_to(checkpoint)  # outside the checkpoint folder


def test_submission_and_headline_files_in_any_folder(tmp_path):
    assert EvaluationFiles.submission_in(tmp_path, "de3_2", "SST-2.tsv") == tmp_path / "de3_2" / "SST-2.tsv"
    assert EvaluationFiles.headline_in(tmp_path, "de3@2x") == tmp_path / "de3@2x.json"
    assert EvaluationFiles.headline_in(Path("h"), "full") == Path("h/full.json")


def test_signal_submits_are_the_sorted_submit_files(tmp_path):
    for name in ("test.npz", "submit_mismatched.npz", "submit.npz", "validation.npz", "submit_matched.npz"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in SignalFiles(tmp_path).submits()]
    assert names == ["submit.npz", "submit_matched.npz", "submit_mismatched.npz"]
    assert SignalFiles(tmp_path / "empty").submits() == []


def test_prepared_files():
    files = PreparedFiles(Path("p"))
    assert files.split("submit_matched") == Path("p/submit_matched.parquet")


def test_report_files():
    report = ReportFiles.of("data")
    assert report.folder == Path("data/report")
    assert report.page == Path("data/report/report.md")
    assert report.summary == Path("data/report/summary.json")
    assert report.plots == Path("data/report/plots")
    assert ReportFiles.task_plot(report.plots, "sst2") == Path("data/report/plots/sst2.png")
    assert ReportFiles.prototype_space_plot(Path("tmp")) == Path("tmp/prototype_space.png")
    assert str(ReportFiles.of("{results}").page) == "{results}/report/report.md"
