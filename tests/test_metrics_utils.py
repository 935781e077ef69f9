"""metrics_utils against hand-computed values and the documented edge cases."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from loglead_lo2 import metrics_utils as mu
from loglead_lo2.metrics_utils import (
    false_positive_rate_at_alpha,
    population_stability_index,
    precision_at_k,
)

Y = [1, 0, 1, 0]
S = [0.9, 0.8, 0.7, 0.1]


@pytest.mark.parametrize(("k", "expected"), [(1, 1.0), (2, 0.5), (3, 2 / 3), (4, 0.5)])
def test_precision_at_k_hand_values(k: int, expected: float) -> None:
    assert precision_at_k(Y, S, k) == pytest.approx(expected)


def test_precision_at_k_edges() -> None:
    assert precision_at_k(Y, S, 10) == pytest.approx(0.5)  # k > n: all rows
    assert precision_at_k(Y, S, 0) is None
    assert precision_at_k(Y, S, -3) is None
    assert precision_at_k([], [], 5) is None
    # ties broken by input order: the earlier (normal) row wins the single slot
    assert precision_at_k([0, 1], [0.5, 0.5], 1) == 0.0
    assert precision_at_k([1, 0], [0.5, 0.5], 1) == 1.0
    with pytest.raises(ValueError, match="scores has 3"):
        precision_at_k([1, 0], [0.1, 0.2, 0.3], 1)


def test_fp_rate_at_alpha_hand_values() -> None:
    y = [1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.2, 0.1]
    # alpha 0.4 -> ceil(2.0) = 2 flagged (0.9, 0.8): 1 false positive of 3 normals
    assert false_positive_rate_at_alpha(y, s, 0.4) == pytest.approx(1 / 3)
    # alpha 0.5 -> ceil(2.5) = 3 flagged (adds 0.7, an anomaly): still 1 / 3
    assert false_positive_rate_at_alpha(y, s, 0.5) == pytest.approx(1 / 3)
    # alpha 0.8 -> 4 flagged: 2 / 3
    assert false_positive_rate_at_alpha(y, s, 0.8) == pytest.approx(2 / 3)
    assert false_positive_rate_at_alpha(y, s, 1.0) == pytest.approx(1.0)
    # a tiny alpha still flags one row (ceil), the top one is an anomaly
    assert false_positive_rate_at_alpha(y, s, 0.01) == 0.0


def test_fp_rate_at_alpha_edges() -> None:
    assert false_positive_rate_at_alpha(Y, S, 0) is None
    assert false_positive_rate_at_alpha(Y, S, -0.5) is None
    assert false_positive_rate_at_alpha(Y, S, float("nan")) is None
    assert false_positive_rate_at_alpha([1, 1], [0.3, 0.2], 0.5) is None  # no normals
    assert false_positive_rate_at_alpha([], [], 0.1) is None
    assert false_positive_rate_at_alpha(Y, S, 2.0) == pytest.approx(1.0)  # clipped to 1


def test_psi_hand_value() -> None:
    # bins=2: edge = median(1,2,3,4) = 2.5; expected shares .5/.5, actual .75/.25
    psi = population_stability_index([1, 2, 3, 4], [1, 1, 1, 4], bins=2)
    expected = 0.25 * math.log(1.5) + (-0.25) * math.log(0.5)
    assert psi == pytest.approx(expected)
    assert expected == pytest.approx(0.274653, abs=1e-6)


def test_psi_identical_and_shifted() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    assert population_stability_index(base, base) == pytest.approx(0.0)
    small = population_stability_index(base, rng.normal(size=5000))
    large = population_stability_index(base, rng.normal(loc=2.0, size=5000))
    assert small < 0.05
    assert large > 0.25


def test_psi_edges() -> None:
    assert population_stability_index([], [1.0]) is None
    assert population_stability_index([1.0], []) is None
    assert population_stability_index([np.nan], [1.0]) is None  # NaN dropped -> empty
    # constant expected: one inner edge (0); disjoint actual uses the epsilon floor
    psi = population_stability_index([0, 0, 0, 0], [5, 5])
    eps = mu.PSI_EPSILON
    assert psi == pytest.approx(2 * (1 - eps) * math.log(1 / eps))
    with pytest.raises(ValueError, match="bins"):
        population_stability_index([1, 2], [1, 2], bins=0)
    assert population_stability_index([1, 2, 3], [7, 8], bins=1) == pytest.approx(0.0)


def test_demo_reexport_is_the_package_module() -> None:
    path = Path(__file__).resolve().parents[1] / "demo" / "lo2_e2e" / "metrics_utils.py"
    spec = importlib.util.spec_from_file_location("demo_metrics_utils", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.precision_at_k is precision_at_k
    assert module.false_positive_rate_at_alpha is false_positive_rate_at_alpha
    assert module.population_stability_index is population_stability_index
