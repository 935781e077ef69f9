"""Token-statistics detectors (LogLead's Rarity and OOV models) following the PyOD contract.

Both work on a non-negative token matrix (rows = sequences, columns = tokens, e.g. the output
of :class:`~loglead_lo2.detection.features.ListVectorizer`); an entry ``> 0`` means the token
is present. They train on normal rows only and follow PyOD's detector contract (scikit-learn
estimators otherwise: ``get_params``/``set_params``/``clone``, validated input):

- :meth:`fit` ``(X, y=None)`` returns ``self``; ``y`` is ignored. It sets ``threshold_``,
  ``decision_scores_`` (the training rows' scores), ``labels_`` (their 0/1 labels at
  ``threshold_``) and ``n_features_in_``;
- :meth:`decision_function`: **higher = more anomalous** (the project's, and PyOD's, rule);
- :meth:`predict`: PyOD labels in ``{0, 1}`` (1 = anomalous), ``decision_function >=
  threshold_`` (the pipeline's ``threshold_scores`` rule; PyOD itself uses ``>``);
  :meth:`fit_predict` returns ``labels_``;
- :meth:`score_samples`: ``-decision_function`` (scikit-learn's orientation, lower = more
  abnormal, as for ``IsolationForest`` and ``LocalOutlierFactor``).

They are deliberately **not** scikit-learn ``OutlierMixin`` estimators: that contract means
``predict`` in ``{-1, +1}`` (+1 = inlier) and ``decision_function < 0`` = outlier, the opposite
of the 0/1 labels and the score orientation the pipeline and PyOD use, so declaring the
``outlier_detector`` type would make scikit-learn tooling misread their outputs.

Input is checked with :func:`sklearn.utils.validation.validate_data`: dense or sparse
(CSR/CSC/COO; other formats are converted), finite, non-negative (token counts or weights; a
negative entry has no meaning), and at scoring time with the training number of columns.
Fitted state is set in :meth:`fit` only; scoring never writes to the estimator or its input.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

_SPARSE_FORMATS = ("csr", "csc", "coo")


class _TokenDetector(BaseEstimator):
    """Validation, labels and the PyOD-style API shared by the token detectors."""

    _fitted_attr = "threshold_"

    def __sklearn_tags__(self) -> Any:  # noqa: ANN401 - sklearn.utils.Tags
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.target_tags.required = False
        return tags

    def _validate(self, X: Any, *, reset: bool) -> sp.csr_matrix:  # noqa: ANN401
        """Checked float64 CSR view of ``X`` (no copy of CSR float64 input; never mutated).

        ``reset=True`` (fit) records ``n_features_in_`` and needs at least one row;
        ``reset=False`` (scoring) checks the number of columns and accepts zero rows.
        """
        X = validate_data(
            self, X, reset=reset, accept_sparse=_SPARSE_FORMATS, dtype=np.float64,
            ensure_all_finite=True, ensure_min_samples=1 if reset else 0,
        )
        if X.shape[0]:  # scikit-learn's own test fails on an empty dense array
            check_non_negative(X, type(self).__name__)
        mat = sp.csr_matrix(X)  # shares the arrays of CSR input
        if not mat.has_sorted_indices:
            mat = mat.sorted_indices()  # a copy: the caller's matrix is left as it is
        return mat

    def _set_training_scores(self, scores: np.ndarray, threshold: float) -> None:
        self.threshold_ = float(threshold)
        self.decision_scores_ = scores
        self.labels_ = (scores >= self.threshold_).astype(np.int64)

    def _scores(self, mat: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: ANN401
        """Anomaly score per row, higher = more anomalous."""
        check_is_fitted(self, self._fitted_attr)
        return self._scores(self._validate(X, reset=False))

    def score_samples(self, X: Any) -> np.ndarray:  # noqa: ANN401
        """scikit-learn orientation: ``-decision_function`` (lower = more abnormal)."""
        return -self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:  # noqa: ANN401
        """PyOD labels: 1 = anomalous (``decision_function >= threshold_``), 0 = normal."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:  # noqa: ANN401
        """``fit(X)`` and the training labels (``labels_``, equal to ``predict(X)``)."""
        return self.fit(X, y).labels_.copy()  # type: ignore[attr-defined]


