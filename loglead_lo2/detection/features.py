"""Sparse features from polars token-list columns (no Python loops over tokens).

:class:`ListVectorizer` is a picklable, scikit-learn-like bag-of-tokens vectoriser for a
``List[str]`` column (``e_words``, ``e_trigrams``, ``e_event_drain_id``) plus optional numeric
columns. Tokens are counted without Python loops: the list column is exploded with polars and
the counts become a ``scipy.sparse.csr_matrix`` built directly from the list row offsets
and column codes (tokens mapped to columns by a polars ``Enum`` cast over the vocabulary;
scipy sums duplicate entries). Rows are processed in batches bounded by their token count,
so memory stays proportional to the batch, not the data set.

Column layout: vocabulary terms (sorted), then ``__oov__`` when ``oov_feature`` is set (per-row
count of tokens outside the vocabulary), then the numeric columns (standardised with the
training mean and standard deviation when ``scale_numeric``; nulls become the training mean).

It is a scikit-learn transformer (``get_params``/``set_params``/``clone``, ``fit(X, y=None)``,
``get_feature_names_out``), so ``make_pipeline(ListVectorizer("e_words"), LogisticRegression())``
fits on a polars DataFrame and labels. Its output is always sparse, so it does not take part in
``set_output`` (like scikit-learn's ``CountVectorizer``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from loglead_lo2.errors import UserError
from loglead_lo2.schema import BAG_COUNTS_SUFFIX as COUNTS_SUFFIX

log = logging.getLogger(__name__)


OOV_FEATURE = "__oov__"
"""Name of the optional out-of-vocabulary count column."""

_TOK = "__tok__"


def _require_frame(df: Any) -> None:  # noqa: ANN401
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"ListVectorizer takes a polars DataFrame, got {type(df).__name__}.")


class VectorizerNotFittedError(NotFittedError, RuntimeError):
    """``transform`` before ``fit``: scikit-learn's ``NotFittedError`` (a ``ValueError`` and
    ``AttributeError``), and a ``RuntimeError`` as the vectoriser raised before."""


class ListVectorizer(TransformerMixin, BaseEstimator,  # type: ignore[call-arg]
                     auto_wrap_output_keys=None):
    """Bag of tokens over a polars ``List[str]`` column, plus numeric columns.

    Parameters mirror :class:`sklearn.feature_extraction.text.CountVectorizer`: ``min_df``
    (minimum number of training rows a token must occur in), ``max_df`` (maximum share of
    training rows), ``max_features`` (keep the most frequent tokens; ties by token order),
    ``binary`` (presence instead of counts). ``sublinear_tf`` uses ``log1p(count)``;
    ``norm="l2"`` scales each row's token part to unit length. ``oov_feature`` appends the
    count of tokens not in the vocabulary (on the training rows too: tokens below ``min_df``
    land there, so the column varies in training when ``min_df > 1``). ``idf=True`` multiplies
    each token column (``__oov__`` included) by its smoothed inverse document frequency over
    the training rows, ``log((1 + n) / (1 + df)) + 1`` (scikit-learn's ``smooth_idf``), after
    ``binary``/``sublinear_tf`` and before ``norm``: with ``binary`` and ``norm="l2"`` a row's
    rare tokens take most of its length, a compact rarity-weighted representation for the
    Isolation Forest. ``batch_tokens`` bounds the exploded tokens held in memory at once.

    Fitted attributes (set by :meth:`fit` only): ``vocabulary_``, ``feature_names_``,
    ``idf_``, ``n_train_rows_``, ``bag_`` and, with numeric columns, ``numeric_mean_`` and
    ``numeric_scale_``. ``last_oov_count_`` is a diagnostic that every :meth:`transform`
    rewrites (tokens outside the vocabulary in the last transformed frame).
    """

    def __init__(
        self,
        item: str | None,
        numeric: Sequence[str] = (),
        *,
        min_df: int = 1,
        max_df: float = 1.0,
        max_features: int | None = None,
        binary: bool = False,
        scale_numeric: bool = True,
        sublinear_tf: bool = False,
        norm: str | None = None,
        oov_feature: bool = False,
        batch_tokens: int = 2_000_000,
        idf: bool = False,
    ) -> None:
        self.item = item
        self.numeric = numeric  # stored as given (scikit-learn's clone contract)
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.binary = binary
        self.scale_numeric = scale_numeric
        self.sublinear_tf = sublinear_tf
        self.norm = norm
        self.oov_feature = oov_feature
        self.batch_tokens = batch_tokens
        self.idf = idf

    # -- scikit-learn API --------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        # vectorisers pickled before ``idf`` existed (get_params reads every parameter)
        super().__setstate__({"idf": False, **state})

    def __sklearn_is_fitted__(self) -> bool:
        return bool(getattr(self, "feature_names_", None))

    def __sklearn_tags__(self) -> Any:  # noqa: ANN401 - sklearn.utils.Tags
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # a polars DataFrame, not an array
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []  # always float64 CSR
        return tags

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:  # noqa: ANN401
        """Output column names (:attr:`feature_names_`); ``input_features`` is ignored (the
        names come from the vocabulary, not from the input columns)."""
        self._check_fitted()
        return np.asarray(self.feature_names_, dtype=object)

    @property
    def n_features_(self) -> int:
        return len(getattr(self, "feature_names_", ()))

    # -- checks ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.numeric, str):
            raise UserError(
                f"vectoriser numeric must be a sequence of column names, got the string "
                f"{self.numeric!r} (use [{self.numeric!r}])."
            )
        if self.item is None and not self.numeric:
            raise UserError("ListVectorizer needs an item column or numeric columns.")
        if not (isinstance(self.min_df, int) and self.min_df >= 1):
            raise UserError(f"vectoriser min_df must be an integer >= 1, got {self.min_df!r}")
        if not 0 < float(self.max_df) <= 1:
            raise UserError(f"vectoriser max_df must be in (0, 1], got {self.max_df!r}")
        if self.max_features is not None and self.max_features < 1:
            raise UserError(f"vectoriser max_features must be >= 1, got {self.max_features!r}")
        if self.norm not in (None, "l2"):
            raise UserError(f"vectoriser norm must be None or 'l2', got {self.norm!r}")

    def _check_columns(self, df: pl.DataFrame) -> None:
        _require_frame(df)
        needed = ([self.item] if self.item else []) + list(self.numeric)
        if getattr(self, "bag_", False):
            needed.append(f"{self.item}{COUNTS_SUFFIX}")
        missing = [c for c in needed if c not in df.columns]
        if missing:
            from loglead_lo2.enhancers.metric_features import missing_hint

            hint = missing_hint(missing)
            raise UserError(
                f"feature column(s) {', '.join(missing)} not in the data "
                f"(available: {', '.join(df.columns)}).{hint}"
            )
        if self.item and not isinstance(df.schema[self.item], pl.List):
            raise UserError(
                f"feature column {self.item} is {df.schema[self.item]}, expected a token list "
                "(List[str]) such as e_words, e_trigrams or e_event_drain_id."
            )
        for c in self.numeric:
            if not df.schema[c].is_numeric():
                raise UserError(f"numeric feature column {c} is {df.schema[c]}, not numeric.")

    def _batches(self, df: pl.DataFrame) -> list[tuple[int, int]]:
        """``(offset, length)`` row batches holding at most ``batch_tokens`` tokens each."""
        if df.height == 0:
            return []
        assert self.item is not None
        lens = df.select(pl.col(self.item).list.len().fill_null(0)).to_series().to_numpy()
        cum = np.cumsum(lens)
        out, start = [], 0
        while start < df.height:
            base = cum[start - 1] if start else 0
            end = int(np.searchsorted(cum, base + self.batch_tokens, side="right"))
            end = max(end, start + 1)
            out.append((start, end - start))
            start = end
        return out

    def _batch_codes(
        self, df: pl.DataFrame, off: int, length: int, enum: pl.Enum, n_known: int
    ) -> sp.csr_matrix:
        """Count matrix of one row batch over ``enum``'s categories plus a last column for
        tokens outside them (no Python loop over tokens)."""
        assert self.item is not None
        lists = df.get_column(self.item).slice(off, length)
        lens = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
        flat = lists.list.explode(keep_nulls=False, empty_as_null=False)
        weights = np.ones(flat.len(), dtype=np.float64)
        counts = f"{self.item}{COUNTS_SUFFIX}"
        if getattr(self, "bag_", False):  # token bags: distinct tokens + multiplicities
            weights = (
                df.get_column(counts).slice(off, length)
                .list.explode(keep_nulls=False, empty_as_null=False)
                .cast(pl.Float64).to_numpy().copy()
            )
            if weights.size != flat.len():
                raise UserError(f"{self.item} and {counts} have different list lengths.")
        codes = (
            flat.cast(enum, strict=False).to_physical().cast(pl.Int64)
            .fill_null(n_known).to_numpy()
        )
        if codes.size != lens.sum():  # pragma: no cover - polars explode contract
            raise RuntimeError("token list explode lost values")
        indptr = np.concatenate(([0], np.cumsum(lens)))
        block = sp.csr_matrix(
            (weights, codes, indptr), shape=(length, n_known + 1)
        )
        block.sum_duplicates()
        return block

    # -- fit / transform -------------------------------------------------------------------
    def fit(self, df: pl.DataFrame, y: Any = None) -> ListVectorizer:  # noqa: ANN401
        """Learn the vocabulary and numeric scaling from ``df``'s rows (``y`` is ignored)."""
        self._check_params()
        _require_frame(df)
        self.bag_ = bool(self.item) and f"{self.item}{COUNTS_SUFFIX}" in df.columns
        self._check_columns(df)
        self.n_train_rows_ = df.height
        self.last_oov_count_ = 0
        vocab: list[str] = []
        if self.item:
            parts = []
            for off, length in self._batches(df):
                local = (
                    df.get_column(self.item).slice(off, length).list.explode()
                    .drop_nulls().unique()
                )
                block = self._batch_codes(df, off, length, pl.Enum(local), local.len())
                cols = block.indices
                parts.append(pl.DataFrame({
                    _TOK: local,
                    "df": np.bincount(cols, minlength=local.len() + 1)[:-1],
                    "tf": np.bincount(cols, weights=block.data, minlength=local.len() + 1)[:-1],
                }))
            if parts:
                stats = (
                    pl.concat(parts)
                    .group_by(_TOK)
                    .agg(pl.col("df").sum(), pl.col("tf").sum())
                    .filter(
                        (pl.col("df") >= self.min_df)
                        & (pl.col("df") <= math.floor(float(self.max_df) * df.height))
                    )
                )
                if self.max_features is not None:
                    stats = stats.sort(["tf", _TOK], descending=[True, False]).head(
                        self.max_features
                    )
                vocab = stats.get_column(_TOK).sort().to_list()
            if not vocab and not self.numeric and not self.oov_feature:
                raise UserError(
                    f"no token of {self.item} survives min_df={self.min_df}/max_df="
                    f"{self.max_df} in {df.height} training rows; nothing to learn from."
                )
        self.vocabulary_ = {tok: i for i, tok in enumerate(vocab)}
        names = list(vocab) + ([OOV_FEATURE] if self.item and self.oov_feature else [])
        self.feature_names_ = names + list(self.numeric)
        self.idf_ = None
        if self.item and getattr(self, "idf", False):
            present = self._token_matrix(df)  # before idf_ is set: unweighted
            doc_freq = np.bincount(present.indices, minlength=present.shape[1])
            self.idf_ = np.log((1.0 + df.height) / (1.0 + doc_freq)) + 1.0
        if self.numeric:
            num = df.select([pl.col(c).cast(pl.Float64) for c in self.numeric])
            mean = num.mean().row(0)
            std = num.std(ddof=0).row(0)
            self.numeric_mean_ = np.array([0.0 if m is None else m for m in mean])
            scale = np.array([1.0 if (s is None or s == 0) else s for s in std])
            self.numeric_scale_ = scale
        return self

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise VectorizerNotFittedError("ListVectorizer is not fitted; call fit() first")

    def _token_matrix(self, df: pl.DataFrame) -> sp.csr_matrix:
        """Token counts: explode, map tokens to column codes by an Enum cast over the
        vocabulary (unknown -> the extra last column), then a CSR matrix straight from the
        row offsets (duplicates summed by scipy)."""
        n_vocab = len(self.vocabulary_)
        enum = pl.Enum(list(self.vocabulary_))  # vocabulary_ is in column order
        blocks = [
            self._batch_codes(df, off, length, enum, n_vocab)
            for off, length in self._batches(df)
        ]
        mat = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_vocab + 1))
        self.last_oov_count_ = int(mat[:, n_vocab].sum())
        if not self.oov_feature:
            mat = mat[:, :n_vocab]
        mat = sp.csr_matrix(mat, dtype=np.float64)
        mat.eliminate_zeros()
        if self.binary:
            mat.data[:] = 1.0
        elif self.sublinear_tf:
            mat.data = np.log1p(mat.data)
        mat.sort_indices()
        idf = getattr(self, "idf_", None)  # vectorisers pickled before idf existed: None
        if idf is not None:
            mat.data = mat.data * idf[mat.indices]
        if self.norm == "l2" and mat.nnz:
            norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            mat = sp.csr_matrix(sp.diags(1.0 / norms) @ mat)
        return mat

    def transform(self, df: pl.DataFrame) -> sp.csr_matrix:
        """Sparse float64 matrix, one row per ``df`` row, columns as :attr:`feature_names_`.

        Tokens outside the vocabulary are ignored (their number is kept in
        :attr:`last_oov_count_` and, with ``oov_feature``, in the ``__oov__`` column).
        """
        self._check_fitted()
        self._check_columns(df)
        blocks = []
        if self.item:
            blocks.append(self._token_matrix(df))
        else:
            self.last_oov_count_ = 0
        if self.numeric:
            num = (
                df.select([pl.col(c).cast(pl.Float64) for c in self.numeric])
                .to_numpy()
                .astype(np.float64)
            )
            nan = np.isnan(num)
            if nan.any():
                num[nan] = np.broadcast_to(self.numeric_mean_, num.shape)[nan]
            if self.scale_numeric:
                num = (num - self.numeric_mean_) / self.numeric_scale_
            blocks.append(sp.csr_matrix(num))
        out = blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csr")
        return sp.csr_matrix(out, dtype=np.float64)

    def fit_transform(self, df: pl.DataFrame, y: Any = None) -> sp.csr_matrix:  # noqa: ANN401
        """``fit(df).transform(df)`` (``y`` is ignored)."""
        return self.fit(df, y).transform(df)


__all__ = ["OOV_FEATURE", "ListVectorizer", "VectorizerNotFittedError"]
