"""Isolation Forest baseline, scoring a saved bundle, and the hyper-parameter guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.guards import (
    DEFAULT_LIMITS,
    GIB,
    clamp_estimator_params,
    clamp_vectorizer_params,
    format_resource,
    memory_limits,
    plan_guards,
    resource_stats,
)
from loglead_lo2.detection.iforest import (
    IFConfig,
    dense_rank_desc,
    predictions_frame,
    resolve_numeric,
    score_iforest,
    score_with_bundle,
    train_iforest,
)
from loglead_lo2.detection.persistence import save_bundle_pair
from loglead_lo2.errors import UserError
from tests.detection_data import make_enhanced_sequences, run_name


@pytest.fixture(scope="module")
def leaky() -> pl.DataFrame:
    """Obvious anomalies: normal sequences are 6x longer (the forest only sees counts)."""
    return make_enhanced_sequences(8, length_leak=True, seed=11)


def test_trains_on_normal_rows_of_older_runs_only(leaky: pl.DataFrame) -> None:
    res = train_iforest(leaky, IFConfig(holdout_fraction=0.25, threshold_percentile=95))
    normal_runs = sorted({run_name(i) for i in range(8)})
    assert res.threshold_runs == normal_runs[-2:]  # newest normal runs
    assert not set(res.fit_runs) & set(res.threshold_runs)
    n_normal = int(leaky["normal"].sum())
    assert res.fit_rows + res.threshold_rows == n_normal
    hold = leaky.filter(pl.col("normal") & pl.col("run").is_in(res.threshold_runs))
    expected = np.percentile(score_iforest(res.model, res.vectorizer, hold), 95)
    assert res.threshold == pytest.approx(expected)
    assert "normal rows of 2 calibration run(s)" in res.threshold_source


def test_higher_score_is_more_anomalous(leaky: pl.DataFrame) -> None:
    from sklearn.metrics import roc_auc_score

    train = leaky.filter(pl.col("run") < run_name(6))
    test = leaky.filter(pl.col("run") >= run_name(6))
    res = train_iforest(train, IFConfig(seed=3))
    scores = score_iforest(res.model, res.vectorizer, test)
    assert roc_auc_score(test["anomaly"].to_numpy(), scores) > 0.8
    assert np.allclose(scores, -res.model.score_samples(res.vectorizer.transform(test)))


def test_batches_give_identical_scores(leaky: pl.DataFrame) -> None:
    res = train_iforest(leaky, IFConfig(n_estimators=20))
    whole = score_iforest(res.model, res.vectorizer, leaky, batch_size=10_000)
    assert np.array_equal(whole, score_iforest(res.model, res.vectorizer, leaky, batch_size=7))
    with pytest.raises(UserError):
        score_iforest(res.model, res.vectorizer, leaky, batch_size=0)


def test_threshold_fallback_with_one_normal_run() -> None:
    one = make_enhanced_sequences(1)
    res = train_iforest(one, IFConfig(threshold_percentile=99))
    assert res.threshold_runs == [] and "in-sample" in res.threshold_source
    assert any("optimistic" in n for n in res.notes)


def test_contamination_threshold_without_percentile(leaky: pl.DataFrame) -> None:
    res = train_iforest(leaky, IFConfig(contamination=0.1))
    assert res.percentile is None
    assert res.threshold == pytest.approx(-res.model.offset_)


def test_no_normal_rows_is_a_user_error(leaky: pl.DataFrame) -> None:
    with pytest.raises(UserError, match="no normal"):
        train_iforest(leaky.filter(pl.col("anomaly")), IFConfig())


def test_max_samples_larger_than_rows_is_clamped_and_said(leaky: pl.DataFrame) -> None:
    res = train_iforest(leaky, IFConfig(max_samples=10_000, holdout_fraction=0))
    assert res.model.max_samples == res.fit_rows
    assert any("--if-max-samples" in n for n in res.notes)


def test_dense_rank_and_predictions_frame() -> None:
    scores = np.array([0.2, 0.9, 0.2, 0.5])
    assert dense_rank_desc(scores).tolist() == [3, 1, 3, 2]
    df = pl.DataFrame({"seq_id": list("abcd"), "run": ["r"] * 4, "anomaly": [0, 1, 0, 1]})
    out = predictions_frame(df, scores, threshold=0.5)
    assert out["pred_if_threshold"].to_list() == [0, 1, 0, 1]
    assert "pred_if_threshold" not in predictions_frame(df, scores, None).columns


def test_resolve_numeric(leaky: pl.DataFrame) -> None:
    cols, notes = resolve_numeric("seq_len, duration,e_chars_len", dict(leaky.schema))
    assert cols == ("seq_len", "duration_sec", "e_chars_len")
    assert any("duration_sec" in n for n in notes) and any("SUM" in n for n in notes)
    with pytest.raises(UserError, match="available numeric sequence columns: duration_sec"):
        resolve_numeric("m_message", dict(leaky.schema))


def test_score_with_bundle(tmp_path: Path, leaky: pl.DataFrame) -> None:
    res = train_iforest(leaky, IFConfig(threshold_percentile=99))
    bundle = tmp_path / "lo2_if.joblib"
    save_bundle_pair(bundle, res.model, res.vectorizer, lambda path, sha: {
        "model": {"key": "isolation_forest"},
        "threshold": {"value": res.threshold, "percentile": 99}}, metadata_name="model.yml")
    preds = score_with_bundle(leaky, bundle)
    expected = score_iforest(res.model, res.vectorizer, leaky)
    assert np.array_equal(preds["score_if"].to_numpy(), expected)
    assert preds["pred_if_threshold"].to_list() == (expected >= res.threshold).astype(
        int).tolist()
    assert preds["rank_if"].min() == 1
    with pytest.raises(UserError, match="lack column"):
        score_with_bundle(leaky.drop("e_words"), bundle)


# --- guards ---------------------------------------------------------------------------------


def test_clamps() -> None:
    params = {"max_depth": None, "n_estimators": 1000, "max_features": 0.9,
              "max_leaf_nodes": None, "min_samples_leaf": 1}
    out = clamp_estimator_params(params, DEFAULT_LIMITS)
    assert out == {"max_depth": 20, "n_estimators": 300, "max_features": 0.5,
                   "max_leaf_nodes": 512}
    assert clamp_estimator_params({"max_features": 0.01}, DEFAULT_LIMITS) == {
        "max_features": 0.05}
    assert clamp_estimator_params({"max_features": "sqrt", "max_depth": 5},
                                  DEFAULT_LIMITS) == {}
    assert clamp_estimator_params({"max_leaves": 0}, DEFAULT_LIMITS) == {"max_leaves": 512}
    iforest = clamp_estimator_params({"n_estimators": 500, "max_features": 1.0},
                                     DEFAULT_LIMITS, isolation_forest=True)
    assert iforest == {"n_estimators": 300}
    vec = clamp_vectorizer_params({"min_df": 500, "max_features": None}, DEFAULT_LIMITS)
    assert vec == {"min_df": 100, "max_features": 200_000}
    assert clamp_vectorizer_params({}, DEFAULT_LIMITS, has_item=False) == {}


def test_memory_guard_levels_and_lines() -> None:
    low, lines = memory_limits(available=2 * GIB)
    assert low.n_estimators == 100 and low.max_depth == 12 and "2.0 GiB" in lines[0]
    mid, _ = memory_limits(available=6 * GIB)
    assert mid.n_estimators == 150
    assert memory_limits(available=64 * GIB) == (DEFAULT_LIMITS, [])
    off, lines = memory_limits(enabled=False, available=1 * GIB)
    assert off == DEFAULT_LIMITS and "disabled" in lines[0]
    plan = plan_guards("event_rf_words", {"n_estimators": 200, "max_depth": 20}, {}, low)
    assert plan.params == {"n_estimators": 100, "max_depth": 12}
    assert plan.vectorizer == {"max_features": 50_000}
    assert len(plan.lines) == 3 and all(line.startswith("[Guard] event_rf_words") for line in
                                        plan.lines)
    assert plan.as_mapping() == {"params": plan.params, "vectorizer": plan.vectorizer}


def test_guards_reach_the_fitted_model() -> None:
    from loglead_lo2.detection.evaluate import fit_model
    from loglead_lo2.detection.registry import REGISTRY

    spec = REGISTRY["event_dt_trigrams"]
    low, _ = memory_limits(available=1 * GIB)
    plan = plan_guards(spec.key, spec.make_estimator().get_params(), dict(spec.vectorizer), low)
    fitted = fit_model(spec, make_enhanced_sequences(4), guards=plan.as_mapping())
    assert fitted.estimator.max_depth == 12 and fitted.estimator.max_leaf_nodes == 256
    line = format_resource(spec.key, resource_stats(fitted.estimator, fitted.vectorizer, 0.5))
    assert line.startswith("[Resource] event_dt_trigrams: fit 0.50s")
    assert "trees 1" in line and "vocabulary" in line


def test_loaded_forest_threshold_and_hold_out_warning() -> None:
    """One conversion of a loaded forest bundle for detection and explain --retrain: the
    threshold from model.yml, else the forest's contamination cut-off; a warning when it was
    trained on hold-out runs."""
    from types import SimpleNamespace

    from sklearn.ensemble import IsolationForest

    from loglead_lo2.detection.if_phase import fitted_from_bundle, loaded_lines
    from loglead_lo2.detection.iforest import IFConfig

    forest = IsolationForest(n_estimators=5, random_state=0).fit([[0.0], [1.0], [2.0]])
    vec = SimpleNamespace(item="e_words", numeric=())
    opts = SimpleNamespace(if_config=IFConfig())
    meta = {"training": {"rows": 3, "runs": ["r2", "r1"]},
            "threshold": {"value": 0.7, "source": "fp-target"}}
    saved = SimpleNamespace(model=forest, vectorizer=vec, metadata=meta, threshold=0.7,
                            path="m/lo2_if.joblib")
    fitted = fitted_from_bundle(opts, saved)
    assert fitted.threshold == 0.7 and "fp-target" in fitted.threshold_source
    assert fitted.train_runs == ["r1", "r2"] and fitted.train_rows == 3
    said, warn = loaded_lines(fitted, saved, ["r2", "r9"])
    assert said.startswith("[IF] loaded m/lo2_if.joblib") and warn and "r2" in warn
    bare = SimpleNamespace(model=forest, vectorizer=vec, metadata=None, threshold=None,
                           path="x.joblib")
    fitted = fitted_from_bundle(opts, bare)
    assert fitted.threshold == pytest.approx(-forest.offset_) and fitted.train_runs == []
    assert loaded_lines(fitted, bare, ["r2"])[1] is None
