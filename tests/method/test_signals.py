import math

import numpy as np
import pytest
import torch

from de3pipe.method.signals import edr, layer_signals


def test_entropy_is_normalised_by_log_k():
    logits = torch.tensor([[0.0, 0.0], [100.0, -100.0], [0.0, 0.0]])
    out = layer_signals(logits[:2], None, 1e-8)
    assert out.entropy[0] == pytest.approx(1.0)
    assert out.entropy[1] == pytest.approx(0.0, abs=1e-6)
    p = np.array([0.7, 0.2, 0.1])
    out3 = layer_signals(torch.tensor(np.log(p))[None].float(), None, 1e-8)
    expected = -(p * np.log(p)).sum() / math.log(3)
    assert out3.entropy[0] == pytest.approx(expected, rel=1e-5)
    assert out3.maxprob[0] == pytest.approx(0.7, rel=1e-5)


def test_entropy_does_not_overflow_on_huge_logits():
    out = layer_signals(torch.tensor([[1e30, -1e30, 0.0]]), None, 1e-8)
    assert np.isfinite(out.entropy).all() and out.entropy[0] == pytest.approx(0.0, abs=1e-6)


def test_distance_ratio_piecewise():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    distances = torch.tensor([[1.0, 3.0], [1.0, 3.0], [3.0, 3.0], [0.0, 0.0]])
    out = layer_signals(logits, distances, 1e-8)
    # r1 < r2: 0.5 * (1 + (1 - 3)/3) = 1/6;  r1 > r2: 0.5 * (1 + (3 - 1)/3) = 5/6
    assert out.r1.tolist() == [1.0, 3.0, 3.0, 0.0]
    assert out.r2.tolist() == [3.0, 1.0, 3.0, 0.0]
    assert out.dr == pytest.approx([1 / 6, 5 / 6, 0.5, 0.5])


def test_unseen_prototypes_are_far_away():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    distances = torch.tensor([[1.0, float("inf"), float("inf")], [1.0, float("inf"), 2.0]])
    out = layer_signals(logits, distances, 1e-8)
    assert out.dr.tolist() == [0.0, 1.0]


def test_edr_with_lambda_zero_is_entropy():
    entropy = np.array([0.0, 0.1, 0.5, 1.0])
    dr = np.array([0.9, 0.2, 0.5, 0.0])
    assert edr(entropy, dr, 0.0)[1:] == pytest.approx(entropy[1:])
    assert edr(entropy, dr, 0.0)[0] == pytest.approx(1e-8)


def test_edr_is_the_weighted_harmonic_mean():
    # lam = 1, E = 0.2, DR = 0.6: 2 / (1/0.6 + 1/0.2) = 0.3
    assert edr(np.array([0.2]), np.array([0.6]), 1.0)[0] == pytest.approx(0.3)
    # lam = 3: 4 / (3/0.6 + 1/0.2) = 0.4
    assert edr(np.array([0.2]), np.array([0.6]), 3.0)[0] == pytest.approx(0.4)
