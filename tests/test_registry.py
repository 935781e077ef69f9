"""The model registry, the vectoriser and the Rarity/OOV detectors.

Every registry key is fitted on the training runs of seeded synthetic data with obvious
anomalies and scored on held-out runs: score shape, higher-is-anomalous direction (ROC-AUC
> 0.8) and identical scores after a joblib round trip of the ``(model, vectoriser)`` tuple.
"""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from loglead_lo2.detection.detectors import OOVDetector, RarityDetector
from loglead_lo2.detection.evaluate import fit_model, score_model
from loglead_lo2.detection.features import OOV_FEATURE, ListVectorizer
from loglead_lo2.detection.registry import (
    DEFAULT_MODELS,
    REGISTRY,
    SCORE_ADAPTERS,
    available_numeric,
    format_model_list,
    make_isolation_forest,
    resolve_models,
)
from loglead_lo2.detection.split import run_grouped_split
from loglead_lo2.errors import UserError
from tests.detection_data import make_enhanced_sequences

KEYS = (
    "isolation_forest", "event_lr_words", "event_dt_trigrams", "event_lsvm_words", "event_rf_words",
    "event_xgb_words", "event_lof_words", "event_kmeans_words", "event_oneclass_svm_words",
    "event_rarity_words", "event_oov_words", "event_surprisal_words",
    "event_surprisal_templates", "event_lr_templates", "event_dt_words",
    "metrics_lr", "metrics_dt", "metrics_iforest", "event_lr_words_metrics",
    "event_dt_words_metrics", "isolation_forest_metrics",
    "sequence_lr_numeric", "sequence_lr_words", "sequence_shap_lr_words",
)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    df = make_enhanced_sequences(10, seed=11, metrics=True)
    return run_grouped_split(df, fraction=0.3).frames(df)


# -- registry contents -------------------------------------------------------------------
def test_registry_has_every_key_with_consistent_specs() -> None:
    assert tuple(REGISTRY) == KEYS
    assert set(DEFAULT_MODELS) <= set(REGISTRY)
    for key, spec in REGISTRY.items():
        assert spec.key == key
        assert spec.kind in ("supervised", "unsupervised")
        assert spec.train_on == ("all" if spec.supervised else "normal")
        assert spec.shap in ("linear", "tree", "kernel", "none")
        assert spec.score in SCORE_ADAPTERS
        assert spec.description and spec.features
        est = spec.make_estimator()
        assert clone(est).get_params() == est.get_params()  # an unfitted sklearn estimator
        assert not hasattr(est, "classes_") and not hasattr(est, "n_features_in_")


def test_make_estimator_and_vectorizer_apply_overrides() -> None:
    spec = REGISTRY["event_rf_words"]
    assert spec.make_estimator(n_estimators=3).n_estimators == 3
    assert spec.make_estimator().n_estimators == spec.params["n_estimators"]
    vec = spec.make_vectorizer(max_features=10)
    assert (vec.item, vec.max_features, vec.min_df) == ("e_words", 10, 2)


def test_resolve_models() -> None:
    assert resolve_models(" event_lr_words, event_lr_words ,sequence_lr_numeric") == [
        "event_lr_words", "sequence_lr_numeric"]
    assert resolve_models("all") == list(KEYS)
    with pytest.raises(UserError, match="nope_model") as info:
        resolve_models("event_lr_words,nope_model")
    assert "event_oov_words" in str(info.value)  # names the valid keys
    with pytest.raises(UserError, match="empty"):
        resolve_models(" , ")


def test_available_numeric_adds_len_columns_for_sequence_lr_numeric() -> None:
    cols = ["seq_len", "duration_sec", "e_words", "e_words_len", "e_trigrams_len", "line_len"]
    assert available_numeric(REGISTRY["sequence_lr_numeric"], cols) == (
        "seq_len", "duration_sec", "e_trigrams_len", "e_words_len")
    assert available_numeric(REGISTRY["sequence_lr_numeric"], ["seq_len", "duration_sec"]) == (
        "seq_len", "duration_sec")
    assert available_numeric(REGISTRY["event_lr_words"], cols) == ()


def test_available_numeric_adds_metric_features_for_metric_models() -> None:
    cols = ["seq_len", "e_words", "mx_cpu_n", "mx_cpu_increase", "mx_cpu_rate",
            "mx_host_load1_max", "mx_host_load1_mean"]
    expect = ("mx_cpu_rate", "mx_host_load1_max", "mx_host_load1_mean")  # no _n, no _increase
    for key in ("metrics_lr", "event_lr_words_metrics", "isolation_forest_metrics"):
        assert available_numeric(REGISTRY[key], cols) == expect
    assert available_numeric(REGISTRY["event_lr_words"], cols) == ()
    with pytest.raises(UserError, match="--load-metrics"):
        available_numeric(REGISTRY["metrics_dt"], ["seq_len", "e_words"])


def test_model_list_text_names_every_key_type_and_features() -> None:
    text = format_model_list()
    for key, spec in REGISTRY.items():
        assert key in text and spec.description in text
    assert "unsupervised" in text and "e_trigrams bag" in text
    assert "LogLead" in text  # event-level naming is explained


