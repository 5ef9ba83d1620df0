import numpy as np
import pytest

from de3pipe.errors import De3Error
from de3pipe.metrics import exit_histogram, layer_speedup
from de3pipe.signals import Signals
from de3pipe.strategies import STRATEGY_TYPES, make_strategy, replay


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
        de3 = replay(make_strategy("de3", tau=tau, lam=0.0), s)[0]
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


def test_every_strategy_is_registered():
    assert set(STRATEGY_TYPES) == {"de3", "entropy", "maxprob", "patience", "pcee", "distance", "static", "oracle"}
    with pytest.raises(De3Error, match="unknown strategy"):
        make_strategy("magic")
    with pytest.raises(De3Error, match="bad knobs"):
        make_strategy("entropy", t=3)
