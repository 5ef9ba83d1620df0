"""The report's summaries: curve areas over a common speed-up range, calibration quality."""

import numpy as np
import pandas as pd
import pytest

from de3pipe.report import frontier_area, summarise


def test_flat_curve_has_its_metric_as_area():
    assert frontier_area(np.array([1.0, 2.0, 3.0]), np.array([0.8, 0.8, 0.8]), 3.0) == pytest.approx(0.8)


def test_area_follows_the_best_knob_setting_at_each_speedup():
    # at 1x only the slow point; on (1, 2] the best of the three faster ones (0.7); on (2, 3] 0.6
    speedup, metric = np.array([1.0, 2.0, 2.0, 3.0]), np.array([0.9, 0.5, 0.7, 0.6])
    assert frontier_area(speedup, metric, 3.0) == pytest.approx(0.65, abs=2e-3)
    assert frontier_area(speedup, metric, 2.0) == pytest.approx(0.7, abs=2e-3)


def test_a_curve_that_stops_early_is_refused():
    with pytest.raises(ValueError, match="stops at 2.00x"):
        frontier_area(np.array([1.0, 2.0]), np.array([0.9, 0.8]), 3.0)


def _run(seed, achieved, curve_speedups):
    curves = pd.DataFrame(
        [{"strategy": name, "speedup": s, "metric": 0.9 - 0.1 * (s - 1)} for name in ("de3", "entropy")
         for s in curve_speedups[name]]
    )
    return {
        "task": "sst2", "seed": seed, "full_model": {"accuracy": 0.9},
        "strategies": {
            name: {"2": {"accuracy": 0.85, "speedup": achieved[name], "calibration_status": "ok"}}
            for name in ("de3", "entropy")
        },
        "_curves": curves,
    }


def test_calibration_error_and_common_area_range():
    runs = [
        _run(1, {"de3": 1.9, "entropy": 1.6}, {"de3": [1, 2, 3], "entropy": [1, 1.5, 2.5]}),
        _run(2, {"de3": 2.1, "entropy": 1.8}, {"de3": [1, 2, 3], "entropy": [1, 2, 2.8]}),
    ]
    task = summarise(runs)["tasks"]["sst2"]
    assert task["calibration_error"]["de3"]["2"][0] == pytest.approx(0.0)
    assert task["calibration_error"]["entropy"]["2"][0] == pytest.approx(-0.15)
    assert task["curve_area"]["speedup_range"] == [1.0, 2.5]  # the shortest curve sets the range
    # de3's points (1x 0.9, 2x 0.8, 3x 0.7): 0.8 is reachable on (1, 2], 0.7 on (2, 2.5] -> 0.767
    assert task["curve_area"]["strategies"]["de3"][0] == pytest.approx((0.8 * 1 + 0.7 * 0.5) / 1.5, abs=2e-3)


def test_paired_differences_take_the_best_control_per_seed():
    def run(seed, de3, entropy, ctrl_e, ctrl_m):
        values = {"de3": de3, "entropy": entropy, "control_entropy": ctrl_e, "control_maxprob": ctrl_m}
        return {
            "task": "sst2", "seed": seed, "full_model": {"accuracy": 0.9}, "_curves": None,
            "strategies": {n: {"2": {"accuracy": v, "speedup": 2.0, "calibration_status": "ok"}} for n, v in values.items()},
        }

    runs = [run(1, 0.80, 0.70, 0.75, 0.78), run(2, 0.82, 0.71, 0.79, 0.76), run(3, 0.81, 0.72, 0.74, 0.77)]
    paired = summarise(runs)["tasks"]["sst2"]["paired"]
    assert paired["entropy"]["2"][0] == pytest.approx(0.10)
    assert paired["best control head"]["2"][0] == pytest.approx((0.02 + 0.03 + 0.04) / 3)
    assert "no DAR" not in paired  # not run: no row
    from de3pipe.report import _signed, findings

    assert _signed(paired["entropy"]["2"]).startswith("**+10.0")  # the seeds agree: bold
    assert _signed((0.01, 0.05)) == "+1.0 ± 5.0"
    lines = findings(summarise(runs) | {"tasks": {"sst2": summarise(runs)["tasks"]["sst2"]}})
    assert any("de3 − entropy at 2×: ahead on 1 of 1 tasks" in line and "gain for sst2" in line for line in lines)
