"""The token detectors and the vectoriser follow the scikit-learn / PyOD estimator contract.

1. ``check_estimator`` sweep over :class:`RarityDetector` and :class:`OOVDetector` (the registry's
   parameter sets). Every check passes except the ones in :data:`SKIPPED`, each with its reason;
   no check is expected to fail (:data:`EXPECTED_FAILED` is empty).

   The detectors declare the ``positive_only`` and ``sparse`` input tags, so scikit-learn feeds
   them non-negative data (dense and every sparse format) and checks that negative input is
   refused with "Negative values in data". They follow PyOD's labels (``predict`` in {0, 1},
   1 = anomalous; ``decision_function`` higher = more anomalous), which the pipeline and
   ``tests/test_registry.py`` rely on, so they do not declare scikit-learn's ``outlier_detector``
   type: its checks (``check_outliers_train``, ``check_outliers_fit_predict``) require
   ``predict`` in {-1, +1} and ``decision_function < 0`` for outliers and are therefore not part
   of the sweep; the PyOD contract is tested explicitly below instead.
2. The PyOD attributes and the input errors, by hand.
3. :class:`ListVectorizer` inside ``make_pipeline``: fit on a polars DataFrame + labels,
   predict, ``get_params``/``set_params``/``clone``, ``get_feature_names_out``, joblib.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import joblib
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_outlier_detector
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from loglead_lo2.detection.detectors import OOVDetector, RarityDetector
from loglead_lo2.detection.features import ListVectorizer, VectorizerNotFittedError
from loglead_lo2.errors import UserError
from tests.detection_data import make_enhanced_sequences

DETECTORS = [
    RarityDetector(),  # event_rarity_words
    RarityDetector(top_k=1, contamination=0.01, tie_weight=0.01),  # event_surprisal_*
    RarityDetector(top_k=3, contamination=0.0),
    OOVDetector(),  # event_oov_words
    OOVDetector(normalize=True),
]

SKIPPED: dict[str, str] = {
    "check_array_api_input": (
        "scikit-learn skips it itself unless SCIPY_ARRAY_API=1 is set before scipy is imported;"
        " the detectors do not declare array_api_support"
    ),
}
"""Checks that scikit-learn skips (SkipTest), with the reason."""

EXPECTED_FAILED: dict[str, str] = {}
"""Checks expected to fail (xfail), with the reason: none."""


def _expected_failed(estimator: Any) -> dict[str, str]:  # noqa: ANN401
    return EXPECTED_FAILED


# -- 1. the sweep ------------------------------------------------------------------------------
@parametrize_with_checks(DETECTORS, expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:  # noqa: ANN401
    check(estimator)


@pytest.mark.parametrize("estimator", DETECTORS, ids=repr)
def test_every_check_passes_or_is_a_listed_skip(estimator: Any) -> None:  # noqa: ANN401
    started = time.perf_counter()
    results = check_estimator(estimator, on_fail=None, on_skip=None)
    assert time.perf_counter() - started < 10
    assert len(results) > 30  # the sweep really ran
    bad = {r["check_name"]: repr(r["exception"]) for r in results
           if r["status"] == "failed"}
    assert not bad
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= set(SKIPPED), f"unlisted skipped checks: {skipped - set(SKIPPED)}"
    names = {r["check_name"] for r in results}
    for required in ("check_positive_only_tag_during_fit", "check_estimators_nan_inf",
                     "check_n_features_in_after_fitting", "check_estimators_unfitted",
                     "check_estimator_sparse_matrix", "check_dict_unchanged",
                     "check_fit_check_is_fitted", "check_estimators_pickle"):
        assert required in names


# -- 2. PyOD attributes and errors -----------------------------------------------------------
TRAIN = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [2, 0, 0, 0]], dtype=float)
TEST = np.array([[1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype=float)


@pytest.mark.parametrize("det", [RarityDetector(top_k=1, tie_weight=0.01), OOVDetector()],
                         ids=repr)
def test_pyod_attributes(det: Any) -> None:  # noqa: ANN401
    assert det.fit(TRAIN) is det
    assert det.n_features_in_ == 4
    np.testing.assert_array_equal(det.decision_scores_, det.decision_function(TRAIN))
    assert det.labels_.dtype == np.int64 and set(det.labels_) <= {0, 1}
    np.testing.assert_array_equal(det.labels_, det.decision_scores_ >= det.threshold_)
    np.testing.assert_array_equal(det.labels_, det.predict(TRAIN))
    np.testing.assert_array_equal(clone(det).fit_predict(TRAIN), det.labels_)
    pred = det.predict(TEST)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, det.decision_function(TEST) >= det.threshold_)
    np.testing.assert_array_equal(det.score_samples(TEST), -det.decision_function(TEST))
    assert not is_outlier_detector(det)  # PyOD labels, not scikit-learn's -1/+1


def test_rarity_training_labels_follow_contamination() -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((500, 40)) < rng.random(40) * 0.5).astype(float)
    det = RarityDetector(top_k=2, contamination=0.1, tie_weight=0.001).fit(X)
    assert 0.05 <= det.labels_.mean() <= 0.15
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9))
    assert OOVDetector().fit(X).labels_.sum() == 0  # training rows have no unseen token


@pytest.mark.parametrize("det", [RarityDetector(), OOVDetector()], ids=repr)
def test_input_errors(det: Any) -> None:  # noqa: ANN401
    with pytest.raises(NotFittedError):
        det.decision_function(TEST)
    det.fit(TRAIN)
    with pytest.raises(ValueError, match="3 features, but .* expecting 4 features"):
        det.decision_function(TEST[:, :3])
    with pytest.raises(ValueError, match="3 features"):
        det.predict(sp.csr_matrix(TEST[:, :3]))
    nan = TEST.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.decision_function(nan)
    with pytest.raises(ValueError, match="NaN"):
        clone(det).fit(nan)
    with pytest.raises(ValueError, match="Negative values"):
        det.decision_function(-TEST)
    with pytest.raises(ValueError, match="Negative values"):
        clone(det).fit(sp.csr_matrix(-TRAIN))
    with pytest.raises(ValueError, match="0 sample"):
        clone(det).fit(np.zeros((0, 4)))
    assert det.decision_function(np.zeros((0, 4))).shape == (0,)  # empty batches score


@pytest.mark.parametrize("params", [{"top_k": 0}, {"top_k": 1.5}, {"top_k": True},
                                    {"contamination": 1.0}, {"contamination": -0.1},
                                    {"tie_weight": -1.0}, {"tie_weight": np.inf}])
def test_rarity_parameter_errors_at_fit(params: dict[str, Any]) -> None:
    det = RarityDetector(**params)  # no validation in __init__ / set_params
    with pytest.raises(ValueError, match=next(iter(params))):
        det.fit(TRAIN)
    with pytest.raises(ValueError, match="normalize"):
        OOVDetector(normalize="yes").fit(TRAIN)  # type: ignore[arg-type]


def test_every_sparse_format_scores_alike_and_input_is_not_touched() -> None:
    det = RarityDetector(top_k=2, tie_weight=0.1).fit(sp.csc_matrix(TRAIN))
    ref = det.decision_function(TEST)
    for fmt in ("csr", "csc", "coo", "lil", "dok", "bsr"):
        np.testing.assert_array_equal(det.decision_function(sp.csr_matrix(TEST).asformat(fmt)),
                                      ref)
    np.testing.assert_array_equal(det.decision_function(sp.csr_array(TEST)), ref)
    np.testing.assert_array_equal(det.decision_function(TEST.astype(np.int32)), ref)
    unsorted = sp.csr_matrix((np.array([1.0, 1.0, 1.0]), np.array([3, 0, 2]),
                              np.array([0, 2, 3, 3, 3])), shape=(4, 4))
    unsorted.has_sorted_indices = False
    before = unsorted.indices.copy()
    det.decision_function(unsorted)
    np.testing.assert_array_equal(unsorted.indices, before)  # not sorted in place


# -- 3. ListVectorizer in a pipeline ---------------------------------------------------------
@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    df = make_enhanced_sequences(6, seed=21)
    runs = sorted(df.get_column("run").unique().to_list())
    return df.filter(pl.col("run").is_in(runs[:4])), df.filter(pl.col("run").is_in(runs[4:]))


def test_vectorizer_in_make_pipeline(frames: tuple[pl.DataFrame, pl.DataFrame],
                                     tmp_path: Any) -> None:  # noqa: ANN401
    train, hold = frames
    y = train.get_column("anomaly").cast(pl.Int64).to_numpy()
    assert set(y) == {0, 1}
    pipe = make_pipeline(ListVectorizer("e_words", min_df=2, sublinear_tf=True),
                         LogisticRegression(max_iter=2000, class_weight="balanced"))
    assert pipe.fit(train, y) is pipe
    check_is_fitted(pipe)
    pred = pipe.predict(hold)
    assert pred.shape == (hold.height,) and set(pred) <= {0, 1}
    assert (pipe.predict(train) == y).mean() > 0.9
    proba = pipe.predict_proba(hold)[:, 1]
    vec = pipe[0]
    names = pipe[:-1].get_feature_names_out()
    np.testing.assert_array_equal(names, vec.get_feature_names_out())
    assert list(names) == vec.feature_names_ and names.dtype == object
    assert pipe[-1].coef_.shape == (1, len(names))
    # same as by hand
    X = ListVectorizer("e_words", min_df=2, sublinear_tf=True).fit_transform(train)
    assert (X != vec.transform(train)).nnz == 0
    # joblib round trip
    joblib.dump(pipe, tmp_path / "pipe.joblib")
    again = joblib.load(tmp_path / "pipe.joblib")
    np.testing.assert_array_equal(again.predict_proba(hold)[:, 1], proba)
    # clone: same parameters, unfitted, refits to the same model
    twin = clone(pipe)
    assert not hasattr(twin[0], "vocabulary_")
    with pytest.raises(NotFittedError):
        check_is_fitted(twin[0])
    np.testing.assert_allclose(twin.fit(train, y).predict_proba(hold)[:, 1], proba)
    # set_params through the pipeline changes the vectoriser
    pipe.set_params(listvectorizer__binary=True).fit(train, y)
    assert pipe[0].binary and pipe[0].transform(train).max() == 1.0


def test_vectorizer_params_clone_and_y(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, _ = frames
    vec = ListVectorizer("e_words", ["seq_len"], min_df=2, oov_feature=True, idf=True)
    params = vec.get_params()
    assert params["item"] == "e_words" and params["numeric"] == ["seq_len"]
    assert params["min_df"] == 2 and params["idf"] is True and params["norm"] is None
    twin = clone(vec)
    assert twin.get_params() == params and twin is not vec
    assert vec.set_params(norm="l2", max_features=50) is vec and vec.norm == "l2"
    assert "vocabulary_" not in vars(ListVectorizer("e_words"))  # fitted state only in fit
    y = train.get_column("anomaly").to_numpy()
    a = vec.fit(train, y).transform(train)
    b = clone(vec).fit(train).transform(train)
    assert (a != b).nnz == 0  # y is ignored
    assert (clone(vec).fit_transform(train, y) != a).nnz == 0
    assert "ListVectorizer(" in repr(vec) and "e_words" in repr(vec)


def test_vectorizer_errors_and_old_pickles(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, _ = frames
    vec = ListVectorizer("e_words")
    for call in (lambda: vec.transform(train), vec.get_feature_names_out):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert issubclass(VectorizerNotFittedError, RuntimeError)  # the error raised before
    with pytest.raises(TypeError, match="polars DataFrame"):
        vec.fit(train.to_numpy())
    with pytest.raises(UserError, match="sequence of column names"):
        ListVectorizer("e_words", "seq_len").fit(train)  # type: ignore[arg-type]
    vec.fit(train)
    with pytest.raises(TypeError, match="polars DataFrame"):
        vec.transform(train.to_pandas())
    # a vectoriser pickled before the idf option existed still loads and clones
    old = ListVectorizer("e_words").fit(train)
    del old.__dict__["idf"], old.__dict__["idf_"]
    again = pickle.loads(pickle.dumps(old))
    assert again.idf is False and clone(again).get_params()["idf"] is False
    assert (again.transform(train) != vec.transform(train)).nnz == 0
