"""The CLI end to end on the tiny model, and its one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import invoke, run_every_stage, stage_overrides


def test_every_stage_through_the_cli(tiny_config, tmp_path):
    out, sets = tmp_path, stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir)
    run_every_stage(out, sets)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["strategies"]) == {"de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle"}
    assert {row["strategy_name"] for row in metrics["wallclock"]} == {"de3", "entropy"}
    assert (out / "eval" / "submission" / "de3_2" / "SST-2.tsv").is_file()
    assert (out / "eval" / "exits.parquet").is_file() and (out / "calib" / "curves.csv").is_file()
    assert sorted(p.name for p in (out / "signals").iterdir()) == ["submit.npz", "test.npz", "validation.npz"]

    assert (out / "eval" / "points.npz").is_file() and (out / "eval" / "test_curves.csv").is_file()
    result = invoke("report", "--out", out / "report", out / "eval" / "metrics.json", "--set",
                    "report.bootstrap_samples=200")
    assert result.exit_code == 0, result.output
    text = (out / "report" / "report.md").read_text()
    for heading in ("## Verdict (the primary family)", "## Did each task learn?",
                    "## Metric at matched speed-ups (main table)", "## Exploratory differences: de3 against each",
                    "## Area under the calibrated curve", "## At the nominal targets", "## Calibration error per task"):
        assert heading in text, heading
    assert "| de3 | 2× |" in text
    assert (out / "report" / "plots" / "sst2.png").stat().st_size > 1000

    result = invoke("predict", "--model", out / "proto", "--thresholds", out / "calib" / "thresholds.json",
                    "--strategy", "entropy", "--target", "2", "a great movie", "awful")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in {"negative", "positive"}
    assert "exit_layer=" in lines[0] and "confidence=" in lines[0]

    result = invoke("predict", "--model", out / "proto", "--thresholds", out / "calib" / "thresholds.json",
                    "--strategy", "de3", "--target", "9", "x")
    assert result.exit_code == 2 and "no calibrated point de3@9x" in result.output

    result = invoke("speed", "--model", out / "proto", "--data", out / "data", "--thresholds",
                    out / "calib" / "thresholds.json", "--batch-sizes", "4", "--repeats", "1", "--out", out / "s.json")
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "s.json").read_text())) == 6

    # stage order mistakes are caught, and nothing already written is touched
    before = (out / "ft" / "model.safetensors").read_bytes()
    result = invoke("signals", "--data", out / "data", "--model", out / "ft", "--out", out / "sig2", *sets)
    assert result.exit_code == 2 and "stage-1" in result.output
    result = invoke("prototypes", "--data", out / "data", "--model", out / "proto", "--out", out / "p2", *sets)
    assert result.exit_code == 2 and "stage-2" in result.output
    result = invoke("finetune", "-q", "--data", out / "data", "--out", out / "ft", *sets)
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "ft" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "--task", "stsb", "--out", "x"], "regression"),
        (["prepare", "--task", "qnl", "--out", "x"], "unknown task 'qnl'"),
        (["finetune", "--data", "absent", "--out", "x"], "run `de3pipe prepare` first"),
        (["calibrate", "--signals", "absent.npz", "--out", "x"], "run `de3pipe signals` first"),
        (["prepare", "--task", "sst2", "--out", "x", "--set", "finetune.epoch=1"], "did you mean 'finetune.epochs'"),
    ],
)
def test_user_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.output.replace("\n", " ")


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "de3pipe", "prepare", "--task", "stsb", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: task 'stsb' is a regression task")


def test_same_config_and_seed_give_identical_results(tiny_config, tmp_path):
    """Determinism on CPU: the whole chain twice gives the same bytes of every checkpoint and
    signal file, and the same thresholds and metrics (wall-clock timings aside)."""
    sets = stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir)
    for run in ("first", "second"):
        run_every_stage(tmp_path / run, sets)
    first, second = tmp_path / "first", tmp_path / "second"
    for name in ("ft/model.safetensors", "proto/model.safetensors", "calib/thresholds.json", "calib/curves.csv",
                 "eval/test_curves.csv", "eval/exits.parquet", "eval/points.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for split in ("validation", "test"):
        with np.load(first / "signals" / f"{split}.npz") as a, np.load(second / "signals" / f"{split}.npz") as b:
            for key in set(a.files) - {"meta"}:  # meta names the checkpoint folder, which differs here
                assert np.array_equal(a[key], b[key]), (split, key)
    metrics = [json.loads((folder / "eval" / "metrics.json").read_text()) for folder in (first, second)]
    for found in metrics:
        found.pop("wallclock")
    assert metrics[0] == metrics[1]


STUDY_SETS = [
    "--set", "prototypes.controls=true",
    "--set", "signals.prototype_space=true",
    "--set", "calibration.strategies=[de3, entropy, maxprob, distance, de3_nodar, control_entropy, control_maxprob]",
    "--set", "calibration.grids.de3.lam=[0, 0.5, 2.0]",
    "--set", "calibration.per_lambda=true",
    "--set", "evaluation.wallclock=false",
    "--set", "evaluation.overhead=true",
]


def test_study_options_through_the_cli(tiny_config, tmp_path):
    """config/study.yaml's options: controls trained in stage 2, their signals, the variants,
    lambda sensitivity, overhead and the prototype-space figure, into the report."""
    out, sets = tmp_path / "results" / "sst2" / "seed1", stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir) + STUDY_SETS
    run_every_stage(out, sets)
    assert {"controls.safetensors", "controls.json"} <= {p.name for p in (out / "proto").iterdir()}
    assert (out / "signals" / "prototype_space.npz").is_file()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert {"de3_nodar", "control_entropy", "control_maxprob"} <= set(metrics["strategies"])
    assert set(metrics["per_lambda"]["de3"]) == {"0", "0.5", "2"} and "wallclock" not in metrics
    assert metrics["overhead"]["parameters"]["extra_share"] > 0

    # the report finds the run's training records and projection through the run layout
    (out / "evaluation").symlink_to(out / "eval")
    (out / "train_metrics" / "prototyped.json").symlink_to(out / "train_metrics" / "proto.json")
    (out / "train_metrics" / "finetuned.json").symlink_to(out / "train_metrics" / "ft.json")
    config = tmp_path / "study.yaml"
    config.write_text("data:\n  max_train_samples: 1000\n")
    result = invoke("report", "--out", tmp_path / "report", out / "evaluation" / "metrics.json", "--config", config,
                    "--set", "report.bootstrap_samples=200")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report" / "report.md").read_text()
    for heading in ("Setup:", "## Exploratory differences: de3 against each comparison", "## λ on its own axis",
                    "## At matched wall-clock speed-ups",
                    "## Overhead of the distance signal", "## Exit heads per layer", "## Findings", "## Prototype space"):
        assert heading in text, heading
    assert "caps train 1000" in text and "| control_entropy | 2× |" in text and "| de3 − de3_nodar | 2× |" in text
    assert "| 0 (entropy) |" in text
    assert (tmp_path / "report" / "plots" / "prototype_space.png").stat().st_size > 1000


def test_corrupt_truncated_or_wrong_shaped_inputs_get_one_line(tiny_config, tmp_path):
    """Every command that reads signals, thresholds, a checkpoint or evaluation files answers a
    damaged one with one line (exit 2), never a traceback."""
    import shutil

    out, sets = tmp_path / "run", stage_overrides(tiny_config.model.name_or_path, tiny_config.data.glue_dir)
    run_every_stage(out, sets)
    bad = tmp_path / "bad"
    bad.mkdir()

    def truncated(source, name):
        data = source.read_bytes()
        (bad / name).write_bytes(data[: len(data) // 2])
        return bad / name

    signals = out / "signals" / "validation.npz"
    wrong_shape = bad / "wrong.npz"
    with np.load(signals) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["dr"] = arrays["dr"][:, :1]
    np.savez(wrong_shape, **arrays)
    thresholds = out / "calib" / "thresholds.json"
    (bad / "list.json").write_text("[1, 2]")
    (bad / "nokeys.json").write_text(json.dumps(json.loads(thresholds.read_text()) | {"strategies": {"de3": 3}}))
    checkpoint = bad / "ckpt"
    shutil.copytree(out / "proto", checkpoint)
    truncated(out / "proto" / "model.safetensors", "ckpt/model.safetensors")
    evaluation = bad / "eval"
    shutil.copytree(out / "eval", evaluation)
    truncated(out / "eval" / "points.npz", "eval/points.npz")
    cases = [
        (["calibrate", "--signals", truncated(signals, "trunc.npz"), "--out", bad / "c1"], "corrupt or truncated"),
        (["calibrate", "--signals", wrong_shape, "--out", bad / "c2"], "dr has shape"),
        (["evaluate", "--signals", truncated(out / "signals" / "test.npz", "test.npz"), "--thresholds", thresholds,
          "--out", bad / "e1"], "corrupt or truncated"),
        (["evaluate", "--signals", out / "signals", "--thresholds", truncated(thresholds, "t.json"), "--out", bad / "e2"],
         "not valid JSON, or truncated"),
        (["evaluate", "--signals", out / "signals", "--thresholds", bad / "list.json", "--out", bad / "e3"],
         "not an object"),
        (["evaluate", "--signals", out / "signals", "--thresholds", bad / "nokeys.json", "--out", bad / "e4"],
         "re-run `de3pipe calibrate`"),
        (["predict", "--model", checkpoint, "--thresholds", thresholds, "a film"], "re-run the stage that wrote"),
        (["predict", "--model", out / "proto", "--thresholds", bad / "nokeys.json", "a film"], "re-run `de3pipe calibrate`"),
        (["speed", "--model", out / "proto", "--data", out / "data", "--thresholds", truncated(thresholds, "s.json")],
         "not valid JSON, or truncated"),
        (["signals", "--data", out / "data", "--model", checkpoint, "--out", bad / "s1"], "re-run the stage that wrote"),
        (["report", "--out", bad / "r1", evaluation / "metrics.json"], "corrupt or truncated"),
        (["report", "--out", bad / "r2", bad / "nokeys.json"], "lack task, full_model or strategies"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args[0], result.output)
        assert "Traceback" not in result.output and message in result.output, (args[0], result.output)
        assert len(result.output.strip().splitlines()) == 1, (args[0], result.output)