# -- every registry key: fit, shape, direction, persistence -----------------------------------
@pytest.mark.parametrize("key", KEYS)
def test_every_model_fits_scores_in_direction_and_round_trips(
    key: str, data: tuple[pl.DataFrame, pl.DataFrame], tmp_path
) -> None:
    train, hold = data
    spec = REGISTRY[key]
    fitted = fit_model(spec, train, seed=42)
    scores = score_model(fitted, hold, batch_size=5)
    assert scores.shape == (hold.height,)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    y = hold.get_column("anomaly").to_numpy()
    auc = roc_auc_score(y, scores)
    # The forests are the weak baselines on this small synthetic set (0.76-0.80): their floor
    # checks the direction (a reversed score gives < 0.5), the others' a clear separation.
    floor = 0.7 if spec.factory is make_isolation_forest else 0.8
    assert auc > floor, f"{key}: hold-out ROC-AUC {auc:.3f}; scores must be higher = anomalous"
    path = tmp_path / f"{key}.joblib"
    joblib.dump((fitted.estimator, fitted.vectorizer), path)
    model, vectorizer = joblib.load(path)
    again = spec.scores(model, vectorizer.transform(hold))
    np.testing.assert_array_equal(again, scores)


@pytest.mark.parametrize("key", ["event_rarity_words", "event_oov_words",
                                 "event_surprisal_words"])
