"""One path for a registry model on one part: fit, threshold, score every row, evaluate.

:func:`run_model` holds back the calibration runs (:mod:`.thresholds`), fits the spec on the
other training runs, scores every row of the part (training, calibration and hold-out runs),
sets the threshold on calibration normal rows and returns a :class:`ModelRun`.
:func:`holdout_metrics` evaluates it on the hold-out rows only. The detection phase and the
cross-validation use the same two functions, so a fold's figures are made exactly like the
leaderboard's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.evaluate import FittedModel, evaluate_metrics, fit_model, score_model
from loglead_lo2.detection.labels import ROW_GROUP
from loglead_lo2.detection.records import HoldoutMetrics
from loglead_lo2.detection.thresholds import (
    CalibrationSplit,
    Threshold,
    ThresholdSettings,
    calibration_split,
    from_calibration,
    model_cutoff,
)

SPLIT_TRAIN = "train"
SPLIT_CALIBRATION = "calibration"
SPLIT_HOLDOUT = "holdout"
PREDICTION_COLUMNS: tuple[str, ...] = (
    "seq_id", "run", "test_case", "service", "window", ROW_GROUP, "split", "label",
    "score", "threshold", "pred",
)


@dataclass
class ModelRun:
    """A fitted model with its threshold and the scores of every row of its part."""

    fitted: FittedModel
    threshold: Threshold
    calibration: CalibrationSplit
    scores: np.ndarray
    split: np.ndarray
    score_seconds: float

    @property
    def holdout(self) -> np.ndarray:
        return self.split == SPLIT_HOLDOUT


def split_column(rows: pl.DataFrame, test_runs: list[str],
                 calibration_runs: tuple[str, ...]) -> np.ndarray:
    """``holdout`` / ``calibration`` / ``train`` for every row (by its run)."""
    return rows.select(
        pl.when(pl.col("run").is_in(list(test_runs))).then(pl.lit(SPLIT_HOLDOUT))
        .when(pl.col("run").is_in(list(calibration_runs))).then(pl.lit(SPLIT_CALIBRATION))
        .otherwise(pl.lit(SPLIT_TRAIN))
    ).to_series().to_numpy()


def run_model(spec: Any, rows: pl.DataFrame, train: pl.DataFrame, test_runs: list[str],
              settings: ThresholdSettings, *, guards: Mapping[str, Any] | None = None,
              seed: int = 42, batch_size: int = 50_000,
              fitted: FittedModel | None = None, memory_guard: bool = True) -> ModelRun:
    """Fit ``spec`` on ``train`` minus its calibration runs, threshold it, score ``rows``.

    ``rows`` are every row of the part (all runs); ``train`` its training-run rows.
    ``fitted``: an already fitted model (a loaded bundle): nothing is fitted, the threshold
    rule still applies (``model`` keeps ``fitted.threshold``). The fit is bounded
    (:mod:`.budget`): a sample where the spec caps its rows, and
    :class:`~loglead_lo2.detection.budget.ModelSkipped` (nothing fitted or scored) when
    ``memory_guard`` finds its estimated memory over the budget.
    """
    cal = calibration_split(train, settings)
    if fitted is None:
        fitted = fit_model(spec, train, guards=guards, seed=seed, fit_runs=cal.fit_runs,
                           memory_guard=memory_guard)
    started = time.perf_counter()
    scores = score_model(fitted, rows, batch_size=batch_size)
    seconds = time.perf_counter() - started
    split = split_column(rows, test_runs, cal.calibration_runs)
    normal = rows["normal"].to_numpy()
    if settings.rule == "model":
        threshold = model_cutoff(fitted.threshold, fitted.threshold_source)
    else:
        mask = (split == SPLIT_CALIBRATION) & normal
        in_sample = not mask.any()
        if in_sample:
            mask = (split == SPLIT_TRAIN) & normal
        threshold = from_calibration(scores[mask], settings, cal, in_sample=in_sample)
    return ModelRun(fitted, threshold, cal, scores, split, seconds)


def holdout_metrics(run: ModelRun, rows: pl.DataFrame, *, k: int | None = None,
                    alpha: float | None = None) -> HoldoutMetrics:
    """:func:`~loglead_lo2.detection.evaluate.evaluate_metrics` on the hold-out rows of
    ``rows``."""
    mask = run.holdout
    hold = rows.filter(pl.Series(mask))
    groups = hold[ROW_GROUP].to_numpy() if ROW_GROUP in hold.columns else None
    return evaluate_metrics(hold["anomaly"].cast(pl.Int8).to_numpy(), run.scores[mask],
                            threshold=run.threshold.value, k=k, alpha=alpha, groups=groups)


def predictions_frame(key: str, run_scores: np.ndarray, split: np.ndarray, threshold: float,
                      rows: pl.DataFrame, truth: np.ndarray | None = None) -> pl.DataFrame:
    """The ``<key>_predictions.parquet`` rows of one part (see :data:`PREDICTION_COLUMNS`;
    ``true_label`` is added when ground truth exists)."""
    keys = [c for c in ("seq_id", "run", "test_case", "service", "window", ROW_GROUP)
            if c in rows.columns]
    out = rows.select(keys).with_columns(
        split=pl.Series(split, dtype=pl.String),
        label=rows["anomaly"].cast(pl.Int8),
        score=pl.Series(run_scores, dtype=pl.Float64),
        threshold=pl.lit(threshold, dtype=pl.Float64),
    ).with_columns(pred=(pl.col("score") >= pl.col("threshold")).cast(pl.Int8),
                   model=pl.lit(key))
    if truth is not None:
        out = out.with_columns(true_label=pl.Series(truth, dtype=pl.Int8))
    return out


__all__ = [
    "PREDICTION_COLUMNS",
    "SPLIT_CALIBRATION",
    "SPLIT_HOLDOUT",
    "SPLIT_TRAIN",
    "ModelRun",
    "holdout_metrics",
    "predictions_frame",
    "run_model",
    "split_column",
]
