"""The logs / metrics / both ablation of docs/evaluation.md (benchmarks/eval_tables.py)."""

from __future__ import annotations

import polars as pl

from tests.benchmarks_import import load_benchmark

Cfg = load_benchmark("eval_matrix").Config


def _board(figures: dict[str, tuple[float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"model": m, "service": "all", "kind": "supervised", "roc_auc": r,
                          "gt_roc_auc": g, "gt_recall_1pct_fp": k}
                         for m, (r, g, k) in figures.items()])


def test_ablation_rows_and_verdicts_come_from_the_figures() -> None:
    t = load_benchmark("eval_tables")
    five = _board({"event_lr_words": (0.80, 1.00, 0.98), "metrics_lr": (0.61, 0.60, 0.0),
                   "event_lr_words_metrics": (0.83, 1.00, 1.0),
                   "event_dt_words": (0.70, 0.90, 0.5), "metrics_dt": (0.52, 0.55, 0.0),
                   "event_dt_words_metrics": (0.75, 0.95, 0.6)})
    none = _board({"event_lr_words": (0.70, 0.995, 0.9), "metrics_lr": (0.9, 0.58, 0.0),
                   "event_lr_words_metrics": (0.72, 0.995, 0.9)})
    outcomes = [
        {"config": Cfg("target-service", 5.0, False), "board": five, "error": None},
        {"config": Cfg("target-service", None, False), "board": none, "error": None},
        {"config": Cfg("target-service", 5.0, True), "board": five.head(0), "error": None},
        {"config": Cfg("test-case", 5.0, False), "board": five, "error": None},
    ]
    rows = t.ablation_rows(outcomes)
    # whole sequences first, then windows; per-service and test-case runs are not used
    assert [(r[0], r[1]) for r in rows] == [("none", "logistic regression"),
                                            ("5 s", "logistic regression"),
                                            ("5 s", "decision tree")]
    assert rows[2][2:] == [0.90, 0.55, 0.95, 0.5, 0.0, 0.6, 0.70, 0.52, 0.75]
    text = "\n".join(t.ablation_section(outcomes))
    assert "## Logs, metrics, both (ablation)" in text
    assert "**logistic regression**: the logs alone are at the ceiling" in text
    assert "metrics alone reach 0.580-0.600 (near random" in text
    assert "**decision tree**: the metrics add up to +0.050 true ROC-AUC (5 s windows)" in text
    assert "isolation forest" not in text.split("| window |")[0]  # no figures, no verdict
    assert t.ablation_section([]) == []
    whole = _board({"metrics_lr": (1.0, 0.48, 0.0)}).with_columns(
        fp_rate_non_target=pl.lit(0.99))
    line = t.metric_shortcut_line(
        [{"config": Cfg("test-case", None, False), "board": whole, "error": None}])
    assert "`metrics_lr` 1.000 against the labels, 0.480 against true labels, flagging " \
        "0.990" in line
    assert t.metric_shortcut_line(outcomes) is None  # no test-case run on whole sequences
