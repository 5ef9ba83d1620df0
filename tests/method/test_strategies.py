import json
import os
from pathlib import Path

import numpy as np
import pytest

from de3pipe.errors import De3Error
from de3pipe.method.metrics import exit_histogram, layer_speedup
from de3pipe.method.signals import Signals
from de3pipe.method.strategies import lookup, make_strategy, replay, strategy_names


def make_signals(pred, entropy, dr, labels=None) -> Signals:
    pred = np.asarray(pred)
    n, m = pred.shape
    log_probs = np.log(np.full((n, m, 2), 0.5, dtype=np.float32))
    for i in range(n):
        for j in range(m):
            p = 0.9 if entropy[i][j] < 0.5 else 0.6
            log_probs[i, j, pred[i, j]], log_probs[i, j, 1 - pred[i, j]] = np.log(p), np.log(1 - p)
    dr = np.asarray(dr, dtype=np.float32)
    return Signals(
        log_probs=log_probs,
        pred=pred,
        entropy=np.asarray(entropy, dtype=np.float32),
        r1=np.ones_like(dr),
        r2=np.ones_like(dr),
        dr=dr,
        labels=np.asarray(labels if labels is not None else np.zeros(n), dtype=np.int64),
        idx=np.arange(n),
        meta={"task": "sst2"},
    )


PRED = [[0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 1]]
ENTROPY = [[0.9, 0.3, 0.9, 0.9], [0.2, 0.9, 0.2, 0.2], [0.9, 0.9, 0.9, 0.1]]
DR = [[0.8, 0.8, 0.1], [0.9, 0.1, 0.9], [0.7, 0.2, 0.2]]


def test_patience_counts_consecutive_agreement():
    s = make_signals(PRED, ENTROPY, DR)
    # t=1: exit when layer m agrees with m-1: row0 at 2, row1 at 3, row2 never -> 4
    assert replay(make_strategy("patience", t=1), s)[0].tolist() == [2, 3, 4]
    # t=2: three agreeing layers: row0 never (0,0,1), row1 at layer 4 = M anyway
    assert replay(make_strategy("patience", t=2), s)[0].tolist() == [4, 4, 4]


def test_threshold_strategies_take_the_first_layer_below_tau():
    s = make_signals(PRED, ENTROPY, DR)
    assert replay(make_strategy("entropy", tau=0.5), s)[0].tolist() == [2, 1, 4]
    assert replay(make_strategy("distance", tau=0.5), s)[0].tolist() == [3, 2, 2]
    layers, preds = replay(make_strategy("pcee", tau=0.5, t=2), s)
    assert layers.tolist() == [4, 4, 4]  # row1: E<0.5 at 1, broken at 2, again at 3 -> streak 1 only
    assert replay(make_strategy("maxprob", tau=0.8), s)[0].tolist() == [2, 1, 4]
    assert preds.tolist() == [1, 0, 1]


def test_de3_with_lambda_zero_equals_entropy():
    s = make_signals(PRED, ENTROPY, DR)
    for tau in (0.15, 0.25, 0.5, 0.95):
        de3 = replay(make_strategy("de3", 1e-8, tau=tau, lam=0.0), s)[0]
        assert de3.tolist() == replay(make_strategy("entropy", tau=tau), s)[0].tolist()


def test_static_and_oracle():
    s = make_signals(PRED, ENTROPY, DR, labels=[1, 0, 1])
    assert replay(make_strategy("static", k=2), s)[0].tolist() == [2, 2, 2]
    layers, preds = replay(make_strategy("oracle"), s)
    assert layers.tolist() == [3, 2, 2] and preds.tolist() == [1, 0, 1]
    unlabeled = make_signals(PRED, ENTROPY, DR, labels=[-1, -1, -1])
    with pytest.raises(De3Error, match="labeled split"):
        replay(make_strategy("oracle"), unlabeled)


def test_speedup_and_histogram():
    layers = np.array([1, 2, 4, 4])
    assert layer_speedup(layers, 4) == pytest.approx(16 / 11)
    assert exit_histogram(layers, 4) == [1, 1, 0, 2]


