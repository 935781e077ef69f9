"""Typed detection results: metrics, model records, the macro row and leaderboard columns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from loglead_lo2.detection.cv import CV_METRICS, GROUND_TRUTH_METRICS
from loglead_lo2.detection.evaluate import evaluate, evaluate_metrics
from loglead_lo2.detection.records import (
    GROUP_FIELDS,
    METRICS,
    RECORD,
    SOURCES,
    HoldoutEvaluation,
    HoldoutMetrics,
    LeaderboardRow,
    ModelRecord,
    combined,
    macro,
)
from loglead_lo2.detection.report import (
    LEADERBOARD_COLUMNS,
    METRIC_COLUMNS,
    flat_row,
    metric_line,
)
from loglead_lo2.explain.views import METRIC_KEYS
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences

Y = [1, 1, 0, 0, 0]
S = [0.9, 0.4, 0.6, 0.1, 0.2]
GROUPS = ["target", "target", "correct", "non-target", "correct"]


def _record(service: str = "all", **metrics: object) -> ModelRecord:
    m = dataclasses.replace(evaluate_metrics(Y, S, threshold=0.5, k=2, alpha=0.25,
                                             groups=GROUPS), **metrics)
    return ModelRecord.holdout(
        "m", kind="supervised", description="a model", metrics=m,
        split={"train_runs": ["r1"], "holdout_runs": ["r2"], "train_rows": 10,
               "holdout_rows": 5},
        threshold={"value": 0.5, "source": "test"},
        timing={"fit_seconds": 1.5, "score_seconds": 0.25},
        features={"item": "e_words", "numeric": []}, k=2, alpha=0.25, psi=0.1,
        guards=("[Guard] none",), notes=("a note",), settings={"label_mode": "test-case"},
        service=service, training={"rows": 10, "runs": ["r1"]},
    ).with_evaluation(HoldoutEvaluation(
        {"threshold": 0.7, "normal_rows": 3},
        {"overall": {"recall": 0.5, "fp_rate_normal": 0.25, "roc_auc_true": 0.8,
                     "recall_at_1pct_fp": 0.0}}))


def test_evaluate_is_the_dict_of_the_typed_metrics() -> None:
    typed = evaluate_metrics(Y, S, threshold=0.5, k=2, groups=GROUPS)
    assert evaluate(Y, S, threshold=0.5, k=2, groups=GROUPS) == typed.to_dict()
    assert list(typed.to_dict())[:4] == ["accuracy", "precision", "recall", "f1"]
    assert list(typed.to_dict())[-4:] == list(GROUP_FIELDS)
    ungrouped = evaluate_metrics(Y, S, threshold=0.5)
    assert not ungrouped.grouped and not set(GROUP_FIELDS) & set(ungrouped.to_dict())
    assert (typed.tp, typed.fp, typed.fn, typed.tn) == (1, 1, 1, 2)
    assert (typed.n_correct, typed.fp_rate_correct) == (2, 0.5)


def test_round_trip() -> None:
    record = _record().with_shap({"split": "holdout", "top": [{"feature": "a"}]})
    data = record.to_dict()
    assert ModelRecord.from_dict(data) == record
    assert ModelRecord.from_dict(json.loads(json.dumps(data))) == record
    metrics = record.metrics
    assert metrics is not None and HoldoutMetrics.from_dict(metrics.to_dict()) == metrics
    top = combined("m", [_record("a"), _record("b")], {"c": "no anomalies"})
    assert ModelRecord.from_dict(json.loads(json.dumps(top.to_dict()))) == top
    with pytest.raises(ValueError, match="unknown key"):
        ModelRecord.from_dict({**data, "surprise": 1})


def test_json_keys_and_left_out_blocks() -> None:
    data = _record().to_dict()
    assert list(data) == [
        "model", "service", "settings", "kind", "description", "split", "metrics_split",
        "metrics", "k", "alpha", "psi_train_vs_holdout", "threshold", "timing", "features",
        "resource", "guards", "notes", "training", "at_1pct_fp", "ground_truth"]
    assert data["split"]["name"] == "holdout" and data["metrics_split"] == "holdout"
    assert data["guards"] == ["[Guard] none"] and data["resource"] == {}
    bare = ModelRecord.holdout("m", kind="k", description="d", metrics=None, split={},
                               threshold={}, timing={}, features={})
    assert bare.to_dict()["metrics"] is None and bare.to_dict()["metrics_split"] is None


def test_records_are_frozen() -> None:
    record = _record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.model = "other"  # type: ignore[misc]
    assert record.metrics is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.metrics.f1 = 1.0  # type: ignore[misc]
    assert record.with_shap({"top": []}).shap == {"top": []} and record.shap is None


def test_leaderboard_columns_are_fields() -> None:
    metric_fields = {f.name for f in dataclasses.fields(HoldoutMetrics)}
    record_fields = {f.name for f in dataclasses.fields(ModelRecord)}
    assert LEADERBOARD_COLUMNS == ("rank", *(f.name for f in dataclasses.fields(LeaderboardRow)))
    for f in dataclasses.fields(LeaderboardRow):
        source, key = f.metadata["source"], f.metadata["key"] or f.name
        assert source in SOURCES, f.name
        if source == METRICS:
            assert key in metric_fields, f.name
        if source == RECORD:
            assert key in record_fields, f.name
    assert set(LeaderboardRow.columns(METRICS)) == set(METRIC_COLUMNS)
    assert METRIC_COLUMNS == HoldoutMetrics.leaderboard_fields()
    # the other readers of metrics name fields too
    assert set(METRIC_KEYS) <= metric_fields
    assert set(CV_METRICS) - set(GROUND_TRUTH_METRICS) <= metric_fields


def test_flat_row() -> None:
    row = flat_row(_record())
    assert list(row) == list(LEADERBOARD_COLUMNS[1:])
    assert row["label_mode"] == "test-case" and row["split"] == "holdout"
    assert row["psi"] == 0.1 and row["threshold"] == 0.5 and row["fit_seconds"] == 1.5
    assert row["gt_roc_auc"] == 0.8 and row["k_rows"] == 2 and row["holdout_rows"] == 5


def test_metric_line_names_the_group_rates_only_when_measured() -> None:
    grouped = metric_line("m", evaluate_metrics(Y, S, threshold=0.5, k=9, groups=GROUPS))
    assert "fp_rate_correct 0.5000" in grouped and "precision_at_k 0.4000" in grouped
    assert "note: k=9 exceeds the 5 evaluated rows" in grouped
    plain = metric_line("m", evaluate_metrics(Y, S, threshold=0.5), service="a")
    assert "fp_rate_correct" not in plain and "service a" in plain
    assert "fp_rate_at_alpha n/a" in plain
    assert metric_line("m", None).endswith("no hold-out metrics")


def test_macro_of_two_service_records_by_hand() -> None:
    a = dataclasses.replace(_record("a"), psi_train_vs_holdout=0.2)
    # service b flags nothing: precision undefined, F1 0 (2TP / (2TP + FP + FN))
    b = _record("b", tp=0, fp=0, fn=4, tn=5, precision=None, recall=0.0, f1=None,
                roc_auc=0.5, support_pos=4, support_neg=5, n_correct=4,
                fp_rate_correct=0.25)
    m = macro("m", [a, b])
    assert (m.service, m.services, m.metrics_split) == (
        "macro", ("a", "b"), "holdout (macro average over services)")
    metrics = m.metrics
    assert metrics is not None
    assert metrics.f1 == pytest.approx((0.5 + 0.0) / 2)  # a: 2*1 / (2 + 1 + 1)
    assert metrics.precision == pytest.approx(0.5)  # a only
    assert metrics.recall == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert metrics.roc_auc == pytest.approx((a.metrics.roc_auc + 0.5) / 2)  # type: ignore[union-attr]
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (1, 1, 5, 7)
    assert (metrics.support_pos, metrics.support_neg) == (6, 8)
    assert metrics.n_correct == pytest.approx(3.0) and metrics.k_note is None
    assert metrics.fp_rate_correct == pytest.approx((0.5 + 0.25) / 2)
    assert m.macro_defined is not None and m.macro_defined["per_metric"]["precision"] == 1
    assert m.macro_defined["per_metric"]["f1"] == 2 and m.macro_defined["services"] == 2
    assert m.psi_train_vs_holdout == pytest.approx(0.15)
    assert m.timing == {"fit_seconds": 3.0, "score_seconds": 0.5}
    assert (m.split["train_rows"], m.split["holdout_rows"]) == (20, 10)
    assert m.threshold["value"] is None
    assert m.gt_overall["recall"] == pytest.approx(0.5)
    data = m.to_dict()
    assert list(data["metrics"]) == sorted(data["metrics"])  # macro metrics: sorted keys
    assert "features" not in data and "training" not in data
    assert list(data)[-3:] == ["services", "macro_defined", "ground_truth"]


def test_detection_json_parses_into_records(tmp_path: Path) -> None:
    from loglead_lo2.detection.cli import main

    write_parquet(make_enhanced_sequences(8, seed=3), tmp_path / "lo2_sequences_enhanced.parquet",
                  "sequences_enhanced")
    assert main(["--root", str(tmp_path), "--phase", "full", "--per-service", "--models",
                 "event_lr_words,sequence_shap_lr_words"]) == 0
    metrics_dir = tmp_path / "metrics"
    for name in ("event_lr_words", "sequence_shap_lr_words", "isolation_forest",
                 "if_metrics"):
        data = json.loads((metrics_dir / f"{name}.json").read_text())
        record = ModelRecord.from_dict(data)
        assert record.to_dict() == data, name
        assert record.service == "macro" and record.per_service
        for service, part in record.per_service.items():
            assert part.service == service and part.metrics is not None
            assert part.metrics.support_pos + part.metrics.support_neg == \
                part.split["holdout_rows"]
    shap = ModelRecord.from_dict(json.loads(
        (metrics_dir / "sequence_shap_lr_words.json").read_text()))
    assert all(p.shap for p in (shap.per_service or {}).values())
