"""What de3's exit check costs over entropy's (de3pipe/inference/overhead.py), on the tiny model:
parameter and FLOP counts by hand, and how the timed shares fit together (no timing thresholds)."""

import numpy as np
import pytest

from de3pipe.inference.overhead import measure_overhead
from de3pipe.modeling.batching import EncodedSplit, encode_texts
from tests.helpers import TEXTS, prototyped_tiny_model

HIDDEN, LAYERS, LABELS = 32, 4, 2  # the tiny model (conftest.tiny_model_dir), binary sst2


@pytest.fixture(scope="module")
def model_and_split(tiny_model_dir):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    split = EncodedSplit(encode_texts(tokenizer, TEXTS, None, 64), np.zeros(len(TEXTS), int), np.arange(len(TEXTS)))
    return model, tokenizer, split


@pytest.fixture(scope="module")
def overhead(model_and_split):
    model, tokenizer, split = model_and_split
    return measure_overhead(model, tokenizer, split, batch_size=8, eps=1e-8, seed=0, min_run_time=0.01)


def test_the_record_has_every_section(overhead):
    assert set(overhead) == {"batch_size", "layer", "mean_tokens", "parameters", "flops_per_sample",
                             "extra_flops_share_of_layer", "seconds", "repeats", "percent_of_layer"}
    assert set(overhead["seconds"]) == {"layer", "classifier", "entropy_signal", "de3_signal"}
    for piece, times in overhead["repeats"].items():  # every timed run kept; the median is the figure
        assert len(times) >= 1 and overhead["seconds"][piece] == pytest.approx(float(np.median(times)))
    assert set(overhead["percent_of_layer"]) == {"classifier", "entropy_signal", "de3_signal", "de3_extra"}
    assert overhead["batch_size"] == 8
    assert overhead["layer"] == 2  # the middle of 4 layers, 1-based: (4 - 1) // 2 + 1


def test_parameter_counts_by_hand(overhead, model_and_split):
    model, _, _ = model_and_split
    dim = model.config.prototype_dim
    p = overhead["parameters"]
    assert p["hidden_size"] == HIDDEN and p["prototype_dim"] == dim
    assert p["prototype_networks"] == (LAYERS - 1) * (HIDDEN * dim + dim)  # one Linear(H, d) per inner exit
    assert p["prototype_buffers"] == (LAYERS - 1) * LABELS * dim
    assert p["model"] == sum(x.numel() for x in model.parameters()) - p["prototype_networks"]
    extra = p["prototype_networks"] + p["prototype_buffers"]
    assert p["extra_share"] == pytest.approx(extra / p["model"]) and 0 < p["extra_share"] < 1
    assert p["extra_bytes"] == extra * 4  # float32


def test_flops_per_sample_by_hand(overhead, model_and_split):
    model, _, _ = model_and_split
    dim = model.config.prototype_dim
    flops = overhead["flops_per_sample"]
    assert flops["classifier"] == 2 * HIDDEN * HIDDEN + 2 * HIDDEN * LABELS  # pooler and classifier matmuls
    assert flops["prototype_map"] == 2 * HIDDEN * dim
    assert flops["entropy_signal"] == 5 * LABELS  # no matmul: the element-wise formula alone
    distance_work = 3 * LABELS * dim + LABELS + 10
    assert flops["de3_signal"] == flops["entropy_signal"] + flops["prototype_map"] + distance_work
    assert flops["de3_signal"] >= flops["entropy_signal"]
    assert flops["layer"] > flops["classifier"] > 0
    assert overhead["extra_flops_share_of_layer"] == pytest.approx(
        (flops["de3_signal"] - flops["entropy_signal"]) / flops["layer"])
    assert overhead["extra_flops_share_of_layer"] > 0


def test_timed_shares_are_consistent(overhead):
    seconds, percent = overhead["seconds"], overhead["percent_of_layer"]
    assert all(s > 0 for s in seconds.values())
    layer = seconds["layer"]
    assert percent["classifier"] == pytest.approx(100 * seconds["classifier"] / layer)
    assert percent["entropy_signal"] == pytest.approx(100 * (seconds["classifier"] + seconds["entropy_signal"]) / layer)
    assert percent["de3_signal"] == pytest.approx(100 * (seconds["classifier"] + seconds["de3_signal"]) / layer)
    assert percent["de3_extra"] == pytest.approx(percent["de3_signal"] - percent["entropy_signal"])
    assert percent["entropy_signal"] > percent["classifier"] > 0  # a check includes its classifier


def test_a_batch_larger_than_the_split_takes_every_example(model_and_split):
    model, tokenizer, split = model_and_split
    result = measure_overhead(model, tokenizer, split, batch_size=100, eps=1e-8, seed=3, min_run_time=0.01)
    assert result["batch_size"] == len(TEXTS)
    assert result["mean_tokens"] == pytest.approx(np.mean(split.lengths))


def test_the_seed_chooses_the_batch(model_and_split):
    model, tokenizer, split = model_and_split
    tokens = {seed: measure_overhead(model, tokenizer, split, batch_size=3, eps=1e-8, seed=seed,
                                     min_run_time=0.01)["mean_tokens"] for seed in (0, 1, 2, 5)}
    lengths = split.lengths
    assert all(lengths.min() <= t <= lengths.max() for t in tokens.values())
    again = measure_overhead(model, tokenizer, split, batch_size=3, eps=1e-8, seed=0, min_run_time=0.01)
    assert again["mean_tokens"] == tokens[0]
    assert len(set(tokens.values())) > 1  # different seeds, different examples
