import numpy as np
import pytest

from de3pipe.modeling.batching import EncodedSplit, collate, encode_texts
from de3pipe.config import CalibrationConfig
from de3pipe.inference.engine import EarlyExitEngine, collect_signals, measure_wallclock
from de3pipe.method.strategies import lookup, make_strategy, replay, strategy_names
from tests.helpers import TEXTS, prototyped_tiny_model


@pytest.fixture(scope="module")
def setup(family_model_dir):
    """A prototyped tiny model of each backbone family, 64 texts of 1 to 30 words (half of them
    sentence pairs) and their stored signals."""
    model, tokenizer = prototyped_tiny_model(family_model_dir, distance="euclidean")
    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) for _ in range(64)]
    features = encode_texts(tokenizer, texts[:32], None, 64) + encode_texts(tokenizer, texts[32:], texts[:32], 64)
    split = EncodedSplit(features, rng.integers(0, 2, 64), np.arange(64))
    signals = collect_signals(model, tokenizer, split, 16, 1e-8, {"task": "sst2", "split": "x"}, progress=False)
    return model, tokenizer, split, signals


def _engine_run(model, tokenizer, split, strategy, batch_size):
    engine = EarlyExitEngine(model, 1e-8)
    layers, preds = np.zeros(len(split), int), np.zeros(len(split), int)
    for start in range(0, len(split), batch_size):  # other batches than the signal pass: a stronger check
        rows = np.arange(start, min(start + batch_size, len(split)))
        result, _ = engine.run(collate(tokenizer, [split.features[i] for i in rows]), strategy, split.labels[rows])
        layers[rows], preds[rows] = result.exit_layer, result.prediction
    return layers, preds


@pytest.mark.parametrize("name", strategy_names(variants=False))
def test_engine_equals_replay_for_every_strategy(setup, name):
    model, tokenizer, split, signals = setup
    rule = lookup(name).rule
    grid = rule.knob_grid(signals, rule.grid(CalibrationConfig(grids={"de3": {"lam": [0.5, 2.0]}})), 12, 1e-8)
    candidates = [make_strategy(name, 1e-8, **knobs) for knobs in grid]
    assert candidates
    exit_counts = set()
    for strategy in candidates[:: max(1, len(candidates) // 6)]:
        expected_layers, expected_preds = replay(strategy, signals)
        layers, preds = _engine_run(model, tokenizer, split, strategy, batch_size=24)
        assert layers.tolist() == expected_layers.tolist(), strategy.describe()
        assert preds.tolist() == expected_preds.tolist(), strategy.describe()
        exit_counts.add(tuple(np.bincount(layers, minlength=5)))
    if not lookup(name).analysis_only:
        assert len(exit_counts) > 1  # the knob really moved the exits


def test_signal_pass_matches_the_plain_forward(setup):
    model, tokenizer, split, signals = setup
    batch = collate(tokenizer, split.features)
    logits, _ = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    assert np.array_equal(signals.pred, logits.argmax(-1).T.numpy())
    assert np.array_equal(EarlyExitEngine(model, 1e-8).run_full(batch), signals.pred[:, -1])
    assert signals.idx.tolist() == list(range(64))


def _layer_input_shapes(model, monkeypatch) -> list[tuple[int, int]]:
    """(rows, columns) of the hidden states each layer the model runs from now on receives."""
    shapes = []
    original = model.run_layer

    def spy(layer, hidden, context):
        shapes.append(tuple(hidden.shape[:2]))
        return original(layer, hidden, context)

    monkeypatch.setattr(model, "run_layer", spy)
    return shapes


def test_rows_really_leave_the_batch(setup, monkeypatch):
    model, tokenizer, split, _ = setup
    shapes = _layer_input_shapes(model, monkeypatch)
    result, _ = EarlyExitEngine(model, 1e-8).run(collate(tokenizer, split.features[:32]), make_strategy("static", k=2))
    assert [rows for rows, _ in shapes] == [32, 32]  # layers 3 and 4 never ran
    assert result.exit_layer.tolist() == [2] * 32


def test_padding_is_trimmed_as_long_rows_leave(setup, monkeypatch):
    """The longer half of the rows leaves after layer 1 (the oracle, given layer 1's predictions as
    their labels): layer 2 then runs on the shorter rows only, and on only as many columns as the
    longest of them needs. That the results stay exact is the replay test above."""
    model, tokenizer, split, signals = setup
    shapes = _layer_input_shapes(model, monkeypatch)
    lengths, first = split.lengths, signals.pred[:, 0]
    long_rows = lengths > np.median(lengths)
    labels = np.where(long_rows, first, 1 - first)
    result, _ = EarlyExitEngine(model, 1e-8).run(collate(tokenizer, split.features), make_strategy("oracle"), labels)
    assert (result.exit_layer[long_rows] == 1).all() and (result.exit_layer[~long_rows] > 1).all()
    widths = [columns for _, columns in shapes]
    assert widths[0] == lengths.max() and widths[1] == lengths[~long_rows].max() < widths[0]


def test_wallclock_report(setup):
    model, tokenizer, split, _ = setup
    rows = measure_wallclock(EarlyExitEngine(model, 1e-8), tokenizer, split, [make_strategy("static", k=1)], 16, repeats=1)
    assert rows[0]["layer_speedup"] == pytest.approx(4.0)
    assert rows[0]["wallclock_speedup"] > 0 and rows[0]["samples"] == 64
