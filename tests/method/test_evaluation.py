"""The per-run figures DVC declares as metrics (evaluation.headline)."""

import pandas as pd
import pytest

from de3pipe.method.evaluation import headline


def test_headline_rows_read_each_curve_at_its_target_with_the_full_model_at_1x():
    results = {
        "task": "sst2",
        "full_model": {"accuracy": 0.9},
        "strategies": {
            "de3": {"2": {"accuracy": 0.81, "speedup": 2.1}, "3": {"accuracy": 0.7, "speedup": 2.9}},
            "oracle": {"any": {"accuracy": 1.0, "speedup": 4.0}},
        },
    }
    curves = pd.DataFrame({"strategy": ["de3", "de3"], "speedup": [2.5, 1.5], "metric": [0.8, 0.85]})

    records = headline(results, curves)

    assert set(records) == {"full", "de3@2x", "de3@3x"}  # the oracle has no target
    assert records["full"] == {"metric": 0.9}
    # between the curve's points at 1.5x (0.85) and 2.5x (0.8), linear in 1/speed-up: 1/2 is 0.375 of the way
    assert records["de3@2x"] == {"metric": 0.81, "speedup": 2.1, "matched": pytest.approx(0.8 + 0.375 * 0.05, abs=1e-4)}  # rounded to 4 places
    assert records["de3@3x"] == {"metric": 0.7, "speedup": 2.9}  # the curve stops at 2.5x: no matched figure
    # below the curve's first point the full model at 1x anchors it
    low = headline({**results, "strategies": {"de3": {"1.2": {"accuracy": 0.88, "speedup": 1.2}}}}, curves)
    assert low["de3@1.2x"]["matched"] == pytest.approx((0.9 + 0.85) / 2)  # 1/1.2 halfway between 1/1.5 and 1


def test_headline_without_curves_gives_no_matched_figures():
    results = {"task": "sst2", "full_model": {"accuracy": 0.9},
               "strategies": {"entropy": {"2": {"accuracy": 0.8, "speedup": 2.0}}}}
    assert headline(results, pd.DataFrame()) == {"full": {"metric": 0.9},
                                                  "entropy@2x": {"metric": 0.8, "speedup": 2.0}}
