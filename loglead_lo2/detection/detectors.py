"""Token-statistics detectors (LogLead's Rarity and OOV models) as scikit-learn estimators.

Both work on a non-negative token matrix (rows = sequences, columns = tokens, e.g. the output
of :class:`~loglead_lo2.detection.features.ListVectorizer`); an entry ``> 0`` means the token
is present. They train on normal rows only and follow one score convention:

- :meth:`decision_function`: **higher = more anomalous** (the project's, and PyOD's, rule);
- :meth:`score_samples`: its negation (scikit-learn's outlier convention, lower = more
  abnormal, as for ``IsolationForest`` and ``LocalOutlierFactor``);
- :meth:`predict`: labels in ``{0, 1}`` (1 = anomalous) by ``decision_function >= threshold_``.

Fitted state is set in :meth:`fit` only; scoring never writes to the estimator.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted


def _as_csr(X) -> sp.csr_matrix:  # noqa: ANN001 - array-like or sparse
    mat = sp.csr_matrix(X, dtype=np.float64)
    mat.sort_indices()
    return mat


def _check_width(est: BaseEstimator, X: sp.csr_matrix) -> None:
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(est).__name__} was fitted with "
            f"{est.n_features_in_}"
        )


class RarityDetector(OutlierMixin, BaseEstimator):
    """Scores a row by how rare its tokens were among the training rows.

    A token's rarity is ``-log((df + 1) / (n + 2))`` where ``df`` is the number of training
    rows containing it (tokens never seen get the maximum, ``log(n + 2)``). A row's score is
    the mean rarity of its ``top_k`` rarest present tokens (all of them when it has fewer; 0 for
    a row without tokens), so a few error tokens among thousands of ordinary ones still stand
    out. ``tie_weight > 0`` adds ``tie_weight`` times the summed rarity of *all* present tokens:
    a small continuous term that orders rows sharing the same top-``k`` mean (with ``top_k=1``
    the score is "maximum surprisal + a little of the total surprisal", so a row with two
    unseen tokens outranks one with a single unseen token). ``threshold_`` is the
    ``1 - contamination`` quantile of the training scores.
    """

    def __init__(
        self, top_k: int = 5, contamination: float = 0.01, tie_weight: float = 0.0
    ) -> None:
        self.top_k = top_k
        self.contamination = contamination
        self.tie_weight = tie_weight

    def fit(self, X, y=None) -> RarityDetector:  # noqa: ANN001
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 <= self.contamination < 1:
            raise ValueError(f"contamination must be in [0, 1), got {self.contamination}")
        if not self.tie_weight >= 0:
            raise ValueError(f"tie_weight must be >= 0, got {self.tie_weight}")
        mat = _as_csr(X)
        n = mat.shape[0]
        present = (mat > 0).astype(np.int64)
        doc_freq = np.asarray(present.sum(axis=0)).ravel()
        self.n_features_in_ = mat.shape[1]
        self.n_train_rows_ = n
        self.rarity_ = -np.log((doc_freq + 1.0) / (n + 2.0))
        train = self.decision_function(mat)
        self.threshold_ = float(np.quantile(train, 1 - self.contamination)) if n else 0.0
        return self

    def decision_function(self, X) -> np.ndarray:  # noqa: ANN001
        """Anomaly score per row, higher = more anomalous."""
        check_is_fitted(self, "rarity_")
        mat = _as_csr(X)
        _check_width(self, mat)
        mat = mat.multiply(mat > 0).tocsr()
        mat.eliminate_zeros()
        n_rows = mat.shape[0]
        counts = np.diff(mat.indptr)
        row = np.repeat(np.arange(n_rows), counts)
        val = self.rarity_[mat.indices]
        order = np.lexsort((-val, row))  # by row, rarest first
        rank = np.arange(order.size) - np.repeat(mat.indptr[:-1], counts)
        keep = rank < self.top_k
        top = order[keep]
        total = np.bincount(row[top], weights=val[top], minlength=n_rows)
        used = np.minimum(counts, self.top_k)
        score = np.divide(total, used, out=np.zeros(n_rows), where=used > 0)
        if self.tie_weight:
            score += self.tie_weight * np.bincount(row, weights=val, minlength=n_rows)
        return score

    def score_samples(self, X) -> np.ndarray:  # noqa: ANN001
        """scikit-learn convention: ``-decision_function`` (lower = more abnormal)."""
        return -self.decision_function(X)

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """1 = anomalous (``decision_function >= threshold_``), 0 = normal."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int64)


class OOVDetector(OutlierMixin, BaseEstimator):
    """Counts tokens (columns) never present in the training rows.

    The score of a row is the sum of its entries in columns that were all-zero during
    training: with a count matrix, the number of out-of-vocabulary token occurrences; with the
    vectoriser's ``__oov__`` column (zero on its own training rows) tokens unknown to the
    vectoriser count too. ``normalize=True`` divides by the row's total, giving the OOV
    share. ``threshold_`` is the smallest positive score: any unseen token flags the row.
    """

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def fit(self, X, y=None) -> OOVDetector:  # noqa: ANN001
        mat = _as_csr(X)
        self.n_features_in_ = mat.shape[1]
        self.n_train_rows_ = mat.shape[0]
        seen = np.asarray((mat > 0).sum(axis=0)).ravel() > 0
        self.unseen_mask_ = ~seen
        self.vocabulary_size_ = int(seen.sum())
        self.threshold_ = 1e-12
        return self

    def decision_function(self, X) -> np.ndarray:  # noqa: ANN001
        """Anomaly score per row (OOV count or share), higher = more anomalous."""
        check_is_fitted(self, "unseen_mask_")
        mat = _as_csr(X)
        _check_width(self, mat)
        pos = mat.multiply(mat > 0).tocsr()
        oov = np.asarray(pos @ self.unseen_mask_.astype(np.float64)).ravel()
        if not self.normalize:
            return oov
        total = np.asarray(pos.sum(axis=1)).ravel()
        return np.divide(oov, total, out=np.zeros_like(oov), where=total > 0)

    def score_samples(self, X) -> np.ndarray:  # noqa: ANN001
        """scikit-learn convention: ``-decision_function`` (lower = more abnormal)."""
        return -self.decision_function(X)

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """1 = at least one unseen token, 0 = none."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int64)


__all__ = ["OOVDetector", "RarityDetector"]
