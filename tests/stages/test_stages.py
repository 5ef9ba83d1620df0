"""The seven stage modules called directly, as the workflow chains them: each writes exactly the
outputs the stage table declares for it (paths from the run layout), and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from de3pipe.infra.layout import ReportFiles, RunLayout
from de3pipe.infra.workflow import STAGES, is_directory
from de3pipe.stages import calibrate, evaluate, finetune, prepare, prototypes, report, signals

RESULTS, TASK, SEED = "results", "sst2", 7


def declared(root: Path, stage: str) -> set[Path]:
    """The stage table's outputs of ``stage`` for this run, as paths under ``root``."""
    return {root / path.rstrip("/").format(results=RESULTS, task=TASK, seed=SEED) for path in STAGES[stage].outputs.values()}


def written(root: Path) -> set[Path]:
    """Every file under ``root``."""
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir):
    from de3pipe.config import load_config
    from tests.conftest import write_sst2

    root = tmp_path_factory.mktemp("stages")
    glue = write_sst2(root.parent / f"{root.name}-glue")
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.glue_dir={glue}", "data.validation_size=20",
                             "model.max_length=32", "finetune.epochs=1", "finetune.batch_size=8",
                             "finetune.learning_rate=1e-3", "prototypes.epochs=1", "prototypes.batch_size=8",
                             f"seed={SEED}", "calibration.n_thresholds=20", "evaluation.wallclock_repeats=1",
                             "report.bootstrap_samples=100"])
    run = RunLayout.of(root / RESULTS, TASK, SEED)
    files_after = {}

    def step(name, call):
        before = written(root)
        call()
        files_after[name] = written(root) - before

    step("prepare", lambda: prepare.run(TASK, run.prepared.folder, cfg))
    step("finetune", lambda: finetune.run(run.prepared.folder, run.finetuned, run.finetune_metrics, cfg, progress=False))
    step("prototypes", lambda: prototypes.run(run.prepared.folder, run.finetuned, run.prototyped, run.prototypes_metrics,
                                              cfg, progress=False))
    step("signals", lambda: signals.run(run.prepared.folder, run.prototyped, run.signals.folder, cfg, progress=False))
    step("calibrate", lambda: calibrate.run(run.signals.folder, run.calibration.folder, cfg))
    step("evaluate", lambda: evaluate.run(run.signals.folder, run.calibration.thresholds, run.evaluation.folder, cfg,
                                          model=run.prototyped, data=run.prepared.folder))
    step("report", lambda: report.run([run.evaluation.metrics], ReportFiles.of(root / RESULTS).folder, cfg))
    return root, files_after


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_writes_exactly_its_declared_outputs(chain, stage):
    root, files_after = chain
    outputs = declared(root, stage)
    assert files_after[stage], stage
    for path in files_after[stage]:  # every new file is a declared output or lies in a declared output folder
        assert any(path == out or out in path.parents for out in outputs), (stage, path)
    for template in STAGES[stage].outputs.values():  # and every declared output is there, as a file or a folder
        out = root / template.rstrip("/").format(results=RESULTS, task=TASK, seed=SEED)
        assert out.is_dir() if is_directory(template) else out.is_file(), (stage, out)


def test_a_stage_refuses_to_replace_an_output_before_any_work(chain, tiny_model_dir):
    from de3pipe.config import load_config
    from de3pipe.errors import De3Error

    root, _ = chain
    run = RunLayout.of(root / RESULTS, TASK, SEED)
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}"])
    before = run.finetune_metrics.read_bytes()
    with pytest.raises(De3Error, match="already exists"):
        finetune.run(run.prepared.folder, root / "elsewhere", run.finetune_metrics, cfg, progress=False)
    assert run.finetune_metrics.read_bytes() == before and not (root / "elsewhere").exists()