def test_token_detectors_write_nothing_while_scoring(
    key: str, data: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, hold = data
    fitted = fit_model(REGISTRY[key], train)
    before = pickle.dumps(fitted.estimator)
    score_model(fitted, hold)
    fitted.estimator.predict(fitted.vectorizer.transform(hold))
    assert pickle.dumps(fitted.estimator) == before


def test_fitting_is_deterministic(data: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, hold = data
    for key in ("event_rf_words", "event_kmeans_words"):
        a = score_model(fit_model(REGISTRY[key], train, seed=1), hold)
        b = score_model(fit_model(REGISTRY[key], train, seed=1), hold)
        np.testing.assert_array_equal(a, b)


# -- ListVectorizer ------------------------------------------------------------------------
TINY = pl.DataFrame({
    "w": [["b", "a", "b"], ["c"], [], None],
    "n": [1.0, 2.0, 3.0, None],
    "m": [10, 10, 10, 10],
})


def test_vectorizer_counts_are_exact() -> None:
    vec = ListVectorizer("w", scale_numeric=False).fit(TINY)
    assert vec.vocabulary_ == {"a": 0, "b": 1, "c": 2}
    assert vec.feature_names_ == ["a", "b", "c"]
    X = vec.transform(TINY)
    assert X.format == "csr" and X.dtype == np.float64
    np.testing.assert_array_equal(
        X.toarray(), [[1, 2, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_vectorizer_ignores_unknown_tokens_and_counts_them() -> None:
    vec = ListVectorizer("w").fit(TINY)
    new = pl.DataFrame({"w": [["a", "zz", "zz"], ["yy", "c"]]})
    np.testing.assert_array_equal(vec.transform(new).toarray(), [[1, 0, 0], [0, 0, 1]])
    assert vec.last_oov_count_ == 3
    oov = ListVectorizer("w", oov_feature=True).fit(TINY)
    assert oov.feature_names_ == ["a", "b", "c", OOV_FEATURE]
    np.testing.assert_array_equal(oov.transform(new).toarray(), [[1, 0, 0, 2], [0, 0, 1, 1]])
    np.testing.assert_array_equal(oov.transform(TINY).toarray()[:, 3], [0, 0, 0, 0])


def test_vectorizer_appends_numeric_columns() -> None:
    vec = ListVectorizer("w", ["n", "m"]).fit(TINY)
    assert vec.feature_names_ == ["a", "b", "c", "n", "m"]
    X = vec.transform(TINY).toarray()
    mean, std = 2.0, np.sqrt(2 / 3)  # of 1, 2, 3 (null ignored), population std
    np.testing.assert_allclose(X[:, 3], [(1 - mean) / std, 0.0, (3 - mean) / std, 0.0])
    np.testing.assert_array_equal(X[:, 4], [0, 0, 0, 0])  # constant column: std 1, centred
    raw = ListVectorizer(None, ["n"], scale_numeric=False).fit(TINY)
    assert raw.feature_names_ == ["n"]
    np.testing.assert_array_equal(raw.transform(TINY).toarray().ravel(), [1, 2, 3, 2])


def test_vectorizer_selection_options() -> None:
    df = pl.DataFrame({"w": [["a", "b", "x"], ["a", "b"], ["a", "c", "c", "c"], ["a"]]})
    assert ListVectorizer("w", min_df=2).fit(df).feature_names_ == ["a", "b"]
    assert ListVectorizer("w", max_df=0.5).fit(df).feature_names_ == ["b", "c", "x"]
    # most frequent by total count: a (4), c (3); ties broken by token
    assert ListVectorizer("w", max_features=2).fit(df).feature_names_ == ["a", "c"]
    assert ListVectorizer("w", max_features=3).fit(df).feature_names_ == ["a", "b", "c"]
    binary = ListVectorizer("w", binary=True).fit_transform(df).toarray()
    assert binary.max() == 1.0
    log = ListVectorizer("w", sublinear_tf=True).fit_transform(df).toarray()
    assert log[2, 2] == pytest.approx(np.log1p(3))
    l2 = ListVectorizer("w", norm="l2").fit_transform(df).toarray()
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1.0)


def test_vectorizer_idf_weights_are_exact() -> None:
    df = pl.DataFrame({"w": [["a", "b", "x"], ["a", "b"], ["a", "c", "c", "c"], ["a"]]})
    vec = ListVectorizer("w", min_df=2, oov_feature=True, binary=True, idf=True).fit(df)
    assert vec.feature_names_ == ["a", "b", OOV_FEATURE]  # x and c (1 row each) are OOV
    idf = np.log(5 / np.array([5.0, 3.0, 3.0])) + 1  # log((1 + n) / (1 + df)) + 1, n = 4
    np.testing.assert_allclose(vec.idf_, idf)
    np.testing.assert_allclose(
        vec.transform(df).toarray(),
        [[idf[0], idf[1], idf[2]], [idf[0], idf[1], 0], [idf[0], 0, idf[2]], [idf[0], 0, 0]])
    new = pl.DataFrame({"w": [["zz", "a", "a"]]})
    unit = ListVectorizer("w", min_df=2, oov_feature=True, sublinear_tf=True, idf=True,
                          norm="l2").fit(df).transform(new).toarray()[0]
    raw = np.array([np.log1p(2) * idf[0], 0, np.log1p(1) * idf[2]])
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw))
    assert ListVectorizer("w").fit(df).idf_ is None
    assert ListVectorizer("w", idf=True).get_params()["idf"] is True


def test_vectorizer_batches_do_not_change_the_result() -> None:
    df = make_enhanced_sequences(2, seed=5)
    big = ListVectorizer("e_words", ["seq_len"]).fit(df)
    small = ListVectorizer("e_words", ["seq_len"], batch_tokens=7).fit(df)
    assert big.vocabulary_ == small.vocabulary_
    assert (big.transform(df) != small.transform(df)).nnz == 0
    assert small._batches(df)[0] != (0, df.height)  # really several batches


def test_vectorizer_errors_and_pickle(tmp_path) -> None:
    with pytest.raises(UserError, match="missing_col"):
        ListVectorizer("missing_col").fit(TINY)
    with pytest.raises(UserError, match="token list"):
        ListVectorizer("n").fit(TINY)
    with pytest.raises(UserError, match="not numeric"):
        ListVectorizer("w", ["w"]).fit(TINY)
    with pytest.raises(UserError, match="min_df"):
        ListVectorizer("w", min_df=0).fit(TINY)
    with pytest.raises(UserError, match="survives"):
        ListVectorizer("w", min_df=5).fit(TINY)
    with pytest.raises(RuntimeError, match="not fitted"):
        ListVectorizer("w").transform(TINY)
    vec = ListVectorizer("w", ["n"]).fit(TINY)
    with pytest.raises(UserError, match="n"):
        vec.transform(TINY.drop("n"))
    joblib.dump(vec, tmp_path / "v.joblib")
    again = joblib.load(tmp_path / "v.joblib")
    assert (again.transform(TINY) != vec.transform(TINY)).nnz == 0


# -- Rarity / OOV detectors ------------------------------------------------------------------
TRAIN = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
TEST = np.array([[1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype=float)


def test_rarity_detector_hand_values() -> None:
    det = RarityDetector(top_k=2).fit(TRAIN)
    # rarity = -log((df + 1) / (n + 2)), n = 3: df 3, 2, 0, 0
    np.testing.assert_allclose(det.rarity_, -np.log(np.array([4, 3, 1, 1]) / 5))
    expected = [
        (np.log(5 / 4) + np.log(5 / 3)) / 2,  # both seen tokens
        np.log(5),  # one unseen token (a count of 3 is still one token)
        0.0,  # no tokens
        np.log(5),  # two unseen tokens are its 2 rarest
    ]
    np.testing.assert_allclose(det.decision_function(TEST), expected)
    np.testing.assert_allclose(det.score_samples(TEST), -np.array(expected))
    assert set(det.predict(TEST)) <= {0, 1}
    assert det.predict(TEST)[1] == 1
    with pytest.raises(ValueError, match="features"):
        det.decision_function(TEST[:, :3])


def test_oov_detector_hand_values() -> None:
    det = OOVDetector().fit(TRAIN)
    np.testing.assert_array_equal(det.decision_function(TEST), [0, 3, 0, 2])
    np.testing.assert_array_equal(det.predict(TEST), [0, 1, 0, 1])
    share = OOVDetector(normalize=True).fit(TRAIN).decision_function(TEST)
    np.testing.assert_allclose(share, [0, 1, 0, 2 / 3])
    np.testing.assert_array_equal(det.score_samples(TEST), [0, -3, 0, -2])
