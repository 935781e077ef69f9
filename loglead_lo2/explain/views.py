"""What the explanations see of a model, whether reused from detection or retrained.

A :class:`ModelSource` is one model with the detection-style predictions of every row
(``seq_id, split, label, score, threshold, pred``: the ``<key>_predictions.parquet`` of the
detection phase, or the same frame built by :func:`loglead_lo2.detection.runner.predictions_frame`
after a retrain). :func:`build_view` aligns it with the rows being explained and keeps the
hold-out part: those scores, that threshold and those flags are what every explanation file
writes, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.evaluate import threshold_scores
from loglead_lo2.detection.labels import ROW_GROUP
from loglead_lo2.detection.runner import SPLIT_HOLDOUT, SPLIT_TRAIN
from loglead_lo2.errors import UserError

FOREST_TEXT = "Isolation Forest on normal sequences of the training runs"
METRIC_KEYS: tuple[str, ...] = (
    "precision", "recall", "f1", "roc_auc", "pr_auc", "tp", "fp", "tn", "fn",
    "fp_rate_correct", "fp_rate_non_target",
)


@dataclass
class ModelSource:
    """One model and its predictions for every row (see the module docstring)."""

    key: str  # the registry key (the forest: ``isolation_forest``)
    kind: str
    description: str
    estimator: Any
    vectorizer: Any
    predictions: pl.DataFrame
    threshold: float
    threshold_source: str
    threshold_rule: str
    training: dict[str, Any]
    origin: dict[str, Any]
    spec: Any = None  # registry ModelSpec (SHAP); None for the Isolation Forest
    fitted: Any = None  # the FittedModel of a retrain (built from the bundle otherwise)
    where: Path | None = None  # the predictions file (reuse), for messages


@dataclass
class ModelView:
    """One model on the held-out rows: feature space, scores, flags and threshold."""

    key: str
    kind: str
    description: str
    vectorizer: Any
    scores: np.ndarray
    flags: np.ndarray
    threshold: float
    threshold_source: str
    threshold_rule: str
    training: dict[str, Any]
    origin: dict[str, Any]
    fit_rows: np.ndarray  # over the training-run rows: the ones the model was fitted on
    fitted: Any = None  # FittedModel for registry models (SHAP), None for the forest
    metrics: dict[str, Any] = field(default_factory=dict)


def holdout_metrics(hold: pl.DataFrame, scores: np.ndarray, threshold: float
                    ) -> dict[str, Any]:
    """The detection phase's :func:`~loglead_lo2.detection.evaluate.evaluate_metrics` on the
    hold-out rows (the figures of its leaderboard)."""
    from loglead_lo2.detection.evaluate import evaluate_metrics

    groups = hold[ROW_GROUP].to_numpy() if ROW_GROUP in hold.columns else None
    m = evaluate_metrics(hold["anomaly"].cast(pl.Int8).to_numpy(), scores,
                         threshold=threshold, groups=groups)
    return {k: getattr(m, k) for k in METRIC_KEYS}


def _fitted(src: ModelSource) -> Any:
    if src.spec is None:
        return None
    if src.fitted is not None:
        return src.fitted
    from loglead_lo2.detection.evaluate import FittedModel

    return FittedModel(key=src.key, spec=src.spec, estimator=src.estimator,
                       vectorizer=src.vectorizer, fit_seconds=0.0,
                       train_rows=int(src.training.get("rows") or 0),
                       train_runs=list(src.training.get("runs") or []),
                       threshold=src.threshold, threshold_source=src.threshold_source)


def build_view(src: ModelSource, df: pl.DataFrame, holdout_runs: list[str]) -> ModelView:
    """Align ``src.predictions`` with ``df`` (every row, sorted as explained) and keep the
    hold-out rows. The split, threshold and flags are checked against the run's hold-out runs
    and the ``score >= threshold`` rule: a mismatch means files of different runs."""
    where = src.where.name if src.where is not None else f"the {src.key} predictions"
    rows = df.select("seq_id", "run").join(src.predictions, on="seq_id", how="left",
                                           maintain_order="left")
    split = rows["split"].to_numpy()
    in_hold = rows["run"].is_in(holdout_runs).to_numpy()
    if not np.array_equal(split == SPLIT_HOLDOUT, in_hold):
        raise UserError(f"{where}: its hold-out rows are not those of the hold-out runs "
                        f"{', '.join(holdout_runs)}; the files come from different detection "
                        "runs: re-run lo2-detect, or pass --retrain.")
    thresholds = rows["threshold"].unique().to_list()
    if len(thresholds) != 1 or not np.isclose(thresholds[0], src.threshold, rtol=1e-12,
                                              atol=0.0):
        raise UserError(f"{where}: threshold(s) {thresholds[:3]} differ from the model's "
                        f"{src.threshold!r}; re-run lo2-detect, or pass --retrain.")
    scores = rows["score"].to_numpy().astype(np.float64)
    pred = rows["pred"].cast(pl.Int8).to_numpy().astype(bool)
    threshold = float(thresholds[0])
    if not np.array_equal(pred, threshold_scores(scores, threshold) == 1):
        raise UserError(f"{where}: pred is not score >= threshold; re-run lo2-detect, or pass "
                        "--retrain.")
    hold = df.filter(pl.Series(in_hold))
    return ModelView(
        key=src.key, kind=src.kind, description=src.description, vectorizer=src.vectorizer,
        scores=scores[in_hold], flags=pred[in_hold], threshold=threshold,
        threshold_source=src.threshold_source, threshold_rule=src.threshold_rule,
        training=src.training, origin=src.origin, fit_rows=split[~in_hold] == SPLIT_TRAIN,
        fitted=_fitted(src), metrics=holdout_metrics(hold, scores[in_hold], threshold))


__all__ = ["FOREST_TEXT", "METRIC_KEYS", "ModelSource", "ModelView", "build_view",
           "holdout_metrics"]
