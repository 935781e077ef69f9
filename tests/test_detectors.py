"""Hand-computed scores of the token detectors' newer options (RarityDetector ``tie_weight``,
the surprisal models of the registry)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from loglead_lo2.detection.detectors import RarityDetector

# n = 3 training rows; document frequencies 3, 2, 0, 0
TRAIN = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
TEST = np.array([[1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype=float)
R = np.log(5 / np.array([4.0, 3.0, 1.0, 1.0]))  # -log((df + 1) / (n + 2))


def test_surprisal_is_max_plus_a_small_sum_term() -> None:
    det = RarityDetector(top_k=1, tie_weight=0.1).fit(TRAIN)
    expected = [
        R[1] + 0.1 * (R[0] + R[1]),  # rarest present token + 0.1 x all present ones
        R[2] + 0.1 * R[2],  # one unseen token (its count of 3 does not matter)
        0.0,  # no tokens
        R[2] + 0.1 * (R[0] + R[2] + R[3]),  # two unseen tokens outrank one
    ]
    np.testing.assert_allclose(det.decision_function(TEST), expected)
    np.testing.assert_allclose(det.score_samples(TEST), -np.array(expected))
    scores = det.decision_function(TEST)
    assert scores[3] > scores[1]  # the tie of the plain maximum is broken
    two, one = R[1] + 0.1 * (R[0] + R[1]), R[0] + 0.1 * R[0]  # training rows' scores
    assert det.threshold_ == pytest.approx(np.quantile([two, one, two], 0.99))
    np.testing.assert_array_equal(det.predict(TEST), [1, 1, 0, 1])


def test_tie_weight_zero_is_the_plain_rarity_score() -> None:
    plain = RarityDetector(top_k=2).fit(TRAIN).decision_function(TEST)
    zero = RarityDetector(top_k=2, tie_weight=0.0).fit(TRAIN).decision_function(TEST)
    np.testing.assert_array_equal(plain, zero)
    np.testing.assert_allclose(
        RarityDetector(top_k=1).fit(TRAIN).decision_function(TEST), [R[1], R[2], 0.0, R[2]])


def test_surprisal_parameters_state_and_pickle() -> None:
    with pytest.raises(ValueError, match="tie_weight"):
        RarityDetector(tie_weight=-0.1).fit(TRAIN)
    det = RarityDetector(top_k=1, tie_weight=0.01)
    assert clone(det).get_params() == det.get_params()
    assert not hasattr(det, "rarity_")  # fitted state only in fit
    det.fit(TRAIN)
    before = pickle.dumps(det)
    det.decision_function(TEST)
    det.predict(TEST)
    assert pickle.dumps(det) == before
    again = pickle.loads(before)
    np.testing.assert_array_equal(again.decision_function(TEST), det.decision_function(TEST))
