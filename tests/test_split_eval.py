"""Run-grouped splits, fit/score plumbing and the evaluation helpers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.evaluate import (
    evaluate,
    fit_model,
    leakage_report,
    per_test_case_recall,
    percentile_threshold,
    score_model,
    threshold_scores,
)
from loglead_lo2.detection.registry import REGISTRY
from loglead_lo2.detection.split import (
    Split,
    SplitError,
    normal_holdout_split,
    run_grouped_split,
    run_sort_key,
)
from loglead_lo2.errors import UserError
from tests.detection_data import make_enhanced_sequences, run_name


@pytest.fixture(scope="module")
def seqs() -> pl.DataFrame:
    return make_enhanced_sequences(8, seed=3)


def _runs_of(df: pl.DataFrame) -> set[str]:
    return set(df.get_column("run").unique().to_list())


# -- run_grouped_split ---------------------------------------------------------------------
def test_split_keeps_runs_together_and_holds_out_newest(seqs: pl.DataFrame) -> None:
    split = run_grouped_split(seqs, fraction=0.2)
    assert split.test_runs == [run_name(6), run_name(7)]  # ceil(0.2 * 8) = 2 newest
    assert not set(split.train_runs) & set(split.test_runs)
    assert set(split.train_runs) | set(split.test_runs) == _runs_of(seqs)
    train, hold = split.frames(seqs)
    assert train.height + hold.height == seqs.height
    assert _runs_of(train) == set(split.train_runs)
    assert _runs_of(hold) == set(split.test_runs)
    for side in (train, hold):  # stratified: both classes on both sides
        assert side.get_column("anomaly").n_unique() == 2
    assert "2 hold-out run(s)" in split.note


def test_split_orders_runs_by_epoch_not_by_text() -> None:
    runs = ["LO2_run_900", "LO2_run_1000", "light-oauth2-data-50"]
    assert sorted(runs, key=run_sort_key) == ["light-oauth2-data-50", "LO2_run_900",
                                              "LO2_run_1000"]


def test_split_min_groups_and_shuffle(seqs: pl.DataFrame) -> None:
    split = run_grouped_split(seqs, fraction=0.1, min_groups=3)
    assert len(split.test_runs) == 3
    a = run_grouped_split(seqs, fraction=0.25, shuffle=True, seed=7)
    b = run_grouped_split(seqs, fraction=0.25, shuffle=True, seed=7)
    assert a == b  # seeded
    assert len(a.test_runs) == 2 and not set(a.train_runs) & set(a.test_runs)
    seeds = {tuple(run_grouped_split(seqs, 0.25, shuffle=True, seed=s).test_runs)
             for s in range(8)}
    assert len(seeds) > 1  # shuffling actually changes the choice


def test_split_order_by_column(seqs: pl.DataFrame) -> None:
    # reverse the time order of the runs: the "newest" runs by start_time are the first names
    flipped = seqs.with_columns(
        start_time=pl.col("start_time").max() - (pl.col("start_time") - pl.col("start_time").min())
    )
    split = run_grouped_split(flipped, fraction=0.2, order_by="start_time")
    assert split.test_runs == [run_name(1), run_name(0)]
    with pytest.raises(SplitError, match="no_such"):
        run_grouped_split(seqs, order_by="no_such")


def test_split_stratification_failure_is_clear(seqs: pl.DataFrame) -> None:
    # newest run holds only normal sequences -> the hold-out side has no anomalies
    newest = run_name(7)
    df = seqs.filter((pl.col("run") != newest) | pl.col("normal"))
    with pytest.raises(SplitError, match="hold-out has no anomalous rows") as info:
        run_grouped_split(df, fraction=0.1)
    assert isinstance(info.value, UserError)
    assert "--sup-holdout-shuffle" in str(info.value)
    # without stratification the same split is allowed
    assert run_grouped_split(df, fraction=0.1, stratify=False).test_runs == [newest]
    # shuffled: another seeded draw satisfies stratification
    ok = run_grouped_split(df, fraction=0.1, shuffle=True, seed=1)
    assert ok.test_runs != [newest]


def test_split_impossible_inputs(seqs: pl.DataFrame) -> None:
    one_run = seqs.filter(pl.col("run") == run_name(0))
    with pytest.raises(SplitError, match="at least one run"):
        run_grouped_split(one_run)
    with pytest.raises(SplitError, match="between 0 and 1"):
        run_grouped_split(seqs, fraction=0.0)
    with pytest.raises(SplitError, match="between 0 and 1"):
        run_grouped_split(seqs, fraction=1.0)
    with pytest.raises(SplitError, match="at least one run"):
        run_grouped_split(seqs, fraction=0.2, min_groups=8)
    only_normal = seqs.filter(pl.col("normal"))
    with pytest.raises(SplitError, match="no anomalous rows"):
        run_grouped_split(only_normal, shuffle=True)
    with pytest.raises(SplitError, match="'run'"):
        run_grouped_split(seqs.drop("run"))


def test_normal_holdout_split(seqs: pl.DataFrame) -> None:
    split = normal_holdout_split(seqs, 0.2)
    assert split.test_runs == [run_name(6), run_name(7)]
    assert set(split.train_runs) == _runs_of(seqs) - set(split.test_runs)
    single = seqs.filter(pl.col("run") == run_name(0))
    fallback = normal_holdout_split(single, 0.2)
    assert fallback.test_runs == [] and "falls back to training" in fallback.note
    assert normal_holdout_split(seqs, 0.0).test_runs == []
    with pytest.raises(SplitError):
        normal_holdout_split(seqs, 1.0)


# -- fit_model / score_model ---------------------------------------------------------------
def test_fit_model_trains_normal_only_models_on_normal_rows(seqs: pl.DataFrame) -> None:
    train, _ = run_grouped_split(seqs, 0.25).frames(seqs)
    fitted = fit_model(REGISTRY["event_oov_words"], train)
    assert fitted.train_rows == train.filter(pl.col("normal")).height
    assert not any(tok.startswith("ERR1") for tok in fitted.vectorizer.vocabulary_)
    sup = fit_model(REGISTRY["event_lr_words"], train)
    assert sup.train_rows == train.height
    assert "ERR12014" in sup.vectorizer.vocabulary_
    assert sup.train_runs == sorted(_runs_of(train))
    assert sup.resource["features"] == len(sup.vectorizer.feature_names_)
    assert sup.resource["fit_seconds"] >= 0


def test_fit_model_applies_guards_and_seed(seqs: pl.DataFrame) -> None:
    train, _ = run_grouped_split(seqs, 0.25).frames(seqs)
    guards = {"params": {"max_depth": 2}, "vectorizer": {"max_features": 7}}
    fitted = fit_model(REGISTRY["event_dt_trigrams"], train, guards=guards, seed=5)
    assert fitted.estimator.max_depth == 2
    assert fitted.estimator.get_depth() <= 2
    assert fitted.estimator.random_state == 5
    assert len(fitted.vectorizer.vocabulary_) == 7


def test_fit_model_rejects_single_class_and_empty(seqs: pl.DataFrame) -> None:
    with pytest.raises(UserError, match="single class"):
        fit_model(REGISTRY["event_lr_words"], seqs.filter(pl.col("normal")))
    with pytest.raises(UserError, match="no normal training rows"):
        fit_model(REGISTRY["event_lof_words"], seqs.filter(pl.col("anomaly")))


def test_score_model_batches_match_one_pass(seqs: pl.DataFrame) -> None:
    train, hold = run_grouped_split(seqs, 0.25).frames(seqs)
    fitted = fit_model(REGISTRY["sequence_lr_words"], train)
    whole = score_model(fitted, hold, batch_size=10_000)
    assert whole.shape == (hold.height,)
    np.testing.assert_allclose(score_model(fitted, hold, batch_size=1), whole, rtol=0,
                               atol=1e-12)
    assert score_model(fitted, hold.clear()).shape == (0,)
    with pytest.raises(UserError, match="predict-batch-size"):
        score_model(fitted, hold, batch_size=0)


def test_unsupervised_threshold_fallback_is_training_percentile(seqs: pl.DataFrame) -> None:
    train, _ = run_grouped_split(seqs, 0.25).frames(seqs)
    fitted = fit_model(REGISTRY["event_kmeans_words"], train)
    normal = train.filter(pl.col("normal"))
    expected = np.percentile(score_model(fitted, normal), 99.0)
    assert fitted.threshold == pytest.approx(expected)
    assert "percentile" in fitted.threshold_source


# -- thresholding and metrics ----------------------------------------------------------------
def test_threshold_rule_and_percentile() -> None:
    s = np.array([0.1, 0.5, 0.7])
    assert threshold_scores(s, 0.5).tolist() == [0, 1, 1]  # >= is anomalous
    assert percentile_threshold(np.arange(101.0), 95) == pytest.approx(95.0)
    assert percentile_threshold(np.array([]), 95) is None
    with pytest.raises(UserError):
        percentile_threshold(s, 101)


def test_evaluate_hand_values() -> None:
    y = [1, 1, 0, 0]
    s = [0.9, 0.4, 0.6, 0.1]
    m = evaluate(y, s, threshold=0.5, k=1, alpha=0.25)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)  # average precision
    assert m["precision_at_k"] == 1.0
    assert m["fp_rate_at_alpha"] == 0.0
    assert (m["support_pos"], m["support_neg"]) == (2, 2)


def test_evaluate_edge_cases_never_raise() -> None:
    single = evaluate([0, 0, 0], [0.1, 0.9, 0.3], threshold=0.5, k=2, alpha=0.1)
    assert single["roc_auc"] is None and single["pr_auc"] is None
    assert single["recall"] is None and single["f1"] == 0.0  # one false positive
    assert single["precision"] == 0.0 and single["accuracy"] == pytest.approx(2 / 3)
    assert single["precision_at_k"] == 0.0 and single["fp_rate_at_alpha"] == pytest.approx(1 / 3)
    positives = evaluate([1, 1], [0.1, 0.2], threshold=0.5, alpha=0.5)
    assert positives["precision"] is None and positives["recall"] == 0.0
    assert positives["f1"] == 0.0  # anomalies exist and none is found
    quiet = evaluate([0, 0], [0.1, 0.2], threshold=0.5)
    assert quiet["f1"] is None and quiet["recall"] is None  # nothing to find, nothing flagged
    assert positives["roc_auc"] is None and positives["fp_rate_at_alpha"] is None
    empty = evaluate([], [], threshold=0.5, k=5, alpha=0.1)
    assert empty["accuracy"] is None and empty["precision_at_k"] is None
    assert empty["support_pos"] == empty["support_neg"] == 0
    nan = evaluate([0, 1], [np.nan, 0.2], threshold=0.5)
    assert nan["roc_auc"] is None


def test_per_test_case_recall() -> None:
    df = pl.DataFrame({
        "test_case": ["a_404", "a_404", "b_400", "correct", "b_400", "a_404"],
        "anomaly": [True, True, True, False, True, True],
    })
    out = per_test_case_recall(df, [1, 0, 1, 1, 1, 1])
    assert out.columns == ["test_case", "n", "detected", "recall"]
    assert out.rows() == [("a_404", 3, 2, pytest.approx(2 / 3)), ("b_400", 2, 2, 1.0)]
    assert per_test_case_recall(df.clear(), []).height == 0
    with pytest.raises(ValueError):
        per_test_case_recall(df, [1])


def test_leakage_report_flags_length_leak() -> None:
    leaky = make_enhanced_sequences(4, length_leak=True, seed=1)
    rep = leakage_report(leaky)
    assert rep["roc_auc"]["seq_len"] < 0.05  # correct recordings are longer
    assert rep["separability"]["seq_len"] > 0.95
    assert "--window" in rep["warning"] and "seq_len" in rep["warning"]
    fair = pl.DataFrame({
        "anomaly": [True, False, True, False],
        "seq_len": [10, 11, 11, 10],
        "duration_sec": [1.0, 2.0, 2.0, 1.0],
    })
    rep = leakage_report(fair)
    assert rep["roc_auc"] == {"seq_len": 0.5, "duration_sec": 0.5}
    assert rep["warning"] is None
    single = leakage_report(fair.filter(pl.col("anomaly")))
    assert single["roc_auc"] == {"seq_len": None, "duration_sec": None}


def test_split_dataclass_frames_roundtrip() -> None:
    df = pl.DataFrame({"run": ["r1", "r2", "r3"], "x": [1, 2, 3]})
    train, hold = Split(["r1", "r3"], ["r2"], "").frames(df)
    assert train.get_column("x").to_list() == [1, 3]
    assert hold.get_column("x").to_list() == [2]


def test_leakage_advice_depends_on_windowing() -> None:
    import polars as pl

    from loglead_lo2.detection.evaluate import leakage_report

    df = pl.DataFrame({"anomaly": [False, False, True, True], "seq_len": [60, 50, 10, 9],
                       "duration_sec": [60.0, 59.0, 10.0, 9.5]})
    assert "--window" in leakage_report(df)["warning"]
    windowed = df.with_columns(window=pl.Series([0, 1, 0, 0], dtype=pl.Int32))
    assert "--label-mode target-service" in leakage_report(
        windowed, label_mode="test-case")["warning"]
    assert "without length features" in leakage_report(windowed)["warning"]


def test_leakage_report_fires_per_service_when_the_pooled_figure_hides_it() -> None:
    import polars as pl

    from loglead_lo2.detection.leakage import leakage_lines, leakage_report, service_separability

    # Within each service length separates perfectly (token: anomalous rows shorter, code:
    # longer), but pooled over both the directions cancel out: 4 rows per (service, class).
    rows = []
    for service, base, sign in (("token", 100, 1), ("code", 10, -1)):
        for i in range(4):
            rows.append((service, False, base + sign * (2 + i), 5.0))
            rows.append((service, True, base - sign * (2 + i), 5.0))
    df = pl.DataFrame(rows, schema=["service", "anomaly", "seq_len", "duration_sec"],
                      orient="row")
    rep = leakage_report(df, windowed=True)
    assert rep["pooled"]["seq_len"]["separability"] == 0.5
    assert rep["per_service"]["token"]["seq_len"]["separability"] == 1.0
    assert rep["per_service"]["code"]["seq_len"]["separability"] == 1.0
    assert rep["per_service"]["token"]["duration_sec"]["separability"] == 0.5
    assert set(rep["leaky_services"]) == {"token", "code"}
    assert rep["worst"]["separability"] == 1.0 and "token: seq_len 1.00" in rep["warning"]
    assert service_separability(rep, "token") == 1.0 and service_separability(rep, "all") == 1.0
    assert any("per service: code 1.00; token 1.00" in line for line in leakage_lines(rep))
    fair = df.with_columns(seq_len=pl.lit(50))
    assert leakage_report(fair, windowed=True)["warning"] is None
