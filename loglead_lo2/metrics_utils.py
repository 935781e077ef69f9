"""Ranking and drift metrics that scikit-learn does not provide.

All functions take labels with ``1`` = anomalous and scores where **higher means more
anomalous**, ignore nothing silently and return ``None`` where the metric is undefined, so a
report can print "n/a" instead of a misleading number:

- empty input -> ``None``;
- :func:`precision_at_k`: ``k <= 0`` -> ``None``; ``k > n`` is clipped to ``n``;
- :func:`false_positive_rate_at_alpha`: ``alpha <= 0`` or no normal rows -> ``None``;
  ``alpha > 1`` is clipped to 1;
- :func:`population_stability_index`: either side empty (after dropping NaN) -> ``None``.

Ties in the score are broken by input order (stable sort), so results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray

PSI_EPSILON = 1e-6
"""Floor for a bin's share in :func:`population_stability_index` (avoids log(0))."""


def _as_arrays(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    return y, s


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores (ties: earlier index first)."""
    return np.argsort(-scores, kind="stable")[:n]


def ranking_aucs(y_true: ArrayLike, scores: ArrayLike) -> tuple[float | None, float | None]:
    """``(ROC-AUC, PR-AUC)`` of ``scores`` against ``y_true`` (1 = anomaly, the positive class),
    both ``None`` when they are undefined: a single class or non-finite scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _as_arrays(y_true, scores)
    if not 0 < int(y.sum()) < y.size or not np.all(np.isfinite(s)):
        return None, None
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def precision_at_k(y_true: ArrayLike, scores: ArrayLike, k: int) -> float | None:
    """Share of anomalies among the ``k`` highest-scored rows.

    ``k > n`` uses all ``n`` rows (the result is then the anomaly rate); ``k <= 0`` or empty
    input gives ``None``.
    """
    y, s = _as_arrays(y_true, scores)
    if y.size == 0 or k <= 0:
        return None
    k = min(int(k), y.size)
    return float(y[_top(s, k)].mean())


def false_positive_rate_at_alpha(
    y_true: ArrayLike, scores: ArrayLike, alpha: float
) -> float | None:
    """False-positive rate when the top ``alpha`` share of rows is flagged as anomalous.

    The ``ceil(alpha * n)`` highest-scored rows are flagged; the result is
    ``flagged normal rows / all normal rows``. ``alpha <= 0``, empty input or no normal rows
    give ``None``; ``alpha > 1`` is treated as 1.
    """
    y, s = _as_arrays(y_true, scores)
    if y.size == 0 or not alpha > 0:
        return None
    negatives = int((~y).sum())
    if negatives == 0:
        return None
    n_flag = math.ceil(min(float(alpha), 1.0) * y.size)
    flagged = _top(s, n_flag)
    return float((~y[flagged]).sum() / negatives)


def population_stability_index(
    expected: ArrayLike, actual: ArrayLike, bins: int = 10
) -> float | None:
    """PSI of ``actual`` against ``expected`` (e.g. training vs hold-out scores).

    Bin edges are the ``bins``-quantiles of ``expected`` (duplicates merged, outer bins open),
    shares are floored at :data:`PSI_EPSILON`; ``PSI = sum((a - e) * ln(a / e))``.
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift. NaN values are
    dropped; an empty side gives ``None``.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if e.size == 0 or a.size == 0:
        return None
    inner = np.unique(np.quantile(e, np.arange(1, bins) / bins)) if bins > 1 else np.array([])
    n_bins = inner.size + 1
    e_share = np.bincount(np.searchsorted(inner, e, side="left"), minlength=n_bins) / e.size
    a_share = np.bincount(np.searchsorted(inner, a, side="left"), minlength=n_bins) / a.size
    e_share = np.maximum(e_share, PSI_EPSILON)
    a_share = np.maximum(a_share, PSI_EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


__all__ = [
    "PSI_EPSILON",
    "false_positive_rate_at_alpha",
    "population_stability_index",
    "precision_at_k",
]