def test_every_strategy_is_registered_with_its_facts():
    assert strategy_names(variants=False) == ("de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle")
    assert strategy_names()[8:] == ("de3_nodar", "control_entropy", "control_maxprob")
    assert [n for n in strategy_names() if lookup(n).analysis_only] == ["oracle"]
    assert {n: lookup(n).secondary_knob for n in strategy_names() if lookup(n).secondary_knob} == {
        "de3": "lam", "pcee": "t", "de3_nodar": "lam"}
    assert lookup("control_entropy").view == "control" and lookup("control_entropy").rule is lookup("entropy").rule
    assert not lookup("de3_nodar").servable and not lookup("oracle").servable and lookup("pcee").servable
    with pytest.raises(De3Error, match="unknown strategy"):
        make_strategy("magic")
    with pytest.raises(De3Error, match="bad knobs"):
        make_strategy("entropy", t=3)
    with pytest.raises(De3Error, match="needs the run's eps"):
        make_strategy("de3", tau=0.5, lam=1.0)
    assert make_strategy("de3", 1e-6, tau=0.5, lam=1.0).knobs() == {"tau": 0.5, "lam": 1.0}  # eps is no knob


def test_a_new_strategy_is_one_registered_class(tiny_model_dir, tmp_path):
    """Registering one class whose knobs have new names makes it known to the config schema,
    calibration (its configurable knob under calibration.grids), evaluation, the report (even as
    the reference) and predict, with nothing else edited."""
    import subprocess
    import sys

    script = tmp_path / "plugin.py"
    script.write_text(
        """
import json, sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from de3pipe.method.strategies import Strategy, register

@register
@dataclass(frozen=True)
class ConfidentAfter(Strategy):
    confidence: float
    min_layer: int
    name: ClassVar[str] = "confident_after"
    secondary_knob: ClassVar[str | None] = "min_layer"
    grid_defaults: ClassVar[dict[str, tuple]] = {"min_layer": (1, 2)}
    grid_minimum: ClassVar[dict[str, float]] = {"min_layer": 1}

    def exits(self, layer, signals, state, labels):
        return (signals.maxprob > self.confidence) & (layer >= self.min_layer)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for min_layer in grid["min_layer"]:
            for confidence in (0.5, 0.7, 0.9, 1.1):
                yield {"confidence": confidence, "min_layer": min_layer}

from de3pipe.config import load_config
from de3pipe.infra.io import write_json
from de3pipe.infra.workflow import pipeline_schema
from de3pipe.inference.predict import Predictor
from de3pipe.method.calibration import calibrate
from de3pipe.method.strategies import check_config, compared_names
from de3pipe.stages import evaluate as evaluate_stage, report as report_stage
from tests.helpers import prototyped_tiny_model
from tests.method.test_calibration import random_signals

out = Path(sys.argv[2])
cfg = load_config(None, ["calibration.strategies=[entropy, confident_after]", "calibration.targets=[1.5]",
                         "calibration.grids.confident_after.min_layer=[1, 3]", "report.reference=confident_after",
                         "report.comparisons=[entropy]", "report.primary.against=[entropy]",
                         "report.bootstrap_samples=100", "evaluation.wallclock=false", "tracking.enabled=false"])
check_config(cfg)
schema = pipeline_schema()["$defs"]["CalibrationConfig"]["properties"]
thresholds, _ = calibrate(random_signals(300, seed=1), cfg.calibration, 1e-8)
write_json(out / "thresholds.json", thresholds)
random_signals(300, seed=2).save(out / "signals" / "test.npz")
results = evaluate_stage.run(out / "signals" / "test.npz", out / "thresholds.json", out / "evaluation", cfg)
summary = report_stage.run([out / "evaluation" / "metrics.json"], out / "report", cfg)
model, tokenizer = prototyped_tiny_model(Path(sys.argv[1]))
model.save_pretrained(out / "proto", tokenizer)
predicted = Predictor(out / "proto", out / "thresholds.json", "confident_after", "1.5").classify(["a gripping film"])
knobs = thresholds["strategies"]["confident_after"]["1.5"]["knobs"]
print(json.dumps({
    "schema": "confident_after" in schema["strategies"]["anyOf"][0]["items"]["enum"],
    "grid default": schema["grids"]["default"]["confident_after"],
    "order": compared_names()[-1],
    "knobs": sorted(knobs), "min_layer": knobs["min_layer"],
    "evaluated": "confident_after" in results["strategies"],
    "report": "| confident_after − entropy | 1.5× |" in (out / "report" / "report.md").read_text(),
    "matched": summary["tasks"]["sst2"]["matched"]["confident_after"]["1.5"] is not None,
    "predicted": predicted[0]["label"],
}))
"""
    )
    root = Path(__file__).parents[2]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path)], capture_output=True,
                          text=True, cwd=root, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found.pop("min_layer") in (1, 3)
    assert found.pop("predicted") in ("negative", "positive")
    assert found == {"schema": True, "grid default": {"min_layer": [1, 2]}, "order": "control_maxprob",
                     "knobs": ["confidence", "min_layer"], "evaluated": True, "report": True, "matched": True}