def _real(value: Any) -> bool:  # noqa: ANN401
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class RarityDetector(_TokenDetector):
    """Scores a row by how rare its tokens were among the training rows.

    A token's rarity is ``-log((df + 1) / (n + 2))`` where ``df`` is the number of training
    rows containing it (tokens never seen get the maximum, ``log(n + 2)``). A row's score is
    the mean rarity of its ``top_k`` rarest present tokens (all of them when it has fewer; 0 for
    a row without tokens), so a few error tokens among thousands of ordinary ones still stand
    out. ``tie_weight > 0`` adds ``tie_weight`` times the summed rarity of *all* present tokens:
    a small continuous term that orders rows sharing the same top-``k`` mean (with ``top_k=1``
    the score is "maximum surprisal + a little of the total surprisal", so a row with two
    unseen tokens outranks one with a single unseen token). ``threshold_`` is the
    ``1 - contamination`` quantile of the training scores (``decision_scores_``).

    Fitted attributes: ``rarity_`` (per column), ``n_train_rows_``, ``n_features_in_``,
    ``threshold_``, ``decision_scores_``, ``labels_``.
    """

    _fitted_attr = "rarity_"

    def __init__(
        self, top_k: int = 5, contamination: float = 0.01, tie_weight: float = 0.0
    ) -> None:
        self.top_k = top_k
        self.contamination = contamination
        self.tie_weight = tie_weight

    def _check_params(self) -> None:
        top_k = self.top_k
        if not (isinstance(top_k, numbers.Integral) and not isinstance(top_k, bool)) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        if not (_real(self.contamination) and 0 <= self.contamination < 1):
            raise ValueError(f"contamination must be in [0, 1), got {self.contamination!r}")
        if not (_real(self.tie_weight) and 0 <= self.tie_weight < np.inf):
            raise ValueError(f"tie_weight must be a finite number >= 0, got {self.tie_weight!r}")

    def fit(self, X: Any, y: Any = None) -> RarityDetector:  # noqa: ANN401
        """Learn each column's rarity from the rows of ``X`` (``y`` is ignored)."""
        self._check_params()
        mat = self._validate(X, reset=True)
        n = mat.shape[0]
        present = (mat > 0).astype(np.int64)
        doc_freq = np.asarray(present.sum(axis=0)).ravel()
        self.n_train_rows_ = n
        self.rarity_ = -np.log((doc_freq + 1.0) / (n + 2.0))
        train = self._scores(mat)
        self._set_training_scores(train, np.quantile(train, 1 - self.contamination))
        return self

    def _scores(self, mat: sp.csr_matrix) -> np.ndarray:
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


class OOVDetector(_TokenDetector):
    """Counts tokens (columns) never present in the training rows.

    The score of a row is the sum of its entries in columns that were all-zero during
    training: with a count matrix, the number of out-of-vocabulary token occurrences; with the
    vectoriser's ``__oov__`` column (zero on its own training rows) tokens unknown to the
    vectoriser count too. ``normalize=True`` divides by the row's total, giving the OOV
    share. ``threshold_`` is the smallest positive score: any unseen token flags the row (the
    training rows score 0 by construction, so ``labels_`` is all 0).

    Fitted attributes: ``unseen_mask_``, ``vocabulary_size_``, ``n_train_rows_``,
    ``n_features_in_``, ``threshold_``, ``decision_scores_``, ``labels_``.
    """

    _fitted_attr = "unseen_mask_"

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def fit(self, X: Any, y: Any = None) -> OOVDetector:  # noqa: ANN401
        """Record which columns occur in the rows of ``X`` (``y`` is ignored)."""
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}")
        mat = self._validate(X, reset=True)
        self.n_train_rows_ = mat.shape[0]
        seen = np.asarray((mat > 0).sum(axis=0)).ravel() > 0
        self.unseen_mask_ = ~seen
        self.vocabulary_size_ = int(seen.sum())
        self._set_training_scores(self._scores(mat), 1e-12)
        return self

    def _scores(self, mat: sp.csr_matrix) -> np.ndarray:
        pos = mat.multiply(mat > 0).tocsr()
        oov = np.asarray(pos @ self.unseen_mask_.astype(np.float64)).ravel()
        if not self.normalize:
            return oov
        total = np.asarray(pos.sum(axis=1)).ravel()
        return np.divide(oov, total, out=np.zeros_like(oov), where=total > 0)


__all__ = ["OOVDetector", "RarityDetector"]
